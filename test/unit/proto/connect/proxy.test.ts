// HTTP CONNECT through a proxy: URL parsing, HTTPS_PROXY/NO_PROXY, the request bytes, and
// a real exchange with a fake proxy on loopback (200, 407, bytes after the head kept).
import t, { type Test } from 'tap'
import net, { type AddressInfo } from 'node:net'
import { bypassesProxy, connectRequest, connectViaProxy, parseProxyUrl, proxyFor } from '../../../../src/proto/connect/proxy.js'

t.test('parseProxyUrl: http URLs with credentials; anything else is a coded config error', async (t) => {
  t.same(parseProxyUrl('http://user:p%40ss@203.0.113.30:3128'), { host: '203.0.113.30', port: 3128, user: 'user', password: 'p@ss' })
  t.same(parseProxyUrl('http://[fd00::1]:8080'), { host: 'fd00::1', port: 8080 })
  t.same(parseProxyUrl('proxy.example:3128'), { host: 'proxy.example', port: 3128 }, 'a bare host:port means http://')
  t.same(parseProxyUrl('http://proxy.example'), { host: 'proxy.example', port: 80 })
  t.throws(() => parseProxyUrl('https://p:3128'), { code: 'BECKON_ERR_CONFIG', message: /only http:\/\// })
  t.throws(() => parseProxyUrl('http://p:3128/path', 'gateway.yaml.egress_proxy'), { code: 'BECKON_ERR_CONFIG', message: /gateway\.yaml\.egress_proxy: a proxy URL has no path/ })
  t.throws(() => parseProxyUrl('http://:::'), { code: 'BECKON_ERR_CONFIG' })
})

t.test('NO_PROXY: names, suffixes, addresses, CIDR prefixes, ports, *', async (t) => {
  const np = 'localhost, .carrier.example,relay.example:7001, 192.0.2.0/24, fd00:203::/32, 198.51.100.7'
  t.ok(bypassesProxy('localhost', 1, np))
  t.ok(bypassesProxy('gw.carrier.example', 1, np), 'leading-dot suffix')
  t.ok(bypassesProxy('carrier.example', 1, np), 'the suffix domain itself')
  t.notOk(bypassesProxy('evilcarrier.example', 1, np), 'a suffix matches at a dot only')
  t.ok(bypassesProxy('relay.example', 7001, np))
  t.notOk(bypassesProxy('relay.example', 8443, np), 'a port restricts the entry')
  t.ok(bypassesProxy('192.0.2.77', 1, np), 'IPv4 prefix')
  t.notOk(bypassesProxy('11.1.2.3', 1, np))
  t.ok(bypassesProxy('fd00:203:0:113::10', 1, np), 'IPv6 prefix')
  t.ok(bypassesProxy('[fd00:203::1]', 1, np), 'bracketed IPv6')
  t.notOk(bypassesProxy('fd00:198::1', 1, np))
  t.ok(bypassesProxy('198.51.100.7', 1, np))
  t.notOk(bypassesProxy('198.51.100.70', 1, np), 'addresses compare as addresses, not text prefixes')
  t.ok(bypassesProxy('anything', 1, '*'))
  t.notOk(bypassesProxy('anything', 1, undefined))
  t.notOk(bypassesProxy('192.0.2.1', 1, '192.0.2.0/99'), 'a bad prefix length matches nothing')
})

t.test('proxyFor: explicit setting first, then HTTPS_PROXY/https_proxy; NO_PROXY applies to both', async (t) => {
  const explicit = { host: 'p', port: 1 }
  t.same(proxyFor('198.51.100.20', 7001, explicit, {}), explicit)
  t.same(proxyFor('198.51.100.20', 7001, undefined, { HTTPS_PROXY: 'http://u:p@203.0.113.30:3128' }), { host: '203.0.113.30', port: 3128, user: 'u', password: 'p' })
  t.same(proxyFor('198.51.100.20', 7001, undefined, { https_proxy: 'http://203.0.113.30:3128' }), { host: '203.0.113.30', port: 3128 })
  t.equal(proxyFor('198.51.100.20', 7001, undefined, {}), undefined)
  t.equal(proxyFor('198.51.100.20', 7001, undefined, { HTTPS_PROXY: '' }), undefined)
  t.equal(proxyFor('198.51.100.20', 7001, explicit, { NO_PROXY: '198.51.100.0/24' }), undefined)
  t.equal(proxyFor('198.51.100.20', 7001, undefined, { HTTPS_PROXY: 'http://p:1', no_proxy: '198.51.100.20' }), undefined)
  t.throws(() => proxyFor('h', 1, undefined, { HTTPS_PROXY: 'socks5://p:1' }), { code: 'BECKON_ERR_CONFIG', message: /HTTPS_PROXY/ })
})

t.test('connectRequest: the authority in brackets for IPv6, Basic credentials when given', async (t) => {
  t.equal(connectRequest('198.51.100.20', 7001, { host: 'p', port: 1, user: 'beckon-gw', password: 'pw' }),
    // Proxy-Authorization: Basic base64("beckon-gw:pw")
    'CONNECT 198.51.100.20:7001 HTTP/1.1\r\nHost: 198.51.100.20:7001\r\nProxy-Authorization: Basic YmVja29uLWd3OnB3\r\n\r\n')
  t.equal(connectRequest('fd00::20', 7001, { host: 'p', port: 1 }), 'CONNECT [fd00::20]:7001 HTTP/1.1\r\nHost: [fd00::20]:7001\r\n\r\n')
})

/** A one-shot fake proxy that answers `reply` and then echoes `after` bytes. */
async function fakeProxy (t: Test, reply: string): Promise<{ port: number, request: Promise<string> }> {
  let got!: (s: string) => void
  const request = new Promise<string>((resolve) => { got = resolve })
  const srv = net.createServer((s) => {
    let buf = ''
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1')
      if (!buf.includes('\r\n\r\n')) return
      s.off('data', onData)
      got(buf)
      s.write(reply)
      if (reply.startsWith('HTTP/1.1 200')) s.pipe(s)
      else s.end()
    }
    s.on('data', onData)
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => srv.close(resolve)))
  return { port: (srv.address() as AddressInfo).port, request }
}

t.test('connectViaProxy: 200 gives the tunnel with nothing lost; 407 and 403 are PROXY_REFUSED', async (t) => {
  const ok = await fakeProxy(t, 'HTTP/1.1 200 Connection established\r\n\r\nearly')
  const sock = await connectViaProxy({ host: '127.0.0.1', port: ok.port, user: 'u', password: 'p' }, '198.51.100.20', 7001, 2_000)
  t.match(await ok.request, /^CONNECT 198\.51\.100\.20:7001 HTTP\/1\.1\r\n.*Proxy-Authorization: Basic dTpw\r\n/s)
  sock.resume()
  sock.write('ping')
  let echoed = ''
  await new Promise<void>((resolve) => sock.on('data', (d: Buffer) => { echoed += d.toString(); if (echoed.includes('ping')) resolve() }))
  t.equal(echoed, 'earlyping', 'bytes right after the proxy\'s head come first, then the echo')
  sock.destroy()

  const denied = await fakeProxy(t, 'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nContent-Length: 5\r\n\r\nnope!')
  await t.rejects(connectViaProxy({ host: '127.0.0.1', port: denied.port }, 'r', 7001, 2_000), { code: 'BECKON_ERR_PROXY_REFUSED', message: /407.*credentials/ })
  const forbidden = await fakeProxy(t, 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
  await t.rejects(connectViaProxy({ host: '127.0.0.1', port: forbidden.port }, 'r', 8443, 2_000), { code: 'BECKON_ERR_PROXY_REFUSED', message: /403 to CONNECT r:8443/ })
})
