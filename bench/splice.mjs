// bench/splice: bulk throughput client → terminal through the relay and the gateway,
// against HAProxy doing the same two hops in the same lab, in the same run.
//
//   ours:      client ─TLS CONNECT→ relay ─(dial-back TCP)→ gateway ─→ agent ─→ sink:9000
//   reference: client ─TLS→ haproxy@relay:9443 ─TCP→ haproxy@gateway:9444 ─→ sink:9000
//   splice:    client ─TLS→ haproxy@relay:9442 ─TCP→ haproxy@gateway:9445 ─→ sink:9000
//              (the gateway's HAProxy with `option splice-request` and `splice-response`: splice(2),
//              the fairest peer for our gateway hop, which splices too)
//
// HAProxy terminates TLS with the relay's own certificate, as the relay does. The
// carrier firewall gets one accept rule for relay→gateway:9444 during the reference
// runs only (the rendezvous needs no inbound rule at all). Ours has one more hop (the
// agent). Rounds alternate ours/reference; the median of each is compared.
// usage (root, after npm run build): node bench/splice.mjs [MiB] [rounds] [--record]
import { readFileSync, writeFileSync } from 'node:fs'

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpu (pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}
import { join } from 'node:path'
import { ROOT, withLab, inNode, spawnInNode, median, report, recordSection, machine } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const mib = nums[0] ?? 256
const rounds = nums[1] ?? 3
const record = process.argv.includes('--record')

