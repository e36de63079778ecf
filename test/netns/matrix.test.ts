// The NAT matrix: one IPsec session and one raw session through every carrier variant
// (`beckon lab up --net <variant>`, src/lab/variants.ts), one lab per variant, serially.
//
//   [client]──┐                               ┌──[relay]  ◀── capture: ciphertext only
//   [smsc]────┤ internet 198.51.100.0/24      ├──[mail]
//             └──────[br-inet]────────────────┴──[cgnat]? ──[carrier-fw] masquerade (random?),
//                          [proxy]? Squid                       │  netem?, conntrack 30 s?
//                                                                │ carrier 203.0.113.0/24
//                                                  [gateway]──[br-carrier]──[terminal] (asleep?)
//
// Each variant asserts that the glucose data arrives both ways, that the relay's capture
// of the IPsec session holds no plaintext, and what the variant itself promises.
// lossy, sleepy and short-nat-timeout run on a shortened clock unless BECKON_MATRIX_SLOW=1
// (sleepy: 20 s wake delay, 60 s wake timeout; short-nat-timeout: 5 s conntrack timeout,
// 20 s idle), so the whole matrix stays within a few minutes in CI.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from '../../src/core/exec.js'
import { labCli, startRole, stopRole } from '../../src/lab/lab.js'
import { requireRoot } from '../helpers/charon-pair.js'
import { LabHarness, type Session } from '../helpers/lab-session.js'
import { streamsInclude, tcpStreams } from '../helpers/pcap.js'

if (!requireRoot(t)) process.exit(1)
// Seven labs, one after the other: longer than the suite's 300 s default per file.
const SLOW = process.env.BECKON_MATRIX_SLOW === '1'
// The full clock (BECKON_MATRIX_SLOW=1) waits out a 5-minute wake delay twice and a 5-minute idle.
t.setTimeout(SLOW ? 60 * 60_000 : 15 * 60_000)
const WAKE_DELAY_MS = SLOW ? 5 * 60_000 : 20_000
const WAKE_TIMEOUT = SLOW ? '10m' : '60s'
const NAT_TIMEOUT_S = SLOW ? 30 : 5
const IDLE_MS = SLOW ? 5 * 60_000 : 20_000
const RAW_FIXTURE = fileURLToPath(new URL('../fixtures/raw-session.mjs', import.meta.url))

interface Capture { stop: () => Promise<Map<string, Buffer>> }

/** tcpdump on the relay's eth0 until stop(); waits until the file stops growing first. */
async function captureRelay (h: LabHarness, name: string): Promise<Capture> {
  const file = join(h.stateDir, `${name}.pcap`)
  const p: ChildProcess = spawn('ip', ['netns', 'exec', h.st.nodes.relay.netns, 'tcpdump', '-i', 'eth0', '-s', '0', '-U', '--immediate-mode', '-B', '8192', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] })
  await new Promise((resolve) => p.stderr!.once('data', resolve)) // "listening on eth0"
  return {
    stop: async () => {
      let last = -1
      let stillSince = Date.now()
      await waitFor('the relay capture to settle', () => {
        const size = statSync(file).size
        if (size !== last) { last = size; stillSince = Date.now() }
        return Date.now() - stillSince >= 500
      }, 15_000)
      const exited = new Promise((resolve) => p.once('exit', resolve))
      p.kill('SIGTERM')
      await exited
      return tcpStreams(readFileSync(file))
    },
  }
}

