// The gateway's dial-back through an egress proxy (HTTP CONNECT), as carriers without a
// direct way out require: the `egress_proxy` setting, HTTPS_PROXY/NO_PROXY, refusals.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import net, { type AddressInfo } from 'node:net'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../src/core/keys.js'
import { silentLogger } from '../../../src/core/log.js'
import { HELLO_SIZE } from '../../../src/proto/dialback/dialback.js'
import { Tunnel, sealSignal } from '../../../src/proto/signal/token.js'
import { Gateway, parseGatewayConfig } from '../../../src/roles/gateway/gateway.js'

const relayX = generateRawKeyPair('x25519')
const gwX = generateRawKeyPair('x25519')
const base = { keys: { x25519_private: gwX.privateKey }, trusted_relays: [relayX.publicKey] }

t.test('config: egress_proxy is an http URL; nat_keepalive a duration of at least 1 s', async (t) => {
  const c = parseGatewayConfig({ ...base, egress_proxy: 'http://beckon-gw:pw@203.0.113.30:3128', nat_keepalive: '15s' })
  t.same(c.egressProxy, { host: '203.0.113.30', port: 3128, user: 'beckon-gw', password: 'pw' })
  t.equal(c.natKeepaliveMs, 15_000)
  t.equal(parseGatewayConfig(base).egressProxy, undefined)
  t.equal(parseGatewayConfig(base).natKeepaliveMs, 25_000, 'below the common 30 s NAT timeouts by default')
  t.equal(parseGatewayConfig({ ...base, nat_keepalive: '10ms' }).natKeepaliveMs, 1_000)
  t.throws(() => parseGatewayConfig({ ...base, egress_proxy: 'socks5://p:1' }), { code: 'BECKON_ERR_CONFIG', message: /gateway\.yaml\.egress_proxy: only http:\/\// })
})

interface Net { terminal: number, relay: number, hellos: number, proxied: string[], proxy: number, keepAlive: boolean[] }

/** A terminal, a relay dial-back listener, and a CONNECT proxy that needs Basic u:p. */
async function network (t: Test): Promise<Net> {
  const n: Net = { terminal: 0, relay: 0, hellos: 0, proxied: [], proxy: 0, keepAlive: [] }
  const listen = async (srv: net.Server): Promise<number> => {
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise((resolve) => { srv.close(resolve); srv.emit('close') }))
    return (srv.address() as AddressInfo).port
  }
  const socks = new Set<net.Socket>()
  t.teardown(() => { for (const s of socks) s.destroy() })
  n.terminal = await listen(net.createServer((s) => { socks.add(s); s.on('error', () => {}) }))
  n.relay = await listen(net.createServer((s) => {
    socks.add(s)
    s.on('error', () => {})
    let got = 0
    s.on('data', (d: Buffer) => { got += d.length; if (got >= HELLO_SIZE) { n.hellos++; s.end() } })
  }))
  n.proxy = await listen(net.createServer((c) => {
    socks.add(c)
    c.on('error', () => {})
    c.once('data', (d: Buffer) => {
      const head = d.toString('latin1')
      const m = /^CONNECT 127\.0\.0\.1:(\d+) HTTP\/1\.1\r\n/.exec(head)
      n.proxied.push(head.split('\r\n')[0]!)
      if (!/Proxy-Authorization: Basic dTpw\r\n/.test(head)) { c.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n'); return }
      if (m === null) { c.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'); return }
      const up = net.connect(Number(m[1]), '127.0.0.1', () => { c.write('HTTP/1.1 200 Connection established\r\n\r\n'); c.pipe(up); up.pipe(c) })
      socks.add(up)
      up.on('error', () => c.destroy())
    })
  }))
  return n
}

function token (relayPort: number): Buffer {
  return sealSignal({
    tunnel: Tunnel.TCP, relayAddress: '127.0.0.1', dialbackPort: relayPort, sessionId: randomBytes(12),
    expiry: Math.floor(Date.now() / 1000) + 60, sessionKey: randomBytes(32), refKind: 'msisdn', reference: '+15550100',
  }, privateKeyFromRaw('x25519', relayX.privateKey), publicKeyFromRaw('x25519', gwX.publicKey))
}

function gateway (t: Test, n: Net, extra: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Gateway {
  const cfg = parseGatewayConfig({ ...base, terminals: { '+15550100': { address: `127.0.0.1:${n.terminal}` } }, connect_timeout: '2s', state_dir: t.testdir(), ...extra })
  const g = new Gateway(cfg, silentLogger, Date.now, env)
  t.teardown(() => g.close())
  return g
}

t.test('egress_proxy: the dial-back goes through the proxy with its credentials', async (t) => {
  const n = await network(t)
  const g = gateway(t, n, { egress_proxy: `http://u:p@127.0.0.1:${n.proxy}` })
  await g.handle(token(n.relay), { channel: 'test' })
  t.same(n.proxied, [`CONNECT 127.0.0.1:${n.relay} HTTP/1.1`], 'one CONNECT to the relay\'s dial-back port')
  t.equal(n.hellos, 1, 'the relay got the hello through the tunnel')
  t.equal(g.stats.dialbacks, 1)
})

t.test('HTTPS_PROXY from the environment when no egress_proxy is set; NO_PROXY exempts', async (t) => {
  const n = await network(t)
  await gateway(t, n, {}, { HTTPS_PROXY: `http://u:p@127.0.0.1:${n.proxy}` }).handle(token(n.relay), { channel: 'test' })
  t.equal(n.proxied.length, 1, 'HTTPS_PROXY used')
  t.equal(n.hellos, 1)
  await gateway(t, n, {}, { HTTPS_PROXY: `http://u:p@127.0.0.1:${n.proxy}`, NO_PROXY: '127.0.0.0/8' }).handle(token(n.relay), { channel: 'test' })
  t.equal(n.proxied.length, 1, 'NO_PROXY: straight to the relay')
  t.equal(n.hellos, 2)
})

t.test('wrong proxy credentials: no dial-back, logged with the coded error', async (t) => {
  const n = await network(t)
  const warned: Array<Record<string, unknown>> = []
  const log = { ...silentLogger, child: () => log, warn: (o: Record<string, unknown>) => { warned.push(o) } } as unknown as typeof silentLogger
  const cfg = parseGatewayConfig({ ...base, terminals: { '+15550100': { address: `127.0.0.1:${n.terminal}` } }, connect_timeout: '2s', state_dir: t.testdir(), egress_proxy: `http://u:wrong@127.0.0.1:${n.proxy}` })
  const g = new Gateway(cfg, log, Date.now, {})
  t.teardown(() => g.close())
  await g.handle(token(n.relay), { channel: 'test' })
  t.equal(n.hellos, 0, 'nothing reached the relay')
  t.ok(warned.some((w) => w.code === 'BECKON_ERR_PROXY_REFUSED' && /407/.test(String(w.err))), 'the refusal is logged as BECKON_ERR_PROXY_REFUSED (407)')
})
