// bench/scale: how many sessions one relay holds and how many rendezvous per second it
// makes, in the namespace lab (one process per role, 2 cores shared by all of them).
//   (a)+(c) raw TCP sessions held open and idle (client → relay → gateway → agent →
//       bench sink), opened 50 at a time up to 1k, 2k, 5k and 10k: at each step the RSS
//       and open fds of relay, gateway and agent, and their CPU at rest over 5 s.
//       Memory per session = (RSS now − RSS before the first session) / sessions.
//   (b) sustained rendezvous rate (CONNECT → SMS through the lab SMSC, SMPP windowed →
//       dial-back → descriptor → 200, then closed): the maximum over 10 s at 64 in
//       flight, then CONNECT→200 p50/p99 at 50 %, 80 % and 100 % of it, open loop.
// The relay's per-user rate limit is raised for the run (one bench user makes every
// session) and every lab process, and the client helper, get their soft fd limit raised
// to the hard one (prlimit).
// usage (root, after npm run build): node bench/scale.mjs [max-sessions] [rate-seconds] [--record]
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { startRole, stopRole } from '../dist/lab/lab.js'
import { ROOT, withLab, inNode, report, recordSection, machine, rssKiB, fds, cpuSecs as cpu } from './lib.mjs'
import { spawn } from 'node:child_process'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const maxSessions = nums[0] ?? 9900
const rateSecs = nums[1] ?? 10
const record = process.argv.includes('--record')
const steps = [1000, 2000, 5000, 9900].filter((n) => n <= maxSessions)
const ROLES = ['relay', 'gateway', 'agent']
// This sandbox caps RLIMIT_NOFILE at 20,000 (hard; no CAP_SYS_RESOURCE to lift it), and
// the relay holds two fds per session: 9,900 sessions is the most that fits, so the last
// step is 9,900, not 10,000. Where the hard limit allows, raise FDS (and the last step).
const FDS = 20_000

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
function prlimit (pid) {
  return new Promise((resolve, reject) => spawn('prlimit', ['--pid', String(pid), `--nofile=${FDS}:${FDS}`]).on('close', (c) => c === 0 ? resolve() : reject(new Error(`prlimit ${pid} exited ${c}`))))
}
async function snapshot (st) {
  const pids = Object.fromEntries(ROLES.map((r) => [r, st.processes[r].pid]))
  const c0 = Object.fromEntries(ROLES.map((r) => [r, cpu(pids[r])]))
  await sleep(5_000)
  return Object.fromEntries(ROLES.map((r) => [r, { rss: rssKiB(pids[r]), fds: fds(pids[r]), cpuPct: 100 * (cpu(pids[r]) - c0[r]) / 5 }]))
}

