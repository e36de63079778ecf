// In the client node, for bench/scale. Bounded in count and time.
//   hold <client.yaml> <target> <n1,n2,…> <concurrency>: opens sessions up to each
//     checkpoint, prints {"held","errors","secs"} and waits for a line on stdin before
//     the next; after the last, waits for a line, closes everything and exits.
//   rate <client.yaml> <target> <per-second|max> <seconds> <max-in-flight>: opens and at
//     once closes sessions at a fixed arrival rate (open loop; "max": closed loop at
//     max-in-flight) and prints {"done","errors","rate","p50","p99"} (CONNECT→200, ms).
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { parse } from 'yaml'
import { openSession } from '../dist/roles/client/client.js'
import { hostPort } from './lib.mjs'
import { percentile } from './stats.mjs'

const [mode, cfgPath, target, a, b, c] = process.argv.slice(2)
const cfg = parse(readFileSync(cfgPath, 'utf8'))
const { host, port } = hostPort(cfg.relay)
const opts = { relay: { host, port: Number(port) }, tls: { ca: readFileSync(cfg.ca) }, user: cfg.user, password: cfg.password, timeoutMs: 30_000 }
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

if (mode === 'hold') {
  const checkpoints = a.split(',').map(Number)
  const conc = Number(b)
  const held = []
  let errors = 0
  const t0 = performance.now()
  for (const goal of checkpoints) {
    const deadline = Date.now() + 600_000
    while (held.length < goal && Date.now() < deadline && errors < 100) {
      const batch = Math.min(conc, goal - held.length)
      const got = await Promise.allSettled(Array.from({ length: batch }, () => openSession(opts, target)))
      for (const g of got) {
        if (g.status === 'fulfilled') { g.value.socket.on('error', () => {}); held.push(g.value.socket) } else { errors++; process.stderr.write(`${g.reason?.code}: ${g.reason?.message}\n`) }
      }
    }
    process.stdout.write(JSON.stringify({ held: held.length, errors, secs: (performance.now() - t0) / 1000 }) + '\n')
    await lines.next()
  }
  for (const s of held) s.destroy()
  process.exit(0)
} else {
  const secs = Number(b)
  const maxInFlight = Number(c)
  const lat = []
  let errors = 0
  let inFlight = 0
  const one = async () => {
    inFlight++
    const t = performance.now()
    try {
      const s = await openSession(opts, target)
      lat.push(performance.now() - t)
      s.socket.destroy()
    } catch { errors++ } finally { inFlight-- }
  }
  const t0 = performance.now()
  const end = t0 + secs * 1000
  const running = new Set()
  const track = (p) => { running.add(p); p.finally(() => running.delete(p)) }
  if (a === 'max') {
    while (performance.now() < end) {
      while (inFlight < maxInFlight && performance.now() < end) track(one())
      await Promise.race(running)
    }
  } else {
    const rate = Number(a)
    let sent = 0
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - t0) / 1000) * rate)
      // Open loop: arrivals do not wait for answers (up to the in-flight bound, then counted as errors).
      while (sent < due) { sent++; if (inFlight < maxInFlight) track(one()); else errors++ }
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
  }
  await Promise.allSettled([...running])
  const el = (performance.now() - t0) / 1000
  process.stdout.write(JSON.stringify({ done: lat.length, errors, rate: lat.length / el, p50: percentile(lat, 50), p99: percentile(lat, 99) }) + '\n')
  process.exit(0)
}
