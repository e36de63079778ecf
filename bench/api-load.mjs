// In the relay node: `concurrency` clients issue GETs against the management API over
// keep-alive HTTPS until `total` requests are done or `maxSeconds` pass (bounded both
// ways). Prints {requests, errors, seconds, rps, p50, p99} as JSON.
// usage: node api-load.mjs <url> <token> <ca.pem> <path> <concurrency> <total> <maxSeconds>
import { Agent, request } from 'node:https'
import { readFileSync } from 'node:fs'
const [url, token, caPath, path, concurrency, total, maxSeconds] = process.argv.slice(2)
const agent = new Agent({ keepAlive: true, maxSockets: Number(concurrency), ca: readFileSync(caPath) })
const target = new URL(path, url)
const lat = []
let started = 0
let errors = 0
const deadline = performance.now() + Number(maxSeconds) * 1000
function one () {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const req = request(target, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume()
      res.on('end', () => { if (res.statusCode === 200) lat.push(performance.now() - t0); else errors++; resolve() })
    })
    req.on('error', () => { errors++; resolve() })
    req.end()
  })
}
async function worker () {
  while (started < Number(total) && performance.now() < deadline) { started++; await one() }
}
const t0 = performance.now()
await Promise.all(Array.from({ length: Number(concurrency) }, worker))
const seconds = (performance.now() - t0) / 1000
lat.sort((a, b) => a - b)
const q = (p) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)]
agent.destroy()
process.stdout.write(JSON.stringify({ requests: lat.length, errors, seconds, rps: lat.length / seconds, p50: q(0.5), p99: q(0.99) }) + '\n')
