// Steps A/B with a real authoritative server: the relay publishes the device zone into BIND 9
// on the dns node by TSIG-signed RFC 2136 UPDATEs; the client node's resolver is that BIND.
// Then relay failover: a second relay (relay2, same keys, same SQLite store) is published at
// a lower SRV priority; the first is killed while an IPsec session through it carries a
// download: the session re-joins through relay2 (same SAs, SHA-256 equal), and the next
// `beckon connect` goes to relay2 at once; the stages name the relay that failed.
//
//   [client] dig / beckon connect ──DNS──▶ [dns] named (lab.beckon.example, recursion no)
//      │                                      ▲ UPDATE + TSIG hmac-sha256
//      ├──CONNECT──▶ [relay]  198.51.100.20 ──┤ (priority 10)   ┐
//      └──CONNECT──▶ [relay2] 198.51.100.21 ──┘ (priority 20)   ├─ one SQLite store
//                         └──SMS──▶ [gateway] ──dial-back──▶ the relay that signalled
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, writeFileSync, existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { run, waitFor } from '../../src/core/exec.js'
import { onJsonLines } from '../../src/core/lines.js'
import { labCli, startRole, stopRole } from '../../src/lab/lab.js'
import { Netns, createNetns, veth } from '../../src/lab/netns.js'
import { openStore } from '../../src/store/open.js'
import { requireRoot } from '../helpers/charon-pair.js'
import { BECKON } from '../helpers/cli.js'
import { LabHarness, sha256, type Stage } from '../helpers/lab-session.js'

if (!requireRoot(t)) process.exit(1)

const lab = new LabHarness(t, 'bkd')
const ZONE = 'lab.beckon.example'
const FQDN = `patient-phone.${ZONE}`

const dig = async (type: string, name: string): Promise<{ text: string, answers: string[] }> => {
  const r = await lab.inNode('client', ['dig', '+norecurse', '+time=1', '+tries=2', type, name])
  return { text: r.stdout, answers: (await lab.inNode('client', ['dig', '+short', '+time=1', '+tries=2', type, name])).stdout.trim().split('\n').filter(Boolean) }
}

/** `beckon connect <fqdn> --tcp 8080 --once` from the client node, relays from DNS; stages as JSON. */
async function connectByName (): Promise<{ stages: Stage[], body: string, ms: number }> {
  const started = Date.now()
  const env = { ...process.env, BECKON_CLIENT_RELAY: 'dns', BECKON_PASSWORD: lab.st.user.password }
  const proc = spawn(process.execPath, [BECKON, 'lab', 'exec', ...lab.args, 'client', '--', process.execPath, BECKON, 'connect', FQDN, '--tcp', '8080', '-L', '18080', '--once', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  const stages: Stage[] = []
  onJsonLines(proc.stderr, (v, line) => stages.push(v === undefined ? { raw: line } : { ...v, at: Date.now() }))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve))
  await waitFor('beckon connect to forward or fail', async () => {
    if (proc.exitCode !== null) throw new Error(`beckon connect exited ${proc.exitCode}: ${JSON.stringify(stages)}`)
    return stages.some((s) => s.stage === 'forwarding')
  }, 30_000)
  const ms = Date.now() - started
  const got = await lab.inNode('client', ['curl', '-sS', '-m', '5', 'http://127.0.0.1:18080/glucose'])
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))])
  proc.kill('SIGKILL')
  return { stages, body: got.stdout, ms }
}

t.test('lab up: BIND in the dns node, the relay publishes the zone', async (t) => {
  const r = await lab.up(['--with-sink'])
  t.equal(r.status, 0, r.stderr)
  t.equal(lab.st.dns.server, '198.51.100.53:53')
  await waitFor('the relay to publish', async () => (await dig('SRV', `_beckon._tcp.${FQDN}`)).answers.length > 0, 15_000)
  const health = await lab.inNode('relay', ['curl', '-sk', 'https://127.0.0.1:8444/health'])
  t.match(JSON.parse(health.stdout), { checks: { dns: { ok: true } } }, 'the relay\'s /health has a dns check')
  t.notMatch(readFileSync(join(lab.stateDir, 'logs', 'relay.log'), 'utf8'), new RegExp((parseYaml(readFileSync(join(lab.stateDir, 'etc', 'relay.yaml'), 'utf8')) as any).dns.tsig.secret.replace(/[+/=]/g, '.')), 'the TSIG secret is not in the relay\'s log')
})

