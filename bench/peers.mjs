// bench/peers: Beckon against the tools people use today, measured in the same lab,
// in the same run, in paired and interleaved rounds (every ratio: ≥ 1 means we are
// better — ours/ref for throughput, ref/ours for latency and CPU).
//
//   (a) reaching the terminal's service, connect → first byte of the glucose service:
//       ours: `beckon connect patient-phone` (CONNECT, SMS through the lab SMSC, dial-back,
//             descriptor, charon over RFC 8229 on both ends), then GET to [T]:8080
//       ref:  OpenSSH, the de-facto way: the terminal keeps `ssh -N -R` up to a bastion
//             sshd on the relay node; the client runs `ssh -J bastion -W 127.0.0.1:8080`
//             to the terminal's own sshd (end-to-end SSH, as IPsec is end to end)
//
//             client ─ssh→ bastion@relay:2222 ═(-R tunnel, terminal-initiated)═ terminal sshd
//
//   (b) an encrypted tunnel over the TCP path: iperf3 throughput, TCP RTT, CPU-s/GB per host
//       ours:    charon ⇄ RFC 8229 bridge ⇄ TLS ⇄ relay ⇄ gateway ⇄ agent bridge ⇄ charon
//       OpenVPN: openvpn (TCP, TLS, AES-256-GCM, tun) whose TCP connection rides a Beckon
//                raw-TCP session (`beckon connect --tcp -L`): exactly the same relay,
//                gateway and agent hops and the same TLS to the relay — only the tunnel
//                technology differs
//       ssh -L:  `ssh -L` over the reverse tunnel (client → bastion → terminal; SSH has no
//                gateway hop: the terminal dials the bastion itself)
//   Same cipher everywhere: AES-256-GCM (userspace: kernel-libipsec, OpenVPN without DCO,
//   OpenSSH aes256-gcm@openssh.com). CPU per host = user + system CPU of every process
//   in that node's network namespace except the load generators (iperf3, the echo).
//
// usage (root, after npm run build; openssh-server openssh-client openvpn iperf3):
//   node bench/peers.mjs [connects] [seconds] [rounds] [--record]
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmdirSync, statSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { stopRole } from '../dist/lab/lab.js'
import { ROOT, withLab, inNode, spawnInNode, median, percentile, report, recordSection, machine } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const connects = nums[0] ?? 30
const secs = nums[1] ?? 4
const rounds = nums[2] ?? 5
const record = process.argv.includes('--record')
const BECKON = join(ROOT, 'dist/cli/main.js')
const RELAY = '198.51.100.20'
const OVPN_IN = { server: 'fd00:b0b::1', client: 'fd00:b0b::2' }

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor (what, fn, ms = 15_000) {
  const end = Date.now() + ms
  while (Date.now() < end) { if (await fn()) return; await sleep(50) }
  throw new Error(`timed out waiting for ${what}`)
}
const listening = async (st, node, port) => (await inNode(st, node, ['ss', '-Hltn', `sport = :${port}`])).trim() !== ''
function exited (child) { return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve)) }
async function stop (child) { if (child === undefined) return; child.kill('SIGTERM'); const t = setTimeout(() => child.kill('SIGKILL'), 3_000); await exited(child); clearTimeout(t) }

/** user+system CPU seconds of every process in a network namespace, minus the load generators. */
function nsCpu (netns) {
  const ino = statSync(`/run/netns/${netns}`).ino
  let total = 0
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      if (readlinkSync(`/proc/${d}/ns/net`) !== `net:[${ino}]`) continue
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8')
      if (cmd.startsWith('iperf3') || cmd.includes('tcp-rtt.mjs') || cmd.startsWith('ip\0netns')) continue
      const f = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')
      total += (Number(f[11]) + Number(f[12])) / 100
    } catch {}
  }
  return total
}
const HOSTS = ['client', 'relay', 'gateway', 'terminal']

