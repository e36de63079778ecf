// bench/tls-hop: where a TLS hop's CPU goes, as the relay's client side does it: a TLS
// client streams bulk data over TLS into this process's https CONNECT listener, which
// splices the cleartext to a plain TCP sink (src/core/stream.ts). Prints the hop's CPU-s
// per GiB; with --profile, writes a V8 CPU profile of the hop and prints its heaviest
// self-time frames, grouped (what bench/splice's "what limits us" cites).
// With --profile --record, the flame graph goes to docs/flame-tls-hop.svg (bench/flame.mjs).
// usage (after npm run build): node bench/tls-hop.mjs [MiB=2048] [--profile [--record]]
import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { connectTcp, splice } from '../dist/core/stream.js'
import { ROOT as ROOT_DIR, machine } from './lib.mjs'

const role = process.argv[2]
if (role === 'hop') {
  const [dir, sinkPort] = process.argv.slice(3)
  const srv = https.createServer({ key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) })
  srv.on('connect', (_req, client, head) => {
    connectTcp('127.0.0.1', Number(sinkPort), 5_000).then((up) => {
      client.write('HTTP/1.1 200 OK\r\n\r\n')
      if (head.length > 0) up.write(head)
      void splice(client, up).then(() => process.send({ done: true, cpu: process.cpuUsage() }))
    })
  })
  srv.listen(0, '127.0.0.1', () => process.send({ port: srv.address().port, cpu: process.cpuUsage() }))
  process.on('message', () => process.exit(0))
} else {
  const mib = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 2048)
  const profile = process.argv.includes('--profile')
  const dir = mkdtempSync(join(tmpdir(), 'beckon-tls-hop-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-subj', '/CN=hop', '-days', '1'], { stdio: 'ignore' })
  // The sink: counts and discards.
  const sink = net.createServer((s) => { s.on('data', () => {}); s.on('error', () => {}) })
  await new Promise((resolve) => sink.listen(0, '127.0.0.1', resolve))
  const hop = fork(new URL(import.meta.url).pathname, ['hop', dir, String(sink.address().port)], { execArgv: profile ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [] })
  const { port, cpu: c0 } = await new Promise((resolve) => hop.once('message', resolve))
  const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false })
  await new Promise((resolve) => c.once('secureConnect', resolve))
  c.write('CONNECT sink:1 HTTP/1.1\r\nHost: sink\r\n\r\n')
  await new Promise((resolve) => c.once('data', resolve))
  const chunk = Buffer.alloc(1 << 20, 7)
  const t0 = Date.now()
  for (let i = 0; i < mib; i++) if (!c.write(chunk)) await new Promise((resolve) => c.once('drain', resolve))
  c.end()
  const { cpu: c1 } = await new Promise((resolve) => hop.once('message', resolve))
  const secs = (Date.now() - t0) / 1000
  const cpuS = (c1.user + c1.system - c0.user - c0.system) / 1e6
  console.log(`TLS hop: ${mib} MiB in ${secs.toFixed(1)} s, ${(mib / secs).toFixed(0)} MiB/s; hop CPU ${(cpuS / (mib / 1024)).toFixed(2)} CPU-s/GiB (user ${((c1.user - c0.user) / 1e6).toFixed(1)} s, system ${((c1.system - c0.system) / 1e6).toFixed(1)} s)`)
  hop.send('exit')
  await new Promise((resolve) => hop.once('exit', resolve))
  sink.close()
  c.destroy()
  if (profile) {
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
    const p = JSON.parse(readFileSync(join(dir, file), 'utf8'))
    const self = new Map()
    const dt = p.timeDeltas.reduce((a, b) => a + b, 0) / p.samples.length
    const byId = new Map(p.nodes.map((n) => [n.id, n]))
    for (const s of p.samples) {
      const n = byId.get(s)
      const f = n.callFrame
      const name = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}`.trim()
      self.set(name, (self.get(name) ?? 0) + dt)
    }
    const total = [...self.values()].reduce((a, b) => a + b, 0)
    console.log(`profile: ${join(dir, file)}; heaviest self time:`)
    for (const [name, us] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${(100 * us / total).toFixed(1).padStart(5)} %  ${name}`)
    // The flame graph beside the table: docs/flame-tls-hop.svg with --record.
    const { flameSvg } = await import('./flame.mjs')
    const svg = process.argv.includes('--record') ? join(ROOT_DIR, 'docs', 'flame-tls-hop.svg') : join(dir, 'flame.svg')
    writeFileSync(svg, flameSvg(p, `bench/tls-hop: the relay's TLS hop, ${mib} MiB; ${machine()}`))
    console.log(`flame graph: ${svg}`)
  }
  process.exit(0)
}
