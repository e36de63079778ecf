// The gateway: configuration refusals, and a replay cache that survives a restart.
import t from 'tap'
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import net, { type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { loadRoleConfig } from '../../../src/core/config.js'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../src/core/keys.js'
import { silentLogger } from '../../../src/core/log.js'
import { Gateway, parseGatewayConfig } from '../../../src/roles/gateway/gateway.js'
import { Tunnel, sealSignal } from '../../../src/proto/signal/token.js'

const relayX = generateRawKeyPair('x25519')
const gwX = generateRawKeyPair('x25519')
const base = { keys: { x25519_private: gwX.privateKey }, trusted_relays: [relayX.publicKey], terminals: { '+15550100': { address: '127.0.0.1:7400' } } }

t.test('unknown keys are refused, naming the key, at every level', async (t) => {
  t.doesNotThrow(() => parseGatewayConfig({ ...base, state_dir: '/tmp/x' }))
  t.throws(() => parseGatewayConfig({ ...base, conect_timeout: '5s' }), { code: 'BECKON_ERR_CONFIG', message: /gateway\.yaml\.conect_timeout: unknown key/ })
  t.throws(() => parseGatewayConfig({ ...base, smpp: { url: 'smpp://a:1', system_id: 'g', password: 'p', adress_range: '+1' } }), { message: /gateway\.yaml\.smpp\.adress_range: unknown key/ })
  t.throws(() => parseGatewayConfig({ ...base, imap: { address: 'a:993', user: 'u', password: 'p', cert: 'x' } }), { message: /gateway\.yaml\.imap\.cert: unknown key/ })
  t.throws(() => parseGatewayConfig({ ...base, keys: { x25519_private: gwX.privateKey, x25519_public: 'x' } }), { message: /gateway\.yaml\.keys\.x25519_public: unknown key/ })
  t.throws(() => parseGatewayConfig({ ...base, terminals: { '+15550100': { address: '127.0.0.1:7400', port: 1 } } }), { message: /gateway\.yaml\.terminals\.\+15550100\.port: unknown key/ })
})

t.test('values that would validate but fail later are refused at start', async (t) => {
  // setTimeout(fn, 2^31) fires at once (with a warning): a 25-day timeout would be none.
  t.throws(() => parseGatewayConfig({ ...base, connect_timeout: '600h' }), { code: 'BECKON_ERR_CONFIG', message: /connect_timeout must be a duration of at most 2147483647 ms/ })
  t.throws(() => parseGatewayConfig({ ...base, connect_timeout: Infinity }), { code: 'BECKON_ERR_CONFIG', message: /connect_timeout/ })
  t.throws(() => parseGatewayConfig({ ...base, connect_timeout: 1e10 }), { code: 'BECKON_ERR_CONFIG', message: /connect_timeout/ })
  // The lifetime bounds how long replay entries live (and the file that holds them).
  t.throws(() => parseGatewayConfig({ ...base, max_signal_lifetime_s: 1e12 }), { code: 'BECKON_ERR_CONFIG', message: /max_signal_lifetime_s must be a number in \[1, 86400\]/ })
  t.equal(parseGatewayConfig({ ...base, connect_timeout: '2147483647ms' }).connectTimeoutMs, 2 ** 31 - 1)
  t.equal(parseGatewayConfig(base, 'g', { STATE_DIRECTORY: '/run/a:/run/b' }).stateDir, '/run/a', 'systemd StateDirectory= by default')
  t.equal(parseGatewayConfig(base, 'g', {}).stateDir, '/var/lib/beckon')
})

interface Listener { port: number, accepted: number }

async function listener (t: Test): Promise<Listener> {
  const l: Listener = { port: 0, accepted: 0 }
  const open = new Set<net.Socket>()
  const srv = net.createServer((s) => { l.accepted++; s.on('error', () => {}); s.resume(); s.end() })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  l.port = (srv.address() as AddressInfo).port
  t.teardown(() => new Promise((resolve) => srv.close(resolve)))
  return l
}

const NOW = 1_900_000_000

function token (relayPort: number, expiry = NOW + 60): Buffer {
  return sealSignal({
    tunnel: Tunnel.TCP, relayAddress: '127.0.0.1', dialbackPort: relayPort, sessionId: randomBytes(12),
    expiry, sessionKey: randomBytes(32), refKind: 'msisdn', reference: '+15550100',
  }, privateKeyFromRaw('x25519', relayX.privateKey), publicKeyFromRaw('x25519', gwX.publicKey))
}

t.test('a signal replayed after a gateway restart is refused, nothing dialled', async (t) => {
  const stateDir = t.testdir()
  const terminal = await listener(t)
  const relay = await listener(t)
  const cfg = parseGatewayConfig({ ...base, terminals: { '+15550100': { address: `127.0.0.1:${terminal.port}` } }, connect_timeout: '1s', state_dir: stateDir })
  let now = NOW * 1000
  const first = new Gateway(cfg, silentLogger, () => now)
  const tok = token(relay.port)
  await first.handle(tok, { channel: 'test' })
  t.equal(terminal.accepted, 1, 'first time: the terminal was dialled')
  t.equal(relay.accepted, 1, 'first time: the relay was dialled back')
  first.close()

  const entries = (JSON.parse(readFileSync(join(stateDir, 'replay.json'), 'utf8')) as { entries: unknown[] }).entries
  t.equal(entries.length, 1, 'the admitted session is on disk')

  now += 5_000
  const second = new Gateway(cfg, silentLogger, () => now)
  t.teardown(() => second.close())
  await second.handle(tok, { channel: 'test' })
  t.same(second.stats.refused, { BECKON_ERR_SIGNAL_REPLAYED: 1 }, 'the restarted gateway refuses the replay')
  t.equal(terminal.accepted, 1, 'nothing dialled towards the terminal')
  t.equal(relay.accepted, 1, 'nothing dialled towards the relay')

  // Bounded: entries leave the file once their signal has expired.
  now = (NOW + 61) * 1000
  await second.handle(token(relay.port, NOW + 120), { channel: 'test' })
  const after = (JSON.parse(readFileSync(join(stateDir, 'replay.json'), 'utf8')) as { entries: Array<[string, number]> }).entries
  t.same(after.map((e) => e[1]), [NOW + 120], 'the expired entry is gone, the new one kept')
})

t.test('a replay cache that cannot be written refuses the signal (fail closed)', async (t) => {
  const dir = t.testdir()
  const terminal = await listener(t)
  const relay = await listener(t)
  const g = new Gateway(parseGatewayConfig({ ...base, terminals: { '+15550100': { address: `127.0.0.1:${terminal.port}` } }, state_dir: join(dir, 'state') }), silentLogger, () => NOW * 1000)
  t.teardown(() => g.close())
  writeFileSync(join(dir, 'state'), 'a file where the state directory should be')
  await g.handle(token(relay.port), { channel: 'test' })
  t.same(g.stats.refused, { BECKON_ERR_INTERNAL: 1 })
  t.equal(terminal.accepted + relay.accepted, 0, 'nothing dialled')
})

t.test('an unreadable replay file stops the gateway from starting', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'replay.json'), '{"v":1,"entries":')
  t.throws(() => new Gateway(parseGatewayConfig({ ...base, state_dir: dir }), silentLogger), { code: 'BECKON_ERR_CONFIG', message: /move it away/ })
})

t.test('gateway.yaml with a self-referencing alias is refused, not recursed into', async (t) => {
  const dir = t.testdir({
    'cycle.yaml': 'terminals: &t\n  "+15550100": { address: "127.0.0.1:1", loop: *t }\n',
    'list.yaml': 'trusted_relays: &r [*r]\n',
    'deep.yaml': `terminals: ${'['.repeat(40)}${']'.repeat(40)}\n`,
  })
  // Before: the cycle reached Fields.fail's JSON.stringify (a TypeError) or recursed without end.
  t.throws(() => loadRoleConfig('gateway', join(dir, 'cycle.yaml'), {}), { code: 'BECKON_ERR_CONFIG', message: /cycle\.yaml\.terminals\.\+15550100\.loop: an alias refers to a node that contains it/ })
  t.throws(() => loadRoleConfig('gateway', join(dir, 'list.yaml'), {}), { code: 'BECKON_ERR_CONFIG', message: /trusted_relays\[0\]: an alias/ })
  t.throws(() => loadRoleConfig('gateway', join(dir, 'deep.yaml'), {}), { code: 'BECKON_ERR_CONFIG', message: /nested deeper than 32/ })
})