async function run (cmd, args) {
  await new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    c.stderr.on('data', (d) => { err += d })
    c.on('close', (code) => code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`)))
  })
}

await withLab({ sink: true }, async (st) => {
  process.env.BECKON_CLIENT_CONFIG = st.clientConfig
  const dir = join(st.stateDir, 'peers')
  mkdirSync(dir, { recursive: true })
  const f = (n) => join(dir, n)
  const procs = []
  // sshd's privilege-separation directory; made here only if missing, removed after.
  const madeRunSshd = !existsSync('/run/sshd')
  if (madeRunSshd) mkdirSync('/run/sshd', { mode: 0o755 })
  try {
    // ---- OpenSSH: keys, a bastion sshd on the relay node, sshd on the terminal --------
    for (const k of ['bastion_host', 'terminal_host', 'terminal_user', 'client_user']) await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f(k)])
    writeFileSync(f('authorized_keys'), readFileSync(f('terminal_user.pub'), 'utf8') + readFileSync(f('client_user.pub'), 'utf8'))
    writeFileSync(f('known_hosts'), `[${RELAY}]:2222 ${readFileSync(f('bastion_host.pub'), 'utf8')}terminal ${readFileSync(f('terminal_host.pub'), 'utf8')}`)
    const sshd = (name, listen, hostKey) => {
      writeFileSync(f(`sshd_${name}`), [
        `ListenAddress ${listen}`, `HostKey ${f(hostKey)}`, `AuthorizedKeysFile ${f('authorized_keys')}`, `PidFile ${f(`sshd_${name}.pid`)}`,
        'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
        'AllowTcpForwarding yes', 'GatewayPorts no', 'UseDNS no', 'PrintMotd no', 'LogLevel ERROR', 'Ciphers aes256-gcm@openssh.com', '',
      ].join('\n'))
      return f(`sshd_${name}`)
    }
    procs.push(spawnInNode(st, 'relay', ['/usr/sbin/sshd', '-D', '-e', '-f', sshd('bastion', `${RELAY}:2222`, 'bastion_host')]))
    procs.push(spawnInNode(st, 'terminal', ['/usr/sbin/sshd', '-D', '-e', '-f', sshd('terminal', '127.0.0.1:2022', 'terminal_host')]))
    await waitFor('sshd', async () => await listening(st, 'relay', 2222) && await listening(st, 'terminal', 2022))
    const common = ['  User root', `  UserKnownHostsFile ${f('known_hosts')}`, '  StrictHostKeyChecking yes', '  BatchMode yes', '  Ciphers aes256-gcm@openssh.com', '  ServerAliveInterval 15', '  ControlMaster no']
    writeFileSync(f('ssh_config_terminal'), ['Host bastion', `  HostName ${RELAY}`, '  Port 2222', `  IdentityFile ${f('terminal_user')}`, ...common, ''].join('\n'))
    writeFileSync(f('ssh_config_client'), [
      'Host bastion', `  HostName ${RELAY}`, '  Port 2222', `  IdentityFile ${f('client_user')}`, ...common,
      'Host terminal', '  HostName 127.0.0.1', '  Port 2201', '  HostKeyAlias terminal', '  ProxyJump bastion', `  IdentityFile ${f('client_user')}`, ...common, '',
    ].join('\n'))
    for (const k of ['terminal_user', 'client_user', 'bastion_host', 'terminal_host']) chmodSync(f(k), 0o600)
    // The terminal's always-on reverse tunnel: bastion 127.0.0.1:2201 → terminal sshd.
    procs.push(spawnInNode(st, 'terminal', ['ssh', '-F', f('ssh_config_terminal'), '-N', '-o', 'ExitOnForwardFailure=yes', '-R', '127.0.0.1:2201:127.0.0.1:2022', 'bastion']))
    await waitFor('the reverse tunnel', () => listening(st, 'relay', 2201))

    // ---- (a) connect → first byte ------------------------------------------------------
    await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-first-byte.mjs'), BECKON, st.clientConfig, st.terminal.permanentAddress, f('ssh_config_client'), '2']) // warm-up
    const fb = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-first-byte.mjs'), BECKON, st.clientConfig, st.terminal.permanentAddress, f('ssh_config_client'), String(connects)]))
    const oursMs = fb.map((r) => r.beckon.ms)
    const sshMs = fb.map((r) => r.ssh.ms)
    const rowsA = [
      ['connect→first byte p50 (ms)', percentile(oursMs, 50), percentile(sshMs, 50), percentile(sshMs, 50) / percentile(oursMs, 50), `${connects} paired, alternating rounds; ratio = ref/ours (≥ 1: we are faster)`],
      ['connect→first byte p99 (ms)', percentile(oursMs, 99), percentile(sshMs, 99), percentile(sshMs, 99) / percentile(oursMs, 99), 'ref = ssh -J bastion -W (reverse tunnel held open by the terminal)'],
      ['  of which: process start (ms)', median(fb.map((r) => r.beckon.started)), '-', '-', 'beckon connect: spawn → first stage line (Node start, CLI load)'],
      ['  of which: CONNECT→200 (ms)', median(fb.map((r) => r.beckon.connected - r.beckon.started)), '-', '-', 'TLS, SMS, dial-back, descriptor'],
      ['  of which: IKE over RFC 8229 (ms)', median(fb.map((r) => r.beckon.tunnelUp - r.beckon.connected)), '-', '-', 'charon programmed, IKE_SA_INIT + IKE_AUTH through the relay'],
    ]

    // ---- (b) tunnels: iperf3 on 8080 (dual stack), echo on 9000 (IPv6 only) ------------
    await stopRole(st, 'sink')
    await stopRole(st, 'service')
    procs.push(spawnInNode(st, 'terminal', ['iperf3', '-s', '-p', '8080']))
    procs.push(spawnInNode(st, 'terminal', [process.execPath, join(ROOT, 'bench/tcp-rtt.mjs'), 'server', '9000', '::', 'v6only']))
    await waitFor('iperf3 and echo', async () => await listening(st, 'terminal', 8080) && await listening(st, 'terminal', 9000))
    // OpenVPN: certificates from a throwaway CA; server on the terminal's 127.0.0.1:9000
    // (IPv4; the echo holds IPv6 only), reached by the agent's raw-TCP forward.
    const ossl = (...a) => run('openssl', a)
    await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ovpn-ca.key'), '-out', f('ovpn-ca.crt'), '-days', '2', '-subj', '/CN=bench ovpn CA')
    for (const n of ['server', 'client']) {
      await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`ovpn-${n}.key`), '-out', f(`ovpn-${n}.csr`), '-subj', `/CN=${n}`)
      await ossl('x509', '-req', '-in', f(`ovpn-${n}.csr`), '-CA', f('ovpn-ca.crt'), '-CAkey', f('ovpn-ca.key'), '-CAcreateserial', '-out', f(`ovpn-${n}.crt`), '-days', '2')
    }
    const ovpn = (n, extra) => ['openvpn', '--dev', 'tun', '--disable-dco', '--data-ciphers', 'AES-256-GCM', '--dh', 'none', '--ca', f('ovpn-ca.crt'), '--cert', f(`ovpn-${n}.crt`), '--key', f(`ovpn-${n}.key`), '--verb', '1', '--tun-mtu', '1500', ...extra]
    procs.push(spawnInNode(st, 'terminal', ovpn('server', ['--proto', 'tcp-server', '--local', '127.0.0.1', '--lport', '9000', '--tls-server', '--ifconfig', '192.0.2.1', '192.0.2.2', '--ifconfig-ipv6', `${OVPN_IN.server}/64`, OVPN_IN.client])))
    await waitFor('openvpn server', () => listening(st, 'terminal', 9000))

    const T = st.terminal.permanentAddress
    const beckonConnect = (args, ready) => {
      const c = spawnInNode(st, 'client', [process.execPath, BECKON, 'connect', 'patient-phone', '--json', ...args])
      c.stderr.removeAllListeners('data')
      return new Promise((resolve, reject) => {
        let buf = ''
        const timer = setTimeout(() => reject(new Error(`beckon connect ${args.join(' ')}: not ready: ${buf}`)), 20_000)
        c.stderr.on('data', (d) => { buf += d; if (buf.includes(ready)) { clearTimeout(timer); resolve(c) } })
        c.once('exit', (code) => { clearTimeout(timer); reject(new Error(`beckon connect exited ${code}: ${buf}`)) })
      })
    }
    const tunnels = {
      beckon: async () => {
        const c = await beckonConnect([], '"tunnel-up"')
        return { host: T, iperfPort: 8080, echoPort: 9000, down: () => stop(c) }
      },
      openvpn: async () => {
        const fwd = await beckonConnect(['--tcp', '9000', '-L', '127.0.0.1:11940'], '"forwarding"')
        const cl = spawnInNode(st, 'client', ovpn('client', ['--proto', 'tcp-client', '--remote', '127.0.0.1', '11940', '--tls-client', '--ifconfig', '192.0.2.2', '192.0.2.1', '--ifconfig-ipv6', `${OVPN_IN.client}/64`, OVPN_IN.server]))
        await waitFor('openvpn tunnel', async () => { try { await inNode(st, 'client', ['ping', '-6', '-c1', '-W1', OVPN_IN.server]); return true } catch { return false } }, 20_000)
        return { host: OVPN_IN.server, iperfPort: 8080, echoPort: 9000, down: async () => { await stop(cl); await stop(fwd) } }
      },
      'ssh -L': async () => {
        const c = spawnInNode(st, 'client', ['ssh', '-F', f('ssh_config_client'), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', '127.0.0.1:15201:[::1]:8080', '-L', '127.0.0.1:15202:[::1]:9000', 'terminal'])
        await waitFor('ssh -L', async () => await listening(st, 'client', 15201) && await listening(st, 'client', 15202))
        return { host: '127.0.0.1', iperfPort: 15201, echoPort: 15202, down: () => stop(c) }
      },
    }
    const measure = async (name) => {
      const t = await tunnels[name]()
      try {
        const before = Object.fromEntries(HOSTS.map((h) => [h, nsCpu(st.nodes[h].netns)]))
        const ip = JSON.parse(await inNode(st, 'client', ['iperf3', '-c', t.host, '-p', String(t.iperfPort), '-t', String(secs), '-J']))
        const gb = ip.end.sum_received.bytes / 1e9
        const cpu = Object.fromEntries(HOSTS.map((h) => [h, (nsCpu(st.nodes[h].netns) - before[h]) / gb]))
        const rtt = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/tcp-rtt.mjs'), 'client', t.host, String(t.echoPort), '300']))
        const mbps = ip.end.sum_received.bits_per_second / 1e6
        process.stderr.write(`peers ${name}: ${mbps.toFixed(0)} Mbit/s, rtt ${rtt.medianMs.toFixed(3)} ms, cpu/GB ${HOSTS.map((h) => `${h} ${cpu[h].toFixed(1)}`).join(' ')}\n`)
        return { mbps, rtt, cpu }
      } finally {
        await t.down()
      }
    }
    const names = Object.keys(tunnels)
    for (const n of names) await measure(n) // warm-up, not counted
    const res = []
    for (let i = 0; i < rounds; i++) {
      const r = {}
      for (let j = 0; j < names.length; j++) { const n = names[(i + j) % names.length]; r[n] = await measure(n) }
      res.push(r)
    }
    const med = (side, fn) => median(res.map((r) => fn(r[side])))
    const pair = (ref, fn) => median(res.map((r) => fn(r.beckon, r[ref])))
    const rowsB = []
    for (const ref of ['openvpn', 'ssh -L']) {
      rowsB.push(
        [`vs ${ref}: iperf3 TCP (Mbit/s)`, med('beckon', (x) => x.mbps), med(ref, (x) => x.mbps), pair(ref, (o, r) => o.mbps / r.mbps), `${rounds} rounds × ${secs} s; ratio = median of paired ours/ref`],
        [`vs ${ref}: TCP RTT p50 (ms)`, med('beckon', (x) => x.rtt.medianMs), med(ref, (x) => x.rtt.medianMs), pair(ref, (o, r) => r.rtt.medianMs / o.rtt.medianMs), '300 sequential 32-byte echoes; ratio = ref/ours'],
        [`vs ${ref}: TCP RTT p99 (ms)`, med('beckon', (x) => x.rtt.p99Ms), med(ref, (x) => x.rtt.p99Ms), pair(ref, (o, r) => r.rtt.p99Ms / o.rtt.p99Ms), ''],
        // A host the reference does not pass through (ssh has no gateway hop) gets no ratio.
        ...HOSTS.map((h) => {
          const none = ref === 'ssh -L' && h === 'gateway'
          return [`vs ${ref}: cpu s/GB ${h}`, med('beckon', (x) => x.cpu[h]), none ? 'no hop' : med(ref, (x) => x.cpu[h]), none ? '-' : pair(ref, (o, r) => r.cpu[h] / o.cpu[h]), h === 'client' ? 'all processes in the node; ratio = ref/ours' : none ? 'the terminal dials the bastion itself' : '']
        }),
      )
    }
    const text = report('bench/peers (a) reaching the service', rowsA) + '\n\n' + report('bench/peers (b) encrypted tunnel over the TCP path', rowsB)
    const limits = '\n\n**What limits us.** (a) Of Beckon\'s connect→first byte, ' +
      `${median(fb.map((r) => r.beckon.started)).toFixed(0)} ms is starting Node and loading the CLI, ${median(fb.map((r) => r.beckon.connected - r.beckon.started)).toFixed(0)} ms the rendezvous (CONNECT→200) ` +
      `and ${median(fb.map((r) => r.beckon.tunnelUp - r.beckon.connected)).toFixed(0)} ms programming charon and IKE through the relay; ssh starts in a few ms and needs two handshakes over a path that is already up. ` +
      '(b) Per GB, the client and terminal hosts dominate: charon\'s userspace ESP (kernel-libipsec, no kernel ESP here) plus the RFC 8229 bridges\' loopback UDP ' +
      'per packet; OpenVPN does the same job (TUN, AES-GCM in user space) in one process per end, and ssh -L carries TCP streams without a TUN device at all. ' +
      'The relay and gateway columns of the OpenVPN rows are our own hops carrying its bytes (raw-TCP session), so those ratios compare the IPsec bridges\' ' +
      'framing against none.'
    if (record) recordSection('peers', text, `Namespace lab, same run, paired rounds. (a) ref = OpenSSH ${'ssh -J'} through a terminal-held \`ssh -R\` to a bastion sshd on the relay node. (b) OpenVPN ${'2.6'} (TCP, AES-256-GCM, no DCO) carried by a Beckon raw-TCP session over the same relay/gateway/agent hops; \`ssh -L\` over the reverse tunnel (no gateway hop). ${machine()}.${limits}`)
  } finally {
    for (const p of procs.reverse()) await stop(p)
    if (madeRunSshd) { try { rmdirSync('/run/sshd') } catch {} }
  }
})