await withLab({ sink: true }, async (st) => {
  // One bench user opens every session: lift the per-user rate limit, restart the relay.
  const relayYaml = join(st.stateDir, 'etc', 'relay.yaml')
  writeFileSync(relayYaml, toYaml({ ...parseYaml(readFileSync(relayYaml, 'utf8')), rate_per_user_per_minute: 100_000_000, max_pending: 5_000 }), { mode: 0o600 })
  await stopRole(st, 'relay')
  await startRole(st, 'relay')
  for (const r of [...ROLES, 'sink']) await prlimit(st.processes[r].pid)
  const helper = (args) => ['prlimit', `--nofile=${FDS}:${FDS}`, process.execPath, join(ROOT, 'bench/client-load.mjs'), ...args]
  await inNode(st, 'client', helper(['rate', st.clientConfig, 'patient-phone:9000', 'max', '2', '16'])) // warm-up

  // ---- (a) + (c): idle sessions held open -------------------------------------------
  const base = await snapshot(st)
  const hold = spawn('ip', ['netns', 'exec', st.nodes.client.netns, ...helper(['hold', st.clientConfig, 'patient-phone:9000', steps.join(','), '50'])], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = []
  const rowsA = []
  const stepRows = []
  try {
    let buf = ''
    const nextLine = () => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('hold helper: no checkpoint within 15 min')), 900_000)
      const on = (d) => {
        buf += d
        const i = buf.indexOf('\n')
        if (i < 0) return
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        hold.stdout.off('data', on)
        clearTimeout(t)
        resolve(JSON.parse(line))
      }
      hold.stdout.on('data', on)
      hold.once('exit', (code) => reject(new Error(`hold helper exited ${code}`)))
    })
    for (const n of steps) {
      const cp = await nextLine()
      await sleep(2_000) // let the last opens settle
      const s = await snapshot(st)
      lines.push({ n, cp, s })
      process.stderr.write(`scale: ${cp.held} held (${cp.errors} errors) after ${cp.secs.toFixed(0)} s: ${ROLES.map((r) => `${r} ${((s[r].rss - base[r].rss) / cp.held).toFixed(1)} KiB/session ${s[r].fds} fds ${s[r].cpuPct.toFixed(1)} %`).join('; ')}\n`)
      hold.stdin.write('next\n') // after the last checkpoint: close them all and exit
    }
  } finally {
    const t = setTimeout(() => hold.kill('SIGKILL'), 60_000)
    if (lines.length < steps.length) hold.kill('SIGTERM')
    if (hold.exitCode === null && hold.signalCode === null) await new Promise((resolve) => hold.once('exit', resolve))
    clearTimeout(t)
  }
  for (const { n, cp, s } of lines) {
    stepRows.push([`${n} sessions: KiB/session relay · gateway · agent`, ROLES.map((r) => ((s[r].rss - base[r].rss) / cp.held).toFixed(1)).join(' · '), 'target ≤ 29.3 (30 KB)', '-',
      `${cp.held} held, ${cp.errors} errors, opened in ${cp.secs.toFixed(0)} s; fds ${ROLES.map((r) => s[r].fds).join('/')}; CPU at rest ${ROLES.map((r) => s[r].cpuPct.toFixed(1)).join('/')} %`])
  }
  const last = lines.at(-1)
  if (last !== undefined) {
    rowsA.push(
      ['idle sessions held', last.cp.held, `target ${maxSessions}`, '-', `${last.cp.errors} errors; raw TCP to the bench sink, opened 50 at a time`],
      ...ROLES.map((r) => [`memory per session ${r} (KiB)`, (last.s[r].rss - base[r].rss) / last.cp.held, 'target ≤ 29.3', '-', `RSS ${(base[r].rss / 1024).toFixed(0)} → ${(last.s[r].rss / 1024).toFixed(0)} MiB`]),
      ...ROLES.map((r) => [`fds ${r}`, last.s[r].fds, '-', '-', `${((last.s[r].fds - base[r].fds) / last.cp.held).toFixed(2)} per session`]),
      ...ROLES.map((r) => [`CPU at rest ${r} (% of a core)`, last.s[r].cpuPct, '-', '-', `with ${last.cp.held} idle sessions (before: ${base[r].cpuPct.toFixed(1)} %)`]),
    )
  }

  // ---- (b) rendezvous rate ----------------------------------------------------------------
  // The held sessions close first: wait until the relay has let go of their fds.
  for (let i = 0; i < 600 && fds(st.processes.relay.pid) > base.relay.fds + 10; i++) await sleep(100)
  // …and until the roles are idle again: tearing down ~10,000 sessions (their store records
  // and audit entries, the sockets) keeps the relay busy for a while, and a rate measured
  // meanwhile measures the teardown (18/s, p99 9 s, where a settled relay makes ~48/s).
  for (let i = 0; i < 120; i++) {
    const c0 = Object.fromEntries(ROLES.map((r) => [r, cpu(st.processes[r].pid)]))
    await sleep(1_000)
    if (ROLES.every((r) => cpu(st.processes[r].pid) - c0[r] < 0.05)) break
  }
  const rate = async (r, inflight) => JSON.parse(await inNode(st, 'client', helper(['rate', st.clientConfig, 'patient-phone:9000', String(r), String(rateSecs), String(inflight)])))
  // Which process is at a full core while the rate is at its maximum.
  const busy = ['relay', 'gateway', 'agent', 'smsc', 'slapd']
  const c0 = Object.fromEntries(busy.map((r) => [r, cpu(st.processes[r].pid)]))
  const t0 = performance.now()
  const max = await rate('max', 64)
  const span = (performance.now() - t0) / 1000
  const busyPct = Object.fromEntries(busy.map((r) => [r, 100 * (cpu(st.processes[r].pid) - c0[r]) / span]))
  const rowsB = [
    ['max rendezvous rate (/s)', max.rate, '-', '-', `closed loop, 64 in flight, ${rateSecs} s: ${max.done} sessions, ${max.errors} errors; p99 ${Number(max.p99).toFixed(0)} ms`],
    ['  CPU at max rate (% of a core)', busy.map((r) => busyPct[r].toFixed(0)).join(' · '), '-', '-', busy.join(' · ') + ' (the client helper has the rest)'],
  ]
  for (const pct of [50, 80, 100]) {
    const r = await rate(Math.max(1, Math.round(max.rate * pct / 100)), 500)
    rowsB.push([`CONNECT→200 p99 at ${pct} % (ms)`, r.p99, '-', '-', `${Math.round(max.rate * pct / 100)}/s offered open loop for ${rateSecs} s: ${r.rate.toFixed(0)}/s done, p50 ${Number(r.p50).toFixed(1)} ms, ${r.errors} errors`])
  }
  const text = report('bench/scale (a) idle sessions on one relay', rowsA) + '\n\n' + report('bench/scale (b) rendezvous rate', rowsB) + '\n\n' + report('bench/scale (c) growth', stepRows)
  const top = busy.reduce((x, y) => busyPct[x] >= busyPct[y] ? x : y)
  const limits = `\n\n**What limits us.** Held sessions: each costs the relay a TLS socket (OpenSSL state and buffers), an HTTP CONNECT parser left behind, ` +
    'the dial-back socket, a live-session record and a per-session logger; the gateway and the agent hold two plain sockets each. The TLS socket alone ' +
    'is most of the relay\'s share: a bare Node https server holding idle CONNECTed TLS connections costs 31 KiB of RSS each on this machine ' +
    '(`node bench/tls-floor.mjs`, Node 20, OpenSSL\'s per-connection state and buffers; Node exposes no SSL_MODE_RELEASE_BUFFERS), so the 30 KB goal ' +
    'is below what Node\'s TLS allows before any relay state. Two fds per session per ' +
    `process meet this sandbox's hard limit of ${FDS} just under 10,000 sessions. Rendezvous rate: at the maximum, ${top} is the busiest process ` +
    `(${busyPct[top].toFixed(0)} % of a core); the TLS handshake per CONNECT (ECDHE + signature), the signal's X25519 seal and the descriptor's Ed25519 signature ` +
    'are the per-session CPU at the relay, and every role shares the same two cores with the client helper.'
  if (record) recordSection('scale', text, `Namespace lab, every role one Node process, soft fd limit raised to the hard ${FDS} (prlimit); relay per-user rate limit lifted for the bench user. ${machine()}.${limits}`)
})

