// In the client node: N sequential sessions, CONNECT→200 latency of each.
// usage: node client-seq.mjs <client.yaml> <target> <n>
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { openSession } from '../dist/roles/client/client.js'
import { hostPort } from './lib.mjs'
const [cfgPath, target, n] = process.argv.slice(2)
const cfg = parse(readFileSync(cfgPath, 'utf8'))
const { host, port } = hostPort(cfg.relay)
const opts = { relay: { host, port: Number(port) }, tls: { ca: readFileSync(cfg.ca) }, user: cfg.user, password: cfg.password, timeoutMs: 30_000 }
const out = []
for (let i = 0; i < Number(n); i++) {
  const t0 = performance.now()
  const s = await openSession(opts, target)
  out.push({ ms: performance.now() - t0, session: s.session })
  s.socket.destroy()
}
process.stdout.write(JSON.stringify(out) + '\n')