await withLab({ sink: true }, async (st) => {
  const tls = join(st.stateDir, 'tls')
  writeFileSync(join(tls, 'relay.pem'), readFileSync(join(tls, 'relay.crt'), 'utf8') + readFileSync(join(tls, 'relay.key'), 'utf8'))
  const haproxy = (name, bind, server, splice = false) => {
    const cfg = join(st.stateDir, 'etc', `haproxy-${name}.cfg`)
    writeFileSync(cfg, [
      'global', '  maxconn 100', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
      ...(splice ? ['  option splice-request', '  option splice-response'] : []),
      `frontend f`, `  bind ${bind}`, '  default_backend b', 'backend b', `  server s ${server}`, '',
    ].join('\n'))
    return cfg
  }
  const hRelay = haproxy('relay', `198.51.100.20:9443 ssl crt ${join(tls, 'relay.pem')}`, '203.0.113.10:9444')
  const hGw = haproxy('gateway', '203.0.113.10:9444', '203.0.113.20:9000')
  const hRelayS = haproxy('relay-s', `198.51.100.20:9442 ssl crt ${join(tls, 'relay.pem')}`, '203.0.113.10:9445')
  const hGwS = haproxy('gateway-s', '203.0.113.10:9445', '203.0.113.20:9000', true)
  const procs = [spawnInNode(st, 'relay', ['haproxy', '-db', '-f', hRelay]), spawnInNode(st, 'gateway', ['haproxy', '-db', '-f', hGw]),
    spawnInNode(st, 'relay', ['haproxy', '-db', '-f', hRelayS]), spawnInNode(st, 'gateway', ['haproxy', '-db', '-f', hGwS])]
  try {
    await new Promise((resolve) => setTimeout(resolve, 500))
    const ours = []
    const ref = []
    const refS = []
    // CPU per hop, summed over the counted rounds.
    const hops = { relay: st.processes.relay.pid, gateway: st.processes.gateway.pid, agent: st.processes.agent.pid, 'haproxy@relay': procs[0].pid, 'haproxy@gateway': procs[1].pid, 'haproxy-s@relay': procs[2].pid, 'haproxy-s@gateway': procs[3].pid }
    // CPU-s/GiB of each hop, per counted round (paired with the other side's round).
    const used = Object.fromEntries(Object.keys(hops).map((k) => [k, []]))
    const measure = async (fn, names) => {
      const before = names.map((n) => cpu(hops[n]))
      const v = await fn()
      names.forEach((n, j) => { used[n].push((cpu(hops[n]) - before[j]) / (mib / 1024)) })
      return v
    }
    // Round 0 warms both paths (JIT, TLS session setup) and is not counted.
    for (let i = 0; i <= rounds; i++) {
      const runOurs = () => inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-bulk.mjs'), 'ours', st.clientConfig, String(mib)])
      if (i > 0) ours.push(JSON.parse(await measure(runOurs, ['relay', 'gateway', 'agent'])).mbps)
      else await runOurs()
      await inNode(st, 'carrier-fw', ['nft', 'insert', 'rule', 'inet', 'beckon_fw', 'forward', 'ip', 'daddr', '203.0.113.10', 'tcp', 'dport', '{ 9444, 9445 }', 'accept', 'comment', '"bench reference"'])
      try {
        for (const [port, into, names] of [['9443', ref, ['haproxy@relay', 'haproxy@gateway']], ['9442', refS, ['haproxy-s@relay', 'haproxy-s@gateway']]]) {
          const runRef = () => inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-bulk.mjs'), 'ref', `198.51.100.20:${port}`, join(tls, 'ca.crt'), String(mib)])
          if (i > 0) into.push(JSON.parse(await measure(runRef, names)).mbps)
          else await runRef()
        }
      } finally {
        const rules = await inNode(st, 'carrier-fw', ['nft', '-a', 'list', 'chain', 'inet', 'beckon_fw', 'forward'])
        const handle = /comment "bench reference" # handle (\d+)/.exec(rules)?.[1]
        if (handle !== undefined) await inNode(st, 'carrier-fw', ['nft', 'delete', 'rule', 'inet', 'beckon_fw', 'forward', 'handle', handle])
      }
    }
    const paired = (ref, ours) => median(used[ref].map((x, i) => x / used[ours][i]))
    const o = median(ours)
    const r = median(ref)
    // Each round runs both back to back, so the median of per-round ratios cancels
    // most of the drift a shared 2-core machine shows between rounds.
    const ratio = median(ours.map((x, i) => x / ref[i]))
    const text = report('bench/splice', [
      ['bulk client→terminal (Mbit/s)', o, r, ratio, `medians of ${rounds} × ${mib} MiB; ratio = median of paired ours/reference (≥ 1: we are faster); target ≥ 0.8`],
      ['  rounds ours', ours.map((x) => x.toFixed(0)).join('/'), ref.map((x) => x.toFixed(0)).join('/'), '-', 'per round'],
      ['cpu s/GiB relay hop (TLS)', median(used.relay), median(used['haproxy@relay']), paired('haproxy@relay', 'relay'), 'ratio = median of paired reference/ours (≥ 1: we use less); target ≥ 0.95'],
      ['cpu s/GiB gateway hop', median(used.gateway), median(used['haproxy@gateway']), paired('haproxy@gateway', 'gateway'), 'plain TCP both sides; target ≥ 1.0'],
      ['  vs HAProxy splice', median(used.gateway), median(used['haproxy-s@gateway']), paired('haproxy-s@gateway', 'gateway'), 'the reference gateway forced to splice(2) (`option splice-request`, `splice-response`); ≥ 1: we use less'],
      ['bulk vs HAProxy splice', o, median(refS), median(ours.map((x, i) => x / refS[i])), 'Mbit/s, paired ours/reference (≥ 1: we are faster)'],
      ['cpu s/GiB agent hop', median(used.agent), '-', '-', 'no counterpart in the reference'],
    ])
    if (record) recordSection('splice', text, `Namespace lab, TLS at the relay in both paths; the reference HAProxy pair twice: with its defaults (it copies through user space) and with splice(2) forced at the gateway (\`option splice-request\`, \`splice-response\`), as ours. ${machine()}.\n\n` +
      '**What limits us.** The client process (one Node, writing 1 MiB chunks over TLS) and the relay share two cores with the agent, the gateway and the sink, so ' +
      'throughput is bound by total CPU rather than by one hop. The relay hop is TLS on the client side: its cleartext comes from the TLS layer, so that side ' +
      'keeps the stream `pipe` and pays AES-GCM plus the copy; the dial-back side reads into a reused buffer. The gateway hop is plain TCP both ways and is ' +
      'joined in the kernel (native/splice.c: splice(2) through a pooled pipe on one epoll thread, the JS process only sets it up and hears when it ends); ' +
      'what it still costs is the kernel\'s own TCP work on both sockets, the same as HAProxy\'s when it splices. The agent hop (plain both ways, kernel path too) has no counterpart in the reference path and is the price of the terminal agent.' +
      ' The TLS hop, profiled alone (`node bench/tls-hop.mjs 2048 --profile`: 1.0–1.7 CPU-s/GiB for the hop process across runs on this machine, about 55 % user and 45 % system; flame graph in docs/flame-tls-hop.svg, written by `--profile --record`): the V8 profile sees about a third of that CPU in JS frames — `writeBuffer` (the write(2) to the plain side) most of it, stream machinery ~3 %, GC ~1 % — and the rest is native, outside what JS can change: libuv\'s read(2), the copy of each read into OpenSSL\'s BIO, AES-GCM, and a fresh Buffer per record. HAProxy does the same read, decrypt and write with one buffer and no JS layer; Node gives no way around its TLS plumbing (the reused-buffer `onread` exists for plain sockets, not for sockets a TLS server accepted) and Node 20 has no kernel TLS, which would let the relay join the decrypted stream in the kernel as HAProxy splices plain TCP. That is what stands between the TLS hop and parity.')
  } finally {
    for (const p of procs) p.kill('SIGKILL')
  }
})
