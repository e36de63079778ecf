// The e-mail access request channel and channel fallback, in the namespace lab:
//
//   relay ──SMTP submission 587 (STARTTLS, AUTH)──▶ [mail: postfix ─lmtp─▶ dovecot] ◀──IMAPS 993, IDLE── gateway
//
// Real Postfix and Dovecot from Debian; the gateway reaches the mail node through the
// carrier NAT with an outbound connection only.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { waitFor } from '../../src/core/exec.js'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../src/core/keys.js'
import { labCli, readLabState, startRole, stopRole, type LabState } from '../../src/lab/lab.js'
import { Tunnel, keyId, sealSignal } from '../../src/proto/signal/token.js'
import { BECKON, beckon } from '../helpers/cli.js'
import { requireRoot } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

const prefix = `bkm${process.pid % 10000}`
const stateDir = mkdtempSync(join(tmpdir(), 'beckon-labm-'))
const labArgs = ['--state-dir', stateDir, '--prefix', prefix]
const fixture = (f: string): string => fileURLToPath(new URL(`../fixtures/${f}`, import.meta.url))
const children: ChildProcess[] = []
t.teardown(async () => {
  for (const c of children) c.kill('SIGKILL')
  await beckon(['lab', 'down', ...labArgs])
})
let st: LabState
let secrets: Record<string, string>

async function inNode (node: string, argv: string[], timeoutMs = 60_000): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return await beckon(['lab', 'exec', ...labArgs, node, '--', ...argv], { timeoutMs })
}

function logLines (name: string): Array<Record<string, any>> {
  return readFileSync(join(stateDir, 'logs', `${name}.log`), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>)
}

/** Through the management API: applies to the next CONNECT, no restart. */
async function setChannels (channels: string[]): Promise<void> {
  await labCli(st, ['device', 'set', 'patient-phone', '--channels', channels.join(',')])
}

/** One raw-mode session through the lab client; resolves with its stages and result. */
async function session (): Promise<{ ok: boolean, stages: Array<Record<string, unknown>>, stderr: string }> {
  const proc = spawn(process.execPath, [BECKON, 'lab', 'exec', ...labArgs, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--tcp', '8080', '-L', '18080', '--json', '--once'], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(proc)
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  const ended = new Promise((resolve) => proc.once('exit', resolve))
  await Promise.race([waitFor('forwarding', () => err.includes('"forwarding"'), 30_000), ended])
  const stages = err.trim().split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l) as Record<string, unknown> } catch { return { raw: l } } })
  if (!err.includes('"forwarding"')) return { ok: false, stages, stderr: err }
  const r = await inNode('client', ['curl', '-sS', '-m', '10', 'http://127.0.0.1:18080/glucose'])
  proc.kill('SIGTERM')
  await ended
  return { ok: r.status === 0 && r.stdout.includes('"patient":"patient-phone"'), stages, stderr: err }
}

async function folders (): Promise<{ INBOX: number, Processed: number, Quarantine: number }> {
  const r = await inNode('client', [process.execPath, fixture('imap-folders.mjs'), st.mail.imap, st.mail.gatewayMailbox, secrets.imap_gateway_password!, st.relay.ca])
  return JSON.parse(r.stdout) as { INBOX: number, Processed: number, Quarantine: number }
}

async function injectMail (items: string[]): Promise<void> {
  const r = await inNode('client', [process.execPath, fixture('inject-mail.mjs'), st.mail.smtp, st.mail.relaySender, secrets.smtp_relay_password!, st.relay.ca, st.mail.gatewayMailbox, ...items])
  if (r.status !== 0) throw new Error(r.stderr)
}

/** Tokens sealed with the relay's key, as the relay would (for replay and restart tests). */
function sealed (expiryOffset: number): { hex: string, session: string } {
  const relayCfg = parseYaml(readFileSync(join(stateDir, 'etc', 'relay.yaml'), 'utf8')) as Record<string, any>
  const sessionId = randomBytes(12)
  const token = sealSignal({
    tunnel: Tunnel.TCP, relayAddress: '198.51.100.20', dialbackPort: 7001, sessionId,
    expiry: Math.floor(Date.now() / 1000) + expiryOffset, sessionKey: randomBytes(32), refKind: 'email', reference: 'patient-phone',
  }, privateKeyFromRaw('x25519', relayCfg.keys.x25519_private as string), publicKeyFromRaw('x25519', secrets.gateway_x25519_public!))
  return { hex: token.toString('hex'), session: sessionId.toString('hex') }
}

