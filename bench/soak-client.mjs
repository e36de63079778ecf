// In the client node, for bench/soak: raw TCP sessions arriving at a fixed rate (open
// loop), each CONNECT → 200 → one HTTP GET of the glucose log → the service's close.
// One JSON line per session on stdout: {i, outcome, ms}, outcome "ok", a BECKON_ERR_*
// code, or "uncoded: …" (the failures the soak exists to find: a hang past the session
// deadline, a body cut short behind a clean end, an error with no code).
//   usage: soak-client.mjs <client.yaml> <device:port> <sessions> <seconds> <max-in-flight>
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { openSession } from '../dist/roles/client/client.js'
import { wasReset } from '../dist/core/stream.js'
import { hostPort } from './lib.mjs'

const [cfgPath, target, nArg, secsArg, inFlightArg] = process.argv.slice(2)
const cfg = parse(readFileSync(cfgPath, 'utf8'))
const { host, port } = hostPort(cfg.relay)
const opts = { relay: { host, port: Number(port) }, tls: { ca: readFileSync(cfg.ca) }, user: cfg.user, password: cfg.password, timeoutMs: 30_000 }
const total = Number(nArg)
const spacingMs = (Number(secsArg) * 1000) / total
const maxInFlight = Number(inFlightArg)
const SESSION_DEADLINE_MS = 90_000

/** One session; never rejects. */
async function one () {
  let s
  try {
    s = await openSession(opts, target)
  } catch (err) {
    return err.code?.startsWith('BECKON_ERR_') ? err.code : `uncoded: ${err.message}`
  }
  return await new Promise((resolve) => {
    const sock = s.socket
    const parts = []
    const timer = setTimeout(() => { sock.destroy(); resolve('uncoded: no answer within the session deadline') }, SESSION_DEADLINE_MS)
    const done = (outcome) => { clearTimeout(timer); sock.destroy(); resolve(outcome) }
    sock.on('data', (d) => parts.push(d))
    // As `beckon connect` does: a reset after the 200 is the path lost (raw TCP cannot resume).
    sock.once('error', (e) => done(e.code === 'ECONNRESET' || e.code === 'EPIPE' ? 'BECKON_ERR_PATH_LOST' : `uncoded: ${e.code ?? e.message}`))
    sock.once('end', () => {
      if (wasReset(sock)) return done('BECKON_ERR_PATH_LOST')
      const text = Buffer.concat(parts).toString()
      done(/^HTTP\/1\.[01] 200/.test(text) && /mmol/.test(text) ? 'ok' : `uncoded: clean end after ${text.length} bytes`)
    })
    // HTTP/1.0: the service closes after its answer.
    sock.write('GET /glucose HTTP/1.0\r\nHost: terminal\r\n\r\n')
  })
}

let inFlight = 0
const all = []
const t0 = Date.now()
for (let i = 0; i < total; i++) {
  const due = t0 + i * spacingMs
  if (Date.now() < due) await new Promise((resolve) => setTimeout(resolve, due - Date.now()))
  while (inFlight >= maxInFlight) await new Promise((resolve) => setTimeout(resolve, 20))
  inFlight++
  const started = Date.now()
  all.push(one().then((outcome) => {
    inFlight--
    process.stdout.write(JSON.stringify({ i, outcome, ms: Date.now() - started }) + '\n')
  }))
}
await Promise.all(all)
process.exit(0)