/** One raw-mode session from the client node (test/fixtures/raw-session.mjs). */
async function rawSession (h: LabHarness, o: { config?: string, idleMs?: number, timeoutMs?: number } = {}): Promise<{ connectMs: number, stages: Array<Record<string, unknown>>, body: { patient: string, readings: unknown[] } }> {
  const r = await h.inNode('client', [process.execPath, RAW_FIXTURE, o.config ?? h.st.clientConfig, 'patient-phone:8080', String(o.idleMs ?? 0)], o.timeoutMs ?? 60_000 + (o.idleMs ?? 0))
  if (r.status !== 0) throw new Error(`raw session failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

/** An IPsec session with the relay captured: glucose with a marker, no plaintext seen. */
async function ipsecSession (t: Test, h: LabHarness, opts: { keep?: boolean, waitMs?: number } = {}): Promise<{ session: Session, streams: Map<string, Buffer> }> {
  const cap = await captureRelay(h, `ipsec-${Date.now()}`)
  const session = h.start()
  await waitFor('the IPsec tunnel', () => {
    const err = session.stages.find((x) => x.error !== undefined)
    if (err !== undefined) throw new Error(`beckon connect failed: ${JSON.stringify(err)}`)
    return session.stages.some((x) => x.stage === 'tunnel-up')
  }, opts.waitMs ?? 60_000)
  const marker = randomBytes(16).toString('hex')
  const r = await waitForGet(h, marker)
  t.equal(r.marker, marker, 'IPsec: the glucose JSON (with our marker) came through the tunnel')
  t.equal(r.patient, 'patient-phone')
  if (opts.keep !== true) await h.stop(session)
  const streams = await cap.stop()
  t.notOk(streamsInclude(streams, Buffer.from(marker)), 'relay capture: the plaintext marker never crossed the relay')
  t.notOk(streamsInclude(streams, Buffer.from('mmolPerL')), 'relay capture: nor any of the glucose JSON')
  t.ok(streamsInclude(streams, Buffer.from('IKETCP')), 'relay capture: the RFC 8229 stream went through it')
  return { session, streams }
}

/** curl through the tunnel; on a lossy path the first try may time out, so retry briefly. */
async function waitForGet (h: LabHarness, marker: string): Promise<{ patient: string, marker: string }> {
  let body: { patient: string, marker: string } | undefined
  await waitFor('glucose through the tunnel', async () => {
    const r = await h.inNode('client', ['curl', '-sS', '-m', '10', `http://[${h.st.terminal.permanentAddress}]:8080/glucose?marker=${marker}`], 15_000)
    if (r.status === 0) body = JSON.parse(r.stdout) as typeof body
    return body !== undefined
  }, 45_000)
  return body!
}

/** Dial-back streams at the relay: source address:port of each connection to :7001. */
function dialbackSources (streams: Map<string, Buffer>): string[] {
  return [...streams.keys()].filter((k) => /:7001$/.test(k)).map((k) => k.split('>')[0]!)
}

async function variantLab (t: Test, short: string, net: string, extra: string[] = []): Promise<LabHarness> {
  const h = new LabHarness(t, short)
  const up = await h.up(['--net', net, ...extra])
  t.equal(up.status, 0, `lab up --net ${net} ${extra.join(' ')}: ${up.stderr.trim().split('\n').slice(-2).join(' | ')}`)
  if (up.status !== 0) throw new Error('lab up failed')
  t.same(h.st.net.variants, net.split(','), 'the lab records its variants')
  return h
}

async function directFails (t: Test, h: LabHarness): Promise<void> {
  const d = await h.inNode('client', ['curl', '-sS', '-m', '3', `http://${h.st.terminal.services[0]}/glucose`], 10_000)
  t.not(d.status, 0, 'a direct connection from the client to the terminal fails')
}

t.test('double-nat: CGNAT in front of carrier-fw; the relay sees the shared public address', async (t) => {
  const h = await variantLab(t, 'mxd', 'double-nat')
  t.equal(h.st.nodes['carrier-fw'].addresses.inet0, '192.0.2.2/24', 'carrier-fw sits inside the CGNAT range')
  const { streams } = await ipsecSession(t, h)
  t.same([...new Set(dialbackSources(streams).map((s) => s.split(':')[0]))], ['198.51.100.1'], 'dial-backs arrive from the CGNAT\'s public address')
  const raw = await rawSession(h)
  t.equal(raw.body.patient, 'patient-phone', 'raw: glucose through the double NAT')
  await directFails(t, h)
})

t.test('symmetric-nat: masquerade random,fully-random; the dial-back still matches by session id', async (t) => {
  const h = await variantLab(t, 'mxs', 'symmetric-nat')
  const rules = await h.inNode('carrier-fw', ['nft', 'list', 'table', 'ip', 'beckon_nat'])
  t.match(rules.stdout, /masquerade random,fully-random/, 'carrier-fw randomises ports')
  const { session, streams } = await ipsecSession(t, h, { keep: true })
  // The gateway's own port towards the relay differs from the one the relay sees.
  const ss = await h.inNode('gateway', ['ss', '-Htn', 'state', 'established', 'dst', '198.51.100.20:7001'])
  const inside = ss.stdout.trim().split(/\s+/).find((c) => c.startsWith('203.0.113.10:'))?.split(':')[1]
  const outside = dialbackSources(streams).map((s) => s.split(':')[1])
  t.ok(inside !== undefined && outside.length > 0 && !outside.includes(inside), `the NAT changed the source port (inside ${inside}, outside ${outside.join(',')})`)
  await h.stop(session)
  const raw = await rawSession(h)
  t.equal(raw.body.patient, 'patient-phone', 'raw: glucose through the symmetric NAT')
})