t.test('lab up --channels sms,email', async (t) => {
  const up = await beckon(['lab', 'up', ...labArgs, '--channels', 'sms,email'], { timeoutMs: 90_000 })
  t.equal(up.status, 0, up.stderr)
  t.match(up.stdout, /signals by sms then email/)
  st = readLabState(stateDir)
  secrets = parseYaml(readFileSync(join(stateDir, 'etc', 'lab-secrets.yaml'), 'utf8')) as Record<string, string>
  t.same(st.channels, ['sms', 'email'])
})

t.test('e-mail only: beckon connect (IPsec) succeeds and the glucose JSON is fetched', async (t) => {
  await setChannels(['email'])
  const proc = spawn(process.execPath, [BECKON, 'lab', 'exec', ...labArgs, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(proc)
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await waitFor('the tunnel', () => err.includes('"tunnel-up"') || err.includes('"error"'), 30_000)
  t.match(err, /"stage":"signalled"[^\n]*"channel":"email"/, 'the signal went by e-mail')
  t.match(err, /"tunnel-up"/)
  const r = await inNode('client', ['curl', '-sS', '-m', '5', `http://[${st.terminal.permanentAddress}]:8080/glucose`])
  t.equal(JSON.parse(r.stdout).patient, 'patient-phone', 'glucose over IPsec, signalled by e-mail')
  const ended = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  await ended
  t.same(await folders(), { INBOX: 0, Processed: 1, Quarantine: 0 }, 'the signal mail was filed as processed')
})

t.test('[sms, email] with the SMSC stopped: the session succeeds over e-mail; the fallback is recorded', async (t) => {
  await setChannels(['sms', 'email'])
  await stopRole(st, 'smsc')
  const s = await session()
  t.ok(s.ok, `session succeeded (${s.stderr.slice(0, 300)})`)
  t.match(s.stages.find((x) => x.stage === 'signalled'), { channel: 'email', fallback: 'sms' }, 'the client sees which channel carried it, and the fallback')
  const failed = logLines('relay').filter((l) => l.msg === 'relay: channel failed, trying the next')
  t.ok(failed.some((l) => l.channel === 'sms' && l.code === 'BECKON_ERR_CHANNEL_UNAVAILABLE'), 'relay log: SMS failed with its code')
  t.ok(logLines('relay').some((l) => l.msg === 'relay: session open' && l.channel === 'email' && JSON.stringify(l.fallback) === '["sms"]'), 'relay session record: channel email, fallback sms')
  await startRole(st, 'smsc')
})

t.test('forged, replayed and garbage mails are quarantined; the gateway keeps running and dials nothing for them', async (t) => {
  const before = logLines('gateway').length
  const answeredBefore = logLines('gateway').filter((l) => l.msg === 'gateway: terminal answered').length
  const folders0 = await folders()
  const header = Buffer.alloc(3)
  header[0] = 1
  header.writeUInt16BE(keyId(publicKeyFromRaw('x25519', secrets.relay_x25519_public!)), 1)
  const forged = Buffer.concat([header, randomBytes(90)]).toString('hex')
  const valid = sealed(60)
  await injectMail([`token:${forged}`, `token:${valid.hex}`, `token:${valid.hex}`, 'raw:no token in here, just words'])
  const fresh = (): Array<Record<string, any>> => logLines('gateway').slice(before)
  await waitFor('four decisions', () => fresh().filter((l) => /gateway: signal (accepted|refused)/.test(String(l.msg))).length >= 4, 20_000)
  const codes = fresh().filter((l) => l.msg === 'gateway: signal refused; nothing dialled').map((l) => l.code).sort()
  t.same(codes, ['BECKON_ERR_MAIL_MALFORMED', 'BECKON_ERR_SIGNAL_FORGED', 'BECKON_ERR_SIGNAL_REPLAYED'], 'each refused with its code')
  t.equal(fresh().filter((l) => l.msg === 'gateway: signal accepted' && l.session === valid.session).length, 1, 'the valid one was accepted once')
  await waitFor('filing', async () => (await folders()).Quarantine === folders0.Quarantine + 3, 10_000)
  const f = await folders()
  t.equal(f.Quarantine - folders0.Quarantine, 3, 'three messages quarantined')
  t.equal(f.Processed - folders0.Processed, 1, 'one processed')
  t.equal(f.INBOX, 0)
  t.equal(logLines('gateway').filter((l) => l.msg === 'gateway: terminal answered').length - answeredBefore, 1, 'only the valid signal reached the terminal')
  t.doesNotThrow(() => process.kill(st.processes.gateway!.pid, 0), 'the gateway is still running')
})

t.test('gateway restarted while mails wait: each valid, unexpired request is handled once', async (t) => {
  await setChannels(['email'])
  await stopRole(st, 'gateway')
  // While the gateway is down: a real client waiting (wake timeout 10 s), a valid signal
  // nobody waits for, and an expired one.
  const waiting = session()
  const spare = sealed(60)
  const expired = sealed(-5)
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  await injectMail([`token:${spare.hex}`, `token:${expired.hex}`])
  await waitFor('three mails waiting', async () => (await folders()).INBOX === 3, 10_000)
  await startRole(st, 'gateway')
  const s = await waiting
  t.ok(s.ok, 'the waiting client got through once the gateway came back')
  const accepted = (): Array<Record<string, any>> => logLines('gateway').filter((l) => l.msg === 'gateway: signal accepted')
  await waitFor('both valid signals handled', () => accepted().length >= 2, 10_000)
  t.ok(logLines('gateway').some((l) => l.msg === 'gateway: signal refused; nothing dialled' && l.code === 'BECKON_ERR_SIGNAL_EXPIRED'), 'the expired one was refused')
  // And once more: nothing left to handle twice.
  await stopRole(st, 'gateway')
  await startRole(st, 'gateway')
  await waitFor('the inbox to be opened', () => logLines('gateway').some((l) => l.msg === 'imap: mailbox open, idling'), 10_000)
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  t.equal(logLines('gateway').filter((l) => l.msg === 'gateway: signal accepted').length, 0, 'after a second restart nothing is handled again')
  t.equal((await folders()).INBOX, 0, 'INBOX empty')
})

t.test('the IMAP server restarts: the gateway reconnects (with backoff) and e-mail signals work again', async (t) => {
  await setChannels(['email'])
  const connectsBefore = logLines('gateway').filter((l) => l.msg === 'imap: mailbox open, idling').length
  await stopRole(st, 'dovecot')
  // Down long enough for several attempts, so the backoff shows.
  await waitFor('three reconnect attempts', () => logLines('gateway').filter((l) => l.msg === 'imap: reconnecting').length >= 3, 15_000)
  await startRole(st, 'dovecot')
  await waitFor('the gateway to reconnect', () => logLines('gateway').filter((l) => l.msg === 'imap: mailbox open, idling').length > connectsBefore, 30_000)
  const delays = logLines('gateway').filter((l) => l.msg === 'imap: reconnecting').map((l) => l.delayMs as number)
  t.ok(delays.length >= 3, `reconnect attempts with delays ${delays.join(', ')} ms`)
  t.ok(delays.slice(0, 3).every((d, i) => i === 0 || d > delays[i - 1]!), 'each delay longer than the one before (backoff)')
  const s = await session()
  t.ok(s.ok, 'a session signalled by e-mail succeeds after the reconnect')
})

t.test('an oversized mail is quarantined unread; a burst larger than one batch is fully drained', async (t) => {
  const f0 = await folders()
  const before = logLines('gateway').length
  const big = `big:${300 * 1024}`
  const burst = Array.from({ length: 60 }, (_, i) => `raw:junk ${i}`)
  await injectMail([big, ...burst])
  await waitFor('61 messages quarantined', async () => (await folders()).Quarantine - f0.Quarantine >= 61, 60_000)
  const f = await folders()
  t.equal(f.Quarantine - f0.Quarantine, 61, 'all 61 quarantined')
  t.equal(f.INBOX, 0, 'nothing left in INBOX')
  const refused = logLines('gateway').slice(before).filter((l) => l.msg === 'gateway: signal refused; nothing dialled')
  t.ok(refused.some((l) => /exceeds 262144/.test(String(l.err))), 'the oversized one refused for its size')
  t.equal(refused.length, 61)
})
