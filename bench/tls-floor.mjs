// bench/tls-floor: what one idle TLS connection costs a bare Node https server that has
// answered a CONNECT and holds the socket — no relay logic, no second socket. It is the
// floor under bench/scale's memory per session at the relay (one such TLS socket plus a
// plain dial-back socket and the session's records). Prints KiB of RSS per connection.
// usage: node bench/tls-floor.mjs [connections=4000]   (needs `ulimit -n` above 2 × that)
import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'

if (process.argv[2] === 'server') {
  const dir = process.argv[3]
  const srv = https.createServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) })
  const held = []
  srv.on('connect', (_req, s) => { s.write('HTTP/1.1 200 OK\r\n\r\n'); held.push(s) })
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1])
  srv.listen(0, '127.0.0.1', () => process.send({ port: srv.address().port }))
  process.on('message', () => { globalThis.gc?.(); process.send({ rss: rss(), held: held.length }) })
} else {
  const n = Number(process.argv[2] ?? 4000)
  const dir = mkdtempSync(join(tmpdir(), 'beckon-tls-floor-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-subj', '/CN=floor', '-days', '1'], { stdio: 'ignore' })
  const srv = fork(new URL(import.meta.url).pathname, ['server', dir], { execArgv: ['--expose-gc'] })
  const ask = () => new Promise((resolve) => { srv.once('message', resolve); srv.send('rss') })
  const { port } = await new Promise((resolve) => srv.once('message', resolve))
  const one = () => new Promise((resolve, reject) => {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => c.write('CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n'))
    c.once('data', () => resolve(c))
    c.once('error', reject)
  })
  await one() // warm: the first connection loads OpenSSL state once
  const base = await ask()
  const held = []
  for (let i = 0; i < n; i += 50) held.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, one)))
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const after = await ask()
  console.log(`bare Node https server, ${after.held - 1} idle CONNECTed TLS connections: ${((after.rss - base.rss) / n).toFixed(1)} KiB RSS per connection (Node ${process.version})`)
  srv.kill()
  process.exit(0)
}