t.test('egress-proxy: dial-backs through Squid (auth, CONNECT to :7001 only); the client through it too', async (t) => {
  const h = await variantLab(t, 'mxp', 'egress-proxy')
  const proxy = h.st.net.proxy!
  // Without the proxy the carrier has no way to the relay's dial-back port.
  const direct = await h.inNode('gateway', ['curl', '-sS', '-m', '3', 'telnet://198.51.100.20:7001'], 10_000)
  t.not(direct.status, 0, 'carrier-fw drops a direct connection to the dial-back port')
  const noAuth = await h.inNode('gateway', ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_connect}', '-p', '-x', `http://${proxy.carrier}`, 'http://198.51.100.20:7001/'], 10_000)
  t.match(noAuth.stdout, /407/, 'Squid wants proxy credentials')
  const otherPort = await h.inNode('gateway', ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_connect}', '-p', '-x', `http://${proxy.user}:${proxy.password}@${proxy.carrier}`, 'http://198.51.100.20:8443/'], 10_000)
  t.match(otherPort.stdout, /403/, 'Squid refuses CONNECT from the carrier to anything but the dial-back port')
  const { streams } = await ipsecSession(t, h)
  t.same([...new Set(dialbackSources(streams).map((s) => s.split(':')[0]))], ['198.51.100.60'], 'dial-backs arrive from the proxy')
  const raw = await rawSession(h)
  t.equal(raw.body.patient, 'patient-phone', 'raw: glucose with the dial-back through the proxy')
  // The second case: the client reaches the relay only through the proxy.
  const viaProxy = await rawSession(h, { config: join(h.stateDir, 'client', 'client-proxy.yaml') })
  t.equal(viaProxy.body.patient, 'patient-phone', 'raw: glucose with the client\'s CONNECT through the proxy as well')
  const log = readFileSync(proxy.accessLog, 'utf8')
  t.match(log, /TCP_TUNNEL\/200 \d+ CONNECT 198\.51\.100\.20:7001 beckon-gw/, 'Squid logged the gateway\'s dial-backs')
  t.match(log, /TCP_TUNNEL\/200 \d+ CONNECT 198\.51\.100\.20:8443 beckon-client/, 'and the client\'s CONNECT to the relay')
})

t.test('ipv6-only: the public side speaks IPv6 only; the signal carries an IPv6 relay address in one SMS', async (t) => {
  const h = await variantLab(t, 'mx6', 'ipv6-only')
  t.equal(h.st.relay.dialback, '[fd00:198:51:100::20]:7001')
  const v4 = await h.inNode('relay', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])
  t.equal(v4.stdout.trim(), '', 'the relay has no IPv4 address')
  const { streams } = await ipsecSession(t, h)
  t.same([...new Set(dialbackSources(streams).map((s) => s.replace(/:\d+$/, '')))], ['[fd00:203:0:113::10]'], 'dial-backs come from the gateway\'s IPv6 address (routed, not translated)')
  const raw = await rawSession(h)
  t.equal(raw.body.patient, 'patient-phone', 'raw: glucose over IPv6')
  const accepted = readFileSync(join(h.stateDir, 'logs', 'smsc.log'), 'utf8').split('\n').filter((l) => l.includes('smsc: accepted')).map((l) => JSON.parse(l) as { octets: number })
  t.ok(accepted.length >= 2 && accepted.every((m) => m.octets <= 140), `every signal fit one SMS (${accepted.map((m) => m.octets).join(', ')} octets)`)
  await directFails(t, h)
})

t.test('lossy: 2 % loss, 150 ms ± 30 ms, reordering on the carrier link', async (t) => {
  const h = await variantLab(t, 'mxl', 'lossy')
  if (h.st.net.lossy === 'netem') {
    const q = await h.inNode('carrier-fw', ['tc', 'qdisc', 'show', 'dev', 'carr0'])
    t.match(q.stdout, /netem .*delay 150ms\s+30ms.*loss 2%.*reorder 25%/, 'netem is on the carrier link')
  } else {
    // This kernel has no netem: 2 % loss each way from nftables and a tbf bottleneck
    // (queueing delay under load, no fixed delay, no reordering).
    const r = await h.inNode('carrier-fw', ['nft', 'list', 'table', 'inet', 'beckon_lossy'])
    t.match(r.stdout, /numgen random mod 100 < 2 counter packets \d+ bytes \d+ drop comment "lossy: uplink"/, '2 % loss from nftables (no netem in this kernel)')
    const q = await h.inNode('carrier-fw', ['tc', 'qdisc', 'show', 'dev', 'carr0'])
    t.match(q.stdout, /tbf .*rate 20Mbit/, 'a 20 Mbit/s tbf bottleneck on the carrier link')
  }
  const t0 = Date.now()
  await ipsecSession(t, h, { waitMs: 120_000 })
  t.comment(`IPsec session over the lossy link: ${Date.now() - t0} ms`)
  const raw = await rawSession(h)
  t.equal(raw.body.patient, 'patient-phone', `raw: glucose over the lossy link (CONNECT→200 ${raw.connectMs} ms)`)
})