t.test('dig in the client node answers from BIND: SRV → relay, AAAA → the permanent address', async (t) => {
  const srv = await dig('SRV', `_beckon._tcp.${FQDN}`)
  t.match(srv.text, /flags: qr aa/, 'an authoritative answer')
  t.match(srv.text, /SERVER: 198\.51\.100\.53#53/, 'from the dns node, through the namespace\'s resolv.conf')
  t.same(srv.answers, [`10 0 8443 relay.${ZONE}.`])
  t.same((await dig('AAAA', FQDN)).answers, [lab.st.terminal.permanentAddress])
  t.same((await dig('A', `relay.${ZONE}`)).answers, ['198.51.100.20'])
  const recurse = await lab.inNode('client', ['dig', '+time=1', '+tries=1', 'A', 'example.org'])
  t.match(recurse.stdout, /status: REFUSED/, 'no recursion: names outside the zone are refused, nothing leaves the lab')
})

t.test('removing the device through the API removes its records; adding it back restores them', async (t) => {
  const seed = parseYaml(readFileSync(join(lab.stateDir, 'etc', 'seed.yaml'), 'utf8')) as { devices: Array<Record<string, any>>, policies: Record<string, any> }
  let started = Date.now()
  await labCli(lab.st, ['device', 'rm', 'patient-phone'])
  await waitFor('the SRV record to go', async () => (await dig('SRV', `_beckon._tcp.${FQDN}`)).answers.length === 0 && (await dig('AAAA', FQDN)).answers.length === 0, 10_000)
  t.pass(`records gone ${Date.now() - started} ms after the API call`)
  t.match((await dig('SRV', `_beckon._tcp.${FQDN}`)).text, /status: NXDOMAIN/)
  started = Date.now()
  await labCli(lab.st, ['apply', join(lab.stateDir, 'etc', 'seed.yaml')])
  await waitFor('the records to return', async () => (await dig('AAAA', FQDN)).answers[0] === lab.st.terminal.permanentAddress, 10_000)
  t.pass(`records back ${Date.now() - started} ms after the API call`)
  t.ok(seed.devices.length > 0)
})

t.test('beckon connect <device>.<zone> resolves through the lab\'s resolver and works', async (t) => {
  const r = await connectByName()
  t.match(r.stages.find((s) => s.stage === 'resolved'), { name: FQDN, relays: [`relay.${ZONE} 198.51.100.20:8443 priority 10`] })
  t.match(r.stages.find((s) => s.stage === 'connecting'), { relay: '198.51.100.20:8443', name: `relay.${ZONE}` })
  t.match(r.body, /mmol/, 'glucose readings through the relay found in DNS')
})

t.test('relay failover: relay2 at priority 20; relay killed → its live IPsec session re-joins through relay2, the next connect goes there at once', async (t) => {
  const st = lab.st
  const etc = (f: string): string => join(st.stateDir, 'etc', f)
  // relay2: its own node on the internet bridge, its own certificate from the lab CA.
  const ns2 = await createNetns(`${st.prefix}-relay2`)
  await veth(ns2, 'eth0', new Netns(`${st.prefix}-switch`), 'i-relay2')
  await new Netns(`${st.prefix}-switch`).ip('link', 'set', 'i-relay2', 'master', 'br-inet')
  await ns2.addAddress('eth0', '198.51.100.21/24')
  await ns2.ip('route', 'add', '203.0.113.0/24', 'via', '198.51.100.1')
  const tls = (f: string): string => join(st.stateDir, 'tls', f)
  writeFileSync(tls('relay2.ext'), `subjectAltName=IP:198.51.100.21,DNS:relay2.${ZONE}\n`)
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', tls('relay2.key'), '-out', tls('relay2.csr'), '-subj', `/CN=relay2.${ZONE}`])
  await run('openssl', ['x509', '-req', '-in', tls('relay2.csr'), '-CA', tls('ca.crt'), '-CAkey', tls('ca.key'), '-CAcreateserial', '-out', tls('relay2.crt'), '-days', '1', '-extfile', tls('relay2.ext')])

  // Both relays publish the same two SRV records (relay first), so their publishers agree.
  const y = parseYaml(readFileSync(etc('relay.yaml'), 'utf8')) as Record<string, any>
  y.dns.relays = [y.dns.relays[0], { host: `relay2.${ZONE}`, address: '198.51.100.21', port: 8443, priority: 20 }]
  writeFileSync(etc('relay.yaml'), toYaml(y), { mode: 0o600 })
  const y2: Record<string, any> = { ...y, client_listen: '198.51.100.21:8443', dialback_listen: '198.51.100.21:7001', public_address: '198.51.100.21', relay_id: 'relay-2', state_dir: join(st.stateDir, 'relay2'), tls: { cert: tls('relay2.crt'), key: tls('relay2.key') } }
  delete y2.api
  writeFileSync(etc('relay2.yaml'), toYaml(y2), { mode: 0o600 })
  await stopRole(st, 'relay')
  await startRole(st, 'relay')
  const log = join(st.stateDir, 'logs', 'relay2.log')
  const fd = openSync(log, 'a')
  const relay2: ChildProcess = spawn('ip', ['netns', 'exec', `${st.prefix}-relay2`, process.execPath, BECKON, 'relay', '--config', etc('relay2.yaml')], { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  t.teardown(() => { relay2.kill('SIGKILL') })
  await waitFor('relay2 to listen and bind the SMSC', () => {
    if (relay2.exitCode !== null) throw new Error(`relay2 exited: ${readFileSync(log, 'utf8').slice(-800)}`)
    return existsSync(log) && /smpp bound/.test(readFileSync(log, 'utf8'))
  }, 20_000)
  await waitFor('both relays in SRV', async () => (await dig('SRV', `_beckon._tcp.${FQDN}`)).answers.length === 2, 10_000)
  t.same((await dig('SRV', `_beckon._tcp.${FQDN}`)).answers.sort(), [`10 0 8443 relay.${ZONE}.`, `20 0 8443 relay2.${ZONE}.`])
  const before = await connectByName()
  t.match(before.stages.find((s) => s.stage === 'connecting'), { name: `relay.${ZONE}` }, 'priority 10 first while it is up')

  // A live IPsec session through relay (from DNS), a 20 MB download running in it.
  const SIZE = 20 * 1024 * 1024
  const file = await lab.serveFile(SIZE)
  const s = await lab.connect(undefined, FQDN, { BECKON_CLIENT_RELAY: 'dns' })
  t.teardown(() => lab.stop(s))
  t.match(s.stages.find((x) => x.stage === 'connecting'), { name: `relay.${ZONE}` }, 'the IPsec session went to relay (priority 10)')
  const session = (s.stages.find((x) => x.stage === 'connected') as { session: string }).session
  const spis = await lab.spis()
  t.ok(spis.length >= 4, `SAs up on both charons: ${spis.join(', ')}`)
  const out = join(st.stateDir, 'dl-failover.bin')
  const dl = lab.download(out)
  await waitFor('3 MB downloaded', () => dl.size() > 3 * 1024 * 1024, 30_000)

  // Kill the first relay outright (no graceful close), mid-download.
  process.kill(st.processes.relay!.pid, 'SIGKILL')
  const killed = Date.now()
  await waitFor('relay to die', async () => { try { process.kill(st.processes.relay!.pid, 0); return false } catch { return true } }, 5_000)
  await waitFor('the session to re-join', () => s.stages.some((x) => x.stage === 'rejoined'), 30_000)
  const rejoinMs = Date.now() - killed
  const at = dl.size()
  await waitFor('bytes moving again', () => dl.size() > at + 64 * 1024, 30_000)
  const movingMs = Date.now() - killed
  t.equal(await dl.done, 0, 'curl completed')
  t.equal(statSync(out).size, SIZE, '20 MB arrived')
  t.equal(sha256(out), file.sha, 'SHA-256 matches the source')
  t.same(await lab.spis(), spis, 'the same IKE and CHILD SPIs on both charons (no new SA)')
  const names = s.stages.map((x) => x.stage)
  const lost = names.indexOf('path-lost')
  const skipped = s.stages.findIndex((x) => x.stage === 'relay-failed')
  const rejoined = names.indexOf('rejoined')
  t.ok(lost >= 0 && lost < skipped && skipped < rejoined, `the client's stages show the switch: ${names.join(' → ')}`)
  t.match(s.stages[skipped], { name: `relay.${ZONE}`, next: `relay2.${ZONE}` }, 'the dead relay is named')
  t.match(s.stages[rejoined], { session, name: `relay2.${ZONE}`, relay: '198.51.100.21:8443' }, 'the same session, re-joined through relay2')
  const store = await openStore({ sqlite: join(st.stateDir, 'relay', 'beckon.db') })
  try {
    t.match(await store.getSession(session), { relay: 'relay-2', stage: 'connected' }, 'the store shows relay2 holding the session')
    t.match((await store.queryAudit({ action: 'session.takeover' })).entries, [{ target: `session/${session}`, detail: { from: 'relay-1', to: 'relay-2' } }], 'the take-over is audited')
  } finally { await store.close() }
  t.comment(`relay killed → session re-joined through relay2 in ${rejoinMs} ms, download bytes moving in ${movingMs} ms`)
  t.ok(movingMs <= 10_000, `traffic moving again within 10 s of the kill (${movingMs} ms)`)
  const after = await connectByName()
  const failed = after.stages.find((s) => s.stage === 'relay-failed')
  t.match(failed, { name: `relay.${ZONE}`, relay: '198.51.100.20:8443', next: `relay2.${ZONE}` }, 'the stages name the relay that failed')
  const via = after.stages.filter((s) => s.stage === 'connecting')
  t.match(via[via.length - 1], { name: `relay2.${ZONE}`, relay: '198.51.100.21:8443' }, 'and the relay used')
  // From the first attempt (relay, refused) to the attempt on relay2, as the client saw them.
  const switchMs = (via[via.length - 1]!.at as number) - (via[0]!.at as number)
  t.ok(via.length === 2 && switchMs < 1_000, `relay2 tried ${switchMs} ms after relay (< 1 s)`)
  t.match(after.body, /mmol/, 'the session through relay2 works')
  const failAt = after.stages.indexOf(failed!)
  t.ok(failAt >= 0 && failAt < after.stages.indexOf(via[via.length - 1]!), 'relay-failed comes before connecting to relay2')
  t.comment(`failover: ${switchMs} ms from the refused attempt on relay to the attempt on relay2; the whole command (process start, DNS, TLS, CONNECT, SMS, dial-back) ${after.ms} ms`)
  t.ok(after.ms < 30_000)
})
