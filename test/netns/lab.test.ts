// The rendezvous A–I over real components in the namespace lab (src/lab/lab.ts):
// separate processes per role, SMPP through the lab SMSC, TLS CONNECT, nftables NAT.
//
//   [client]──┐                          ┌──[relay]
//   [smsc]────┤ internet 198.51.100.0/24 ├──[mail]
//             └──────────[switch]────────┴──[carrier-fw]  masquerade out, drop new in
//                                               │ carrier 203.0.113.0/24
//                              [gateway]──[switch]──[terminal]
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../src/core/keys.js'
import { listNetns } from '../../src/lab/netns.js'
import { run, waitFor } from '../../src/core/exec.js'
import { readLabState, startRole, stopRole, type LabState } from '../../src/lab/lab.js'
import { Tunnel, sealSignal, keyId } from '../../src/proto/signal/token.js'
import { beckon, beckonAsync } from '../helpers/cli.js'
import { requireRoot } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

const prefix = `bkl${process.pid % 10000}`
const stateDir = mkdtempSync(join(tmpdir(), 'beckon-lab-'))
const fixture = (f: string): string => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url))
const labArgs = ['--state-dir', stateDir, '--prefix', prefix]

t.teardown(async () => {
  await beckon(['lab', 'down', ...labArgs])
})
process.once('SIGINT', () => { void beckon(['lab', 'down', ...labArgs]).finally(() => process.exit(130)) })

let st: LabState

/** Runs a command in a lab node (through `beckon lab exec`). */
async function inNode (node: string, argv: string[], timeoutMs = 60_000): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return await beckon(['lab', 'exec', ...labArgs, node, '--', ...argv], { timeoutMs })
}

async function sessions (n: number, target = 'patient-phone:8080', user?: string, password?: string): Promise<{ ok: number, results: Array<{ ok: boolean, code?: string, status?: number, ms: number }> }> {
  const args = [process.execPath, fixture('lab-sessions.mjs'), st.clientConfig, target, String(n)]
  if (user !== undefined) args.push(user, password ?? '')
  const r = await inNode('client', args)
  if (r.status !== 0) throw new Error(`lab-sessions failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

function logLines (name: string): Array<Record<string, any>> {
  const text = readFileSync(join(stateDir, 'logs', `${name}.log`), 'utf8')
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>)
}

function fdCount (pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

t.test('lab up, status --json', async (t) => {
  const up = await beckon(['lab', 'up', ...labArgs, '--json'], { timeoutMs: 90_000 })
  t.equal(up.status, 0, `lab up exits 0 ${up.stderr}`)
  st = readLabState(stateDir)
  const status = await beckon(['lab', 'status', ...labArgs, '--json'])
  const s = JSON.parse(status.stdout) as Record<string, any>
  t.same(Object.keys(s.nodes).sort(), ['carrier-fw', 'client', 'dns', 'gateway', 'ldap', 'mail', 'relay', 'smsc', 'terminal'])
  t.equal(s.nodes.relay.addresses.eth0, '198.51.100.20/24')
  t.equal(s.relay.client, '198.51.100.20:8443')
  t.same(s.terminal.services, ['203.0.113.20:8080'])
  t.equal(s.user.name, 'dr-grey')
  t.match(s.user.password, /^\S{8,}$/)
  t.same(s.running, { named: true, 'charon-client': true, 'charon-terminal': true, 'charon-relay': true, slapd: true, smsc: true, postfix: true, dovecot: true, service: true, agent: true, relay: true, gateway: true })
  // The management API: URL, admin token and CA, as an engineer needs them.
  t.equal(s.api.url, 'https://127.0.0.1:8444')
  t.match(s.api.token, /^bkn_[a-f0-9]{16}_[\w-]{43}$/)
  t.match(readFileSync(s.api.ca as string, 'utf8'), /BEGIN CERTIFICATE/)
  const table = await beckon(['lab', 'status', ...labArgs])
  t.match(table.stdout, /beckon lab exec client -- beckon connect patient-phone --tcp 8080 -L 18080/)
})

t.test('beckon connect from the client node, then GET the glucose log', async (t) => {
  const conn = beckonAsync(['lab', 'exec', ...labArgs, 'client', '--', 'beckon', 'connect', 'patient-phone', '--tcp', '8080', '-L', '18080', '--json'])
  t.teardown(() => { conn.kill('SIGTERM') })
  let err = ''
  conn.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await waitFor('beckon connect to forward', () => err.includes('"stage":"forwarding"'), 20_000)
  const stages = err.trim().split('\n').map((l) => (JSON.parse(l) as { stage: string }).stage)
  t.same(stages, ['connecting', 'requested', 'signalled', 'called-back', 'connected', 'forwarding'], 'stages shown as they happen')
  t.match(err, /"channel":"sms"/, 'the signal went by SMS')
  const get = await inNode('client', ['curl', '-sS', '-m', '10', 'http://127.0.0.1:18080/glucose'])
  t.equal(get.status, 0, get.stderr)
  const body = JSON.parse(get.stdout) as { patient: string, readings: unknown[] }
  t.equal(body.patient, 'patient-phone')
  t.equal(body.readings.length, 6, 'glucose readings arrived')
  const again = await inNode('client', ['curl', '-sS', '-m', '10', 'http://127.0.0.1:18080/glucose'])
  t.equal(JSON.parse(again.stdout).patient, 'patient-phone', 'a second local connection opens its own session')
})

t.test('standard curl through the relay (HTTPS proxy, CONNECT, Basic)', async (t) => {
  const r = await inNode('client', ['curl', '-sS', '-m', '20', '--proxytunnel', '--proxy', `https://${st.user.name}:${st.user.password}@${st.relay.client}`,
    '--proxy-cacert', st.relay.ca, 'http://patient-phone:8080/glucose'])
  t.equal(r.status, 0, r.stderr)
  t.equal(JSON.parse(r.stdout).patient, 'patient-phone')
})