t.test(`short-nat-timeout: conntrack forgets idle TCP after ${NAT_TIMEOUT_S} s; sessions survive ${IDLE_MS / 1000} s idle`, async (t) => {
  const h = await variantLab(t, 'mxn', 'short-nat-timeout', ['--nat-timeout', `${NAT_TIMEOUT_S}s`])
  const s = await h.inNode('carrier-fw', ['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_timeout_established', 'net.netfilter.nf_conntrack_tcp_loose'])
  t.same(s.stdout.trim().split('\n'), [String(NAT_TIMEOUT_S), '0'], 'carrier-fw forgets idle bindings and does not pick up stray segments')
  const { session } = await ipsecSession(t, h, { keep: true })
  // Both sessions idle at once: the raw one (no traffic at all before its GET) and the tunnel.
  const rawIdle = Math.min(IDLE_MS, 45_000) // the glucose service's own header timeout is 60 s
  const [raw] = await Promise.all([
    rawSession(h, { idleMs: rawIdle }),
    new Promise((resolve) => setTimeout(resolve, IDLE_MS)),
  ])
  t.equal(raw.body.patient, 'patient-phone', `raw: glucose after ${rawIdle / 1000} s idle on the path`)
  const marker = randomBytes(8).toString('hex')
  const r = await h.inNode('client', ['curl', '-sS', '-m', '10', `http://[${h.st.terminal.permanentAddress}]:8080/glucose?marker=${marker}`], 15_000)
  t.equal(r.status, 0, `IPsec: the same tunnel still carries traffic after ${IDLE_MS / 1000} s idle`)
  t.equal(session.stages.filter((x) => x.stage === 'tunnel-up').length, 1, 'without a new rendezvous')
  await h.stop(session)
  // The SMPP bind idled too: a new session still gets its signal.
  const again = await rawSession(h)
  t.equal(again.body.patient, 'patient-phone', 'a new session after the idle period: the gateway\'s SMPP bind survived')
})

t.test(`sleepy: the SMSC holds the signal ${WAKE_DELAY_MS / 1000} s; 102 progress, then 200 when the terminal wakes; 504 below the delay`, async (t) => {
  const h = await variantLab(t, 'mxz', 'sleepy', ['--wake-delay', `${WAKE_DELAY_MS}ms`, '--wake-timeout', WAKE_TIMEOUT])
  // The terminal is asleep: its agent is down until shortly before the paging occasion.
  await stopRole(h.st, 'agent')
  const t0 = Date.now()
  const wake = setTimeout(() => { startRole(h.st, 'agent').catch((err: Error) => t.fail(`agent did not wake: ${err.message}`)) }, WAKE_DELAY_MS / 2)
  t.teardown(() => clearTimeout(wake))
  const { session } = await ipsecSession(t, h, { keep: true, waitMs: WAKE_DELAY_MS + 60_000 })
  const signalled = session.stages.find((x) => x.stage === 'signalled')
  const connected = session.stages.find((x) => x.stage === 'connected')
  t.ok(signalled !== undefined && Number(signalled.elapsedMs) < 5_000, `102 Processing (signalled) at once (${String(signalled?.elapsedMs)} ms)`)
  t.ok(connected !== undefined && Number(connected.elapsedMs) >= WAKE_DELAY_MS, `200 only after the wake delay (${String(connected?.elapsedMs)} ms ≥ ${WAKE_DELAY_MS})`)
  t.comment(`IPsec session through a sleeping terminal: ${Date.now() - t0} ms`)
  await h.stop(session)
  const raw = await rawSession(h, { timeoutMs: WAKE_DELAY_MS + 60_000 })
  t.equal(raw.body.patient, 'patient-phone', 'raw: glucose after the wake delay')
  t.ok(raw.connectMs >= WAKE_DELAY_MS, `raw: 200 after ${raw.connectMs} ms`)
  t.ok(raw.stages.some((x) => x.stage === 'signalled'), 'raw: 102 progress seen')
  // A wake timeout below the delay: 504.
  await labCli(h.st, ['device', 'set', 'patient-phone', '--wake-timeout', `${Math.round(WAKE_DELAY_MS / 4)}ms`])
  const late = h.start()
  await Promise.race([late.exited, new Promise((_r, reject) => setTimeout(() => reject(new Error('beckon connect did not end')), WAKE_DELAY_MS))])
  const err = late.stages.find((x) => x.error !== undefined)?.error
  t.equal(err?.code, 'BECKON_ERR_WAKE_TIMEOUT', '504 when the terminal sleeps longer than the wake timeout')
})
