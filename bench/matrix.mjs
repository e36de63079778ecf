// bench/matrix: the NAT matrix (src/lab/variants.ts) — per carrier variant, one lab:
// CONNECT→200 p50 over N raw sessions, IPsec tunnel-up time (beckon connect start →
// tunnel-up), TCP throughput and RTT through the tunnel (client → terminal's permanent
// address), and the outcome. Reference: the plain lab (no variant); ratio = plain / ours
// (≥ 1: the variant costs the rendezvous nothing)
// for CONNECT→200 p50.
// Slow variants use the test's shortened clock unless BECKON_MATRIX_SLOW=1 (sleepy:
// 20 s wake delay; short-nat-timeout: 5 s NAT timeout and a 20 s idle before the RTT run).
// usage (root, after npm run build): node bench/matrix.mjs [sessions] [--record] [--only v1,v2]
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { stopRole } from '../dist/lab/lab.js'
import { ROOT, withLab, inNode, spawnInNode, percentile, report, recordSection, machine } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const n = nums[0] ?? 10
const record = process.argv.includes('--record')
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1].split(',') : undefined
const SLOW = process.env.BECKON_MATRIX_SLOW === '1'
const BECKON = join(ROOT, 'dist/cli/main.js')

const VARIANTS = [
  { name: 'plain', net: [] },
  { name: 'double-nat', net: ['double-nat'] },
  { name: 'symmetric-nat', net: ['symmetric-nat'] },
  { name: 'egress-proxy', net: ['egress-proxy'] },
  { name: 'ipv6-only', net: ['ipv6-only'] },
  { name: 'lossy', net: ['lossy'] },
  { name: 'short-nat-timeout', net: ['short-nat-timeout'], opts: { natTimeoutS: SLOW ? 30 : 5 }, idleMs: SLOW ? 300_000 : 20_000 },
  { name: 'sleepy', net: ['sleepy'], opts: { wakeDelayMs: SLOW ? 300_000 : 20_000, wakeTimeoutMs: SLOW ? 600_000 : 60_000 }, sessions: 1 },
].filter((v) => only === undefined || only.includes(v.name))

/** beckon connect (IPsec) in the client node; resolves at tunnel-up with the elapsed ms. */
function tunnel (st) {
  const t0 = Date.now()
  const conn = spawn(process.execPath, [BECKON, 'lab', 'exec', '--state-dir', st.stateDir, '--prefix', st.prefix, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--json'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const up = new Promise((resolve, reject) => {
    let buf = ''
    conn.stderr.on('data', (d) => { buf += d; if (buf.includes('"tunnel-up"')) resolve(Date.now() - t0); if (buf.includes('"error"')) reject(new Error(buf.trim().split('\n').pop())) })
    conn.once('exit', () => reject(new Error(`beckon connect exited: ${buf.trim().split('\n').pop()}`)))
  })
  return { conn, up, stop: () => new Promise((resolve) => { if (conn.exitCode !== null) return resolve(); conn.once('exit', resolve); conn.kill('SIGTERM') }) }
}

/** Goodput through the tunnel: 8 MiB sent to the terminal's echo and read back. */
async function throughput (st) {
  const T = st.terminal.permanentAddress
  // bench/tcp-rtt's server echoes; send 8 MiB and read it back: the path's goodput both ways.
  const out = await inNode(st, 'client', [process.execPath, '-e', `
    const net = require('node:net'); const s = net.connect({ host: '${T}', port: 8080 }); const N = 8 * 1024 * 1024; let got = 0; const t0 = Date.now()
    s.on('connect', () => { const b = Buffer.alloc(64 * 1024, 7); let sent = 0; const pump = () => { while (sent < N) { sent += b.length; if (!s.write(b)) return s.once('drain', pump) } }; pump() })
    s.on('data', (d) => { got += d.length; if (got >= N) { console.log(JSON.stringify({ mbps: (2 * N * 8) / ((Date.now() - t0) / 1000) / 1e6 })); s.destroy() } })
  `], { timeoutMs: 300_000 })
  return JSON.parse(out).mbps
}

const rows = []
let plainP50
for (const v of VARIANTS) {
  process.stderr.write(`matrix: ${v.name}\n`)
  const res = { p50: NaN, tunnelMs: NaN, mbps: NaN, rttMs: NaN, outcome: 'ok' }
  try {
    await withLab({ net: v.net, ...(v.opts ?? {}) }, async (st) => {
      const seq = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', String(v.sessions ?? n)], { timeoutMs: 900_000 }))
      res.p50 = percentile(seq.map((r) => r.ms), 50)
      // The terminal echoes on 8080 for the RTT and throughput runs (the policy allows 8080).
      await stopRole(st, 'service')
      const echo = spawnInNode(st, 'terminal', [process.execPath, join(ROOT, 'bench/tcp-rtt.mjs'), 'server', '8080'])
      try {
        await new Promise((resolve) => setTimeout(resolve, 300))
        const t = tunnel(st)
        try {
          res.tunnelMs = await t.up
          if (v.idleMs !== undefined) await new Promise((resolve) => setTimeout(resolve, v.idleMs))
          const rtt = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/tcp-rtt.mjs'), 'client', st.terminal.permanentAddress, '8080', '50']))
          res.rttMs = rtt.medianMs
          res.mbps = await throughput(st)
          if (v.idleMs !== undefined) res.outcome = `ok after ${v.idleMs / 1000} s idle`
          if (st.net.lossy !== undefined) res.outcome += st.net.lossy === 'netem' ? ' (netem: 2 % loss, 150 ± 30 ms, reordering)' : ' (no netem in this kernel: 2 % loss + 20 Mbit/s tbf, no fixed delay)'
        } finally { await t.stop() }
      } finally { echo.kill('SIGKILL') }
    })
  } catch (err) {
    res.outcome = `FAILED: ${String(err.message ?? err).slice(0, 80)}`
  }
  if (v.name === 'plain') plainP50 = res.p50
  rows.push([`${v.name} connect-to-200 p50 (ms)`, res.p50, v.name === 'plain' ? '-' : plainP50 ?? '-', v.name === 'plain' || plainP50 === undefined ? '-' : plainP50 / res.p50, `${v.sessions ?? n} raw sessions; ${res.outcome}`])
  rows.push([`${v.name} IPsec tunnel-up (ms)`, res.tunnelMs, '-', '-', 'beckon connect start → tunnel-up'])
  rows.push([`${v.name} throughput (Mbit/s)`, res.mbps, '-', '-', '8 MiB echoed through the tunnel'])
  rows.push([`${v.name} RTT median (ms)`, res.rttMs, '-', '-', '50 sequential 32-byte echoes through the tunnel'])
}
const text = report('bench/matrix', rows)
// The full-clock run (minutes per slow variant) gets its own section beside the CI-clock one.
if (record) recordSection(SLOW ? 'matrix-full-clock' : 'matrix', text, `Namespace lab, one lab per carrier variant (src/lab/variants.ts; \`beckon lab up --net <variant>\`); reference = the plain lab. ${SLOW ? 'Full clock' : 'Shortened clock: sleepy 20 s wake delay, short-nat-timeout 5 s NAT timeout and 20 s idle'}. ${machine()}.`)