t.test('the direct path fails: client and relay cannot reach the terminal', async (t) => {
  for (const node of ['client', 'relay']) {
    const r = await inNode(node, ['curl', '-sS', '-m', '2', '-o', '/dev/null', 'http://203.0.113.20:8080/glucose'])
    t.equal(r.status, 28, `${node} → terminal:8080 times out (dropped by carrier-fw)`)
  }
  const agent = await inNode('client', ['curl', '-sS', '-m', '2', '-o', '/dev/null', 'telnet://203.0.113.20:7400'])
  t.not(agent.status, 0, 'the agent port is not reachable from the Internet either')
  const counters = await inNode('carrier-fw', ['nft', 'list', 'chain', 'inet', 'beckon_fw', 'forward'])
  t.match(counters.stdout, /counter packets [1-9]\d* bytes \d+ comment "new inbound: dropped"/, 'carrier-fw counted the dropped attempts')
})

t.test('refusals: 407, 404, 403, and what curl sees', async (t) => {
  const wrong = await sessions(1, 'patient-phone:8080', st.user.name, 'wrong-password')
  t.match(wrong.results[0], { code: 'BECKON_ERR_AUTH_FAILED', status: 407 })
  const unknown = await sessions(1, 'no-such-phone:8080')
  t.match(unknown.results[0], { code: 'BECKON_ERR_UNKNOWN_DEVICE', status: 404 })
  const visitor = await sessions(1, 'patient-phone:8080', st.visitor.name, st.visitor.password)
  t.match(visitor.results[0], { code: 'BECKON_ERR_FORBIDDEN', status: 403 })
  const port = await sessions(1, 'patient-phone:22')
  t.match(port.results[0], { code: 'BECKON_ERR_FORBIDDEN', status: 403 }, 'a port the policy does not list')
  const curl = await inNode('client', ['curl', '-s', '-m', '10', '-o', '/dev/null', '-w', '%{http_connect}', '--proxytunnel',
    '--proxy', `https://${st.user.name}:nope@${st.relay.client}`, '--proxy-cacert', st.relay.ca, 'http://patient-phone:8080/'])
  t.equal(curl.stdout, '407', 'curl sees 407 for a wrong password')
})

t.test('gateway stopped → 504 after the wake timeout; agent stopped → 502', async (t) => {
  await stopRole(st, 'gateway')
  const slow = await sessions(1)
  t.match(slow.results[0], { code: 'BECKON_ERR_WAKE_TIMEOUT', status: 504 })
  t.ok(slow.results[0]!.ms >= 10_000, `answered after the 10 s wake timeout (${slow.results[0]!.ms} ms)`)
  await startRole(st, 'gateway')

  await stopRole(st, 'agent')
  const down = await sessions(1)
  t.match(down.results[0], { code: 'BECKON_ERR_TERMINAL_UNREACHABLE', status: 502 })
  t.ok(down.results[0]!.ms < 10_000, 'promptly: the gateway dialled back to say so')
  await startRole(st, 'agent')
  t.equal((await sessions(1)).ok, 1, 'works again once both are back')
})

