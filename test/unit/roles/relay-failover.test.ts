// The client's relay list (from DNS SRV, in order): a relay that refuses the connection or
// does not answer within the per-relay connect timeout is skipped for the next, with a
// relay-failed stage; an HTTP answer from a relay is the answer (no second relay is asked).
//
//   client ──▶ 127.0.0.1:<closed>       refused      → relay-failed
//          ──▶ 127.0.0.1:<silent TLS>   no handshake → relay-failed after connectTimeoutMs
//          ──▶ 127.0.0.1:<fake relay>   200 / 404
import t from 'tap'
import net, { type AddressInfo } from 'node:net'
import { openSession, type Stage } from '../../../src/roles/client/client.js'
import { parseRelayConfig } from '../../../src/roles/relay/config.js'
import { generateRawKeyPair } from '../../../src/core/keys.js'

async function server (onConn: (s: net.Socket) => void): Promise<{ port: number, close: () => Promise<void> }> {
  const socks = new Set<net.Socket>()
  const srv = net.createServer((s) => { socks.add(s); s.on('error', () => {}); onConn(s) })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return { port: (srv.address() as AddressInfo).port, close: async () => { for (const s of socks) s.destroy(); await new Promise((resolve) => srv.close(resolve)) } }
}

/** A relay stand-in that answers every CONNECT with one status line. */
const answering = (status: string, headers = ''): Promise<{ port: number, close: () => Promise<void> }> => server((s) => {
  s.once('data', () => { s.write(`HTTP/1.1 ${status}\r\n${headers}Content-Length: 0\r\n\r\n`) })
})

t.test('a refused relay is skipped at once; the next one answers', async (t) => {
  const closed = await server(() => {})
  const closedPort = closed.port
  await closed.close()
  const good = await answering('200 Connection Established', 'Beckon-Session: s1\r\nBeckon-Channel: sms\r\n')
  t.teardown(async () => { await good.close() })
  const stages: Array<[Stage, Record<string, unknown>, number]> = []
  const started = Date.now()
  const s = await openSession({
    relay: { host: '127.0.0.1', port: 1 },
    relays: [{ host: '127.0.0.1', port: closedPort, name: 'relay.lab.example' }, { host: '127.0.0.1', port: good.port, name: 'relay2.lab.example' }],
    tls: undefined,
    connectTimeoutMs: 300,
  }, 'pp:8080', (stage, d) => stages.push([stage, d, Date.now() - started]))
  s.socket.destroy()
  t.equal(s.session, 's1')
  const failed = stages.filter(([st]) => st === 'relay-failed')
  t.match(failed[0]![1], { name: 'relay.lab.example', relay: `127.0.0.1:${closedPort}`, code: 'BECKON_ERR_PROTOCOL', next: 'relay2.lab.example' })
  t.equal(failed.length, 1)
  t.ok(failed[0]![2] < 1_000, `refused after ${failed[0]![2]} ms`)
  t.match(stages.filter(([st]) => st === 'connecting').map(([, d]) => d.name), ['relay.lab.example', 'relay2.lab.example'])
})

t.test('a silent relay under TLS times out in connectTimeoutMs and the next is tried', async (t) => {
  const silent = await server(() => {})
  const good = await answering('200 Connection Established', 'Beckon-Session: s2\r\n')
  t.teardown(async () => { await silent.close(); await good.close() })
  const stages: Array<[Stage, Record<string, unknown>, number]> = []
  const started = Date.now()
  // TLS to the silent one fails by timeout; the good one is plain, so only the first uses TLS.
  await t.rejects(openSession({ relay: { host: '127.0.0.1', port: 1 }, relays: [{ host: '127.0.0.1', port: silent.port }], tls: {}, connectTimeoutMs: 300 }, 'pp:8080',
    (stage, d) => stages.push([stage, d, Date.now() - started])), { code: 'BECKON_ERR_RELAYS_UNREACHABLE', message: /did not answer/ })
  const [, d, ms] = stages.find(([st]) => st === 'relay-failed')!
  t.match(d, { code: 'BECKON_ERR_TIMEOUT' })
  t.ok(ms < 1_000, `gave up on the silent relay after ${ms} ms`)
})

t.test('an HTTP answer is the answer: 404 from the first relay ends the search', async (t) => {
  const notFound = await answering('404 Not Found')
  let asked = 0
  const other = await server(() => { asked++ })
  t.teardown(async () => { await notFound.close(); await other.close() })
  const stages: Stage[] = []
  await t.rejects(openSession({ relay: { host: '127.0.0.1', port: 1 }, relays: [{ host: '127.0.0.1', port: notFound.port }, { host: '127.0.0.1', port: other.port }], connectTimeoutMs: 300 }, 'pp:8080', (st) => stages.push(st)),
    { code: 'BECKON_ERR_UNKNOWN_DEVICE' })
  t.notOk(stages.includes('relay-failed'))
  t.equal(asked, 0, 'the second relay was never contacted')
})

t.test('relay.yaml dns: parsed, unknown keys refused, the secret never in a message', async (t) => {
  const base = { public_address: '127.0.0.1', client_listen: '127.0.0.1:8443', keys: { x25519_private: generateRawKeyPair('x25519').privateKey, ed25519_private: generateRawKeyPair('ed25519').privateKey } }
  const secret = Buffer.alloc(32, 5).toString('base64')
  const dns = { server: '198.51.100.53', zone: 'lab.beckon.example', tsig: { name: 'beckon-relay', algorithm: 'hmac-sha256', secret }, relays: [{ host: 'relay.lab.beckon.example', address: '198.51.100.20' }, { host: 'relay2.lab.beckon.example', port: 9443 }] }
  const c = parseRelayConfig({ ...base, dns })
  t.match(c.dns, { server: { host: '198.51.100.53', port: 53 }, zone: 'lab.beckon.example', ttl: 30, relays: [{ host: 'relay.lab.beckon.example', address: '198.51.100.20', port: 8443, priority: 10, weight: 0 }, { host: 'relay2.lab.beckon.example', address: undefined, port: 9443, priority: 20 }] })
  t.ok(c.dns!.tsig.secret.equals(Buffer.alloc(32, 5)))
  t.throws(() => parseRelayConfig({ ...base, dns: { ...dns, zonee: 'x' } }), { code: 'BECKON_ERR_CONFIG', message: /relay\.yaml\.dns\.zonee: unknown key/ })
  t.throws(() => parseRelayConfig({ ...base, dns: { ...dns, tsig: { ...dns.tsig, algorithm: 'hmac-md5' } } }), { code: 'BECKON_ERR_CONFIG', message: /only hmac-sha256/ })
  t.throws(() => parseRelayConfig({ ...base, dns: { ...dns, relays: [] } }), { code: 'BECKON_ERR_CONFIG', message: /at least one relay/ })
  const bad = 'not base64 at all!'
  let msg = ''
  try { parseRelayConfig({ ...base, dns: { ...dns, tsig: { ...dns.tsig, secret: bad } } }) } catch (err) { msg = (err as Error).message }
  t.match(msg, /tsig\.secret must be base64/)
  t.notMatch(msg, bad, 'the value is not echoed')
})
