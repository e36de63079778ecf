// CONNECT pieces: targets, credentials, response heads (client reader), errors.
import t from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { BeckonError } from '../../../../src/core/errors.js'
import { basicAuth, errorResponse, parseProxyAuthorization, parseTarget, readResponse, responseHead } from '../../../../src/proto/connect/connect.js'

t.test('targets', async (t) => {
  t.same(parseTarget('patient-phone:8080'), { device: 'patient-phone', mode: 'tcp', port: 8080 })
  t.same(parseTarget('Patient-Phone:ipsec'), { device: 'patient-phone', mode: 'ipsec' })
  for (const bad of ['patient-phone', ':80', 'a_b:80', 'x:0', 'x:65536', 'x:http', '-x:80', 'x-:80', `${'a'.repeat(64)}:1`, 'a:b:c']) {
    t.throws(() => parseTarget(bad), { code: 'BECKON_ERR_BAD_REQUEST' }, bad)
  }
})

t.test('credentials', async (t) => {
  t.same(parseProxyAuthorization(basicAuth('dr-grey', 'p:w')), { scheme: 'basic', user: 'dr-grey', password: 'p:w' })
  t.same(parseProxyAuthorization('Bearer abc.def'), { scheme: 'bearer', token: 'abc.def' })
  t.equal(parseProxyAuthorization(undefined), undefined)
  for (const bad of ['Basic', 'Digest x', 'Basic bm9jb2xvbg==', 'a b c']) t.throws(() => parseProxyAuthorization(bad), { code: 'BECKON_ERR_AUTH_FAILED' }, bad)
})

t.test('responses: heads, JSON errors, no header injection', async (t) => {
  t.equal(responseHead(102, { 'Beckon-Stage': 'signalled; channel=sms' }), 'HTTP/1.1 102 Processing\r\nBeckon-Stage: signalled; channel=sms\r\n\r\n')
  t.throws(() => responseHead(200, { X: 'a\r\nSet-Cookie: x' }), { code: 'BECKON_ERR_INTERNAL' })
  const e = errorResponse(new BeckonError('BECKON_ERR_AUTH_REQUIRED'))
  t.match(e, /^HTTP\/1\.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="beckon", Bearer realm="beckon"\r\n/)
  t.match(e, /\r\n\r\n\{"code":"BECKON_ERR_AUTH_REQUIRED","message":"proxy authentication required"\}$/)
})

async function serve (bytes: Buffer | string): Promise<net.Socket> {
  const srv = net.createServer((s) => { s.end(bytes) })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1')
  c.on('close', () => srv.close())
  await once(c, 'connect')
  return c
}

t.test('the client reader: interim, final, error body, leftovers, garbage', async (t) => {
  const s1 = await serve('HTTP/1.1 102 Processing\r\nBeckon-Stage: called-back\r\n\r\nHTTP/1.1 200 Connection Established\r\nBeckon-Session: ab\r\n\r\nDATA')
  t.equal((await readResponse(s1, 1000)).headers.get('beckon-stage'), 'called-back')
  const r = await readResponse(s1, 1000)
  t.equal(r.status, 200)
  t.equal(r.headers.get('beckon-session'), 'ab')
  const [rest] = await once(s1, 'data') as [Buffer]
  t.equal(rest.toString(), 'DATA', 'bytes after the head stay in the stream')
  s1.destroy()

  const s2 = await serve(errorResponse(new BeckonError('BECKON_ERR_WAKE_TIMEOUT', 'no call-back')))
  t.same((await readResponse(s2, 1000)).error, { code: 'BECKON_ERR_WAKE_TIMEOUT', message: 'the terminal did not call back in time: no call-back' })
  s2.destroy()

  const s3 = await serve('SSH-2.0-OpenSSH\r\n\r\n')
  await t.rejects(readResponse(s3, 1000), { code: 'BECKON_ERR_PROTOCOL', message: /bad status line/ })
  const s4 = await serve('HTTP/1.1 200 OK\r\n' + 'X: y\r\n'.repeat(4000))
  await t.rejects(readResponse(s4, 1000), { code: 'BECKON_ERR_PROTOCOL', message: /longer than 16384/ })
  const s5 = await serve('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n')
  await t.rejects(readResponse(s5, 1000), { code: 'BECKON_ERR_PROTOCOL', message: /bad header line/ })
  const s6 = await serve('HTTP/1.1 20')
  await t.rejects(readResponse(s6, 1000), { code: 'BECKON_ERR_PROTOCOL', message: /closed/ })
})