t.test('forged, expired, replayed and garbage signals injected at the SMSC are refused; nothing is dialled', async (t) => {
  const etc = (f: string): Record<string, any> => parseYaml(readFileSync(join(stateDir, 'etc', f), 'utf8')) as Record<string, any>
  const secrets = etc('lab-secrets.yaml')
  const relayCfg = etc('relay.yaml')
  const relayKey = privateKeyFromRaw('x25519', relayCfg.keys.x25519_private as string)
  const gwPub = publicKeyFromRaw('x25519', secrets.gateway_x25519_public as string)
  const now = Math.floor(Date.now() / 1000)
  const signal = (expiry: number): Buffer => sealSignal({
    tunnel: Tunnel.TCP, relayAddress: '198.51.100.20', dialbackPort: 7001, sessionId: randomBytes(12),
    expiry, sessionKey: randomBytes(32), refKind: 'msisdn', reference: '+15550100',
  }, relayKey, gwPub)

  const header = Buffer.alloc(3)
  header[0] = 1
  header.writeUInt16BE(keyId(publicKeyFromRaw('x25519', secrets.relay_x25519_public as string)), 1)
  const forged = Buffer.concat([header, randomBytes(93)])
  const expired = signal(now - 30)
  const valid = signal(now + 60) // no client waits for it: the relay will refuse its dial-back
  const garbage = 'raw:' + Buffer.from('not a beckon signal').toString('hex')

  const before = logLines('gateway')
  const opened = (): number => logLines('agent').filter((l) => l.msg === 'agent: session open').length
  const agentBefore = opened()
  const inject = await inNode('client', [process.execPath, fixture('inject-sms.mjs'), secrets.smsc_url, 'relay', secrets.smpp_relay_password, '+15550100',
    forged.toString('hex'), expired.toString('hex'), valid.toString('hex'), valid.toString('hex'), garbage])
  t.equal(inject.status, 0, inject.stderr)

  const newLines = (): Array<Record<string, any>> => logLines('gateway').slice(before.length)
  await waitFor('the gateway to process 5 messages', () => newLines().filter((l) => l.msg?.startsWith('gateway: signal')).length >= 5, 15_000)
  const refused = newLines().filter((l) => l.msg === 'gateway: signal refused; nothing dialled').map((l) => l.code).sort()
  t.same(refused, ['BECKON_ERR_SIGNAL_EXPIRED', 'BECKON_ERR_SIGNAL_FORGED', 'BECKON_ERR_SIGNAL_REPLAYED', 'BECKON_ERR_SMS_MALFORMED'], 'each refused with its code')
  const validId = newLines().find((l) => l.msg === 'gateway: signal accepted')?.session as string
  t.ok(validId, 'the one valid signal was accepted once')
  await waitFor('its dial-back to end', () => newLines().some((l) => l.session === validId && l.msg === 'gateway: dial-back failed'), 10_000)
  t.equal(newLines().filter((l) => l.msg === 'gateway: terminal answered').length, 1, 'only the valid signal reached the terminal')
  const relayRefused = logLines('relay').filter((l) => l.msg === 'relay: dial-back refused' && String(l.err).includes(validId))
  t.equal(relayRefused.length, 1, 'the relay refused a dial-back nobody waited for')
  t.equal(opened(), agentBefore, 'the agent opened no session for any injected signal')
})

t.test('50 concurrent sessions succeed, close cleanly, and leak nothing', async (t) => {
  await sessions(2) // warm: caches and binds
  const pids = ['relay', 'gateway', 'agent'].map((n) => st.processes[n]!.pid)
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 300))
  await settle()
  const fdsBefore = pids.map(fdCount)
  const procsBefore = await Promise.all(['relay', 'gateway', 'terminal'].map(async (n) => (await run('ip', ['netns', 'pids', `${prefix}-${n}`])).stdout.trim().split('\n').length))
  const r = await sessions(50)
  t.equal(r.ok, 50, `all 50 succeeded (${JSON.stringify(r.results.filter((x) => !x.ok).slice(0, 3))})`)
  await waitFor('sockets to be released', () => pids.every((p, i) => fdCount(p) <= fdsBefore[i]!), 10_000).catch(() => {})
  const fdsAfter = pids.map(fdCount)
  t.same(fdsAfter, fdsBefore, `open descriptors of relay, gateway, agent back to ${fdsBefore.join('/')}`)
  const procsAfter = await Promise.all(['relay', 'gateway', 'terminal'].map(async (n) => (await run('ip', ['netns', 'pids', `${prefix}-${n}`])).stdout.trim().split('\n').length))
  t.same(procsAfter, procsBefore, 'no extra processes')
  const ms = r.results.map((x) => x.ms).sort((a, b) => a - b)
  t.comment(`50 concurrent sessions: median ${ms[25]} ms, max ${ms[49]} ms`)
})

t.test('lab down leaves nothing behind', async (t) => {
  const pids = Object.values(st.processes).map((p) => p.pid)
  const down = await beckon(['lab', 'down', ...labArgs])
  t.equal(down.status, 0)
  t.same((await listNetns()).filter((n) => n.startsWith(`${prefix}-`)), [], 'no namespace')
  t.notOk(existsSync(stateDir), 'no state directory')
  const alive = pids.filter((p) => { try { process.kill(p, 0); return true } catch { return false } })
  t.same(alive, [], 'no process')
})
