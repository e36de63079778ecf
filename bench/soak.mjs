// bench/soak (not in CI, not in bench/run): sessions for many minutes under random
// faults, in the namespace lab. Raw TCP sessions arrive at a fixed rate from the client
// node (bench/soak-client.mjs: CONNECT → 200 → GET the glucose log); an IPsec session
// (`beckon connect`, three GETs through the tunnel) starts every 20 s; every 20–40 s a
// random fault: the relay↔carrier link dropped for 3 s, the gateway killed (SIGKILL) or
// restarted (SIGTERM), the agent killed. Afterwards, once the re-join windows have run
// out, the lab must be back where it started.
//
// Pass (exit 0) when: every session completed or ended with a BECKON_ERR_* code (none
// hung, none cut short behind a clean end); the relay holds no live session; both
// charons hold no SA; the long-lived processes (relay, SMSC, both charons) have the fds
// they had before (± 2) and every node the TCP sockets it had (TIME-WAIT aside); the
// relay's memory is within 32 MiB of where it started.
// usage (root, after npm run build): node bench/soak.mjs [sessions=1000] [minutes=10] [--seed N] [--record]
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { startRole, stopRole } from '../dist/lab/lab.js'
import { ViciSession } from '../dist/proto/vici/session.js'
import { onJsonLines } from '../dist/core/lines.js'
import { ROOT, withLab, inNode, report, recordSection, machine, rssKiB, fds } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const minutes = nums[1] ?? 10
const IPSEC_EVERY_MS = 20_000
const ipsecCount = Math.floor((minutes * 60_000) / IPSEC_EVERY_MS)
const total = nums[0] ?? 1000
const rawCount = Math.max(1, total - ipsecCount)
const record = process.argv.includes('--record')
const seed = process.argv.includes('--seed') ? Number(process.argv[process.argv.indexOf('--seed') + 1]) : Date.now() % 100_000
const BECKON = join(ROOT, 'dist/cli/main.js')
const LONG_LIVED = ['relay', 'smsc', 'charon-client', 'charon-terminal']
const NODES = ['client', 'relay', 'carrier-fw', 'gateway', 'terminal']

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
// mulberry32: the faults are replayable with --seed.
let rs = seed >>> 0
const rand = () => { rs = (rs + 0x6D2B79F5) >>> 0; let x = rs; x = Math.imul(x ^ (x >>> 15), x | 1); x ^= x + Math.imul(x ^ (x >>> 7), x | 61); return ((x ^ (x >>> 14)) >>> 0) / 4294967296 }
const log = (msg) => process.stderr.write(`soak ${new Date().toISOString().slice(11, 19)} ${msg}\n`)

async function sas (uri) {
  const v = await ViciSession.open({ uri, reconnect: false })
  try { return (await v.listSas()).length } finally { await v.close() }
}

async function liveSessions (st) {
  const out = await inNode(st, 'relay', ['curl', '-sS', '--cacert', st.api.ca, '-H', `Authorization: Bearer ${st.api.token}`, `${st.api.url}/v1/sessions?live=true&limit=500`])
  return JSON.parse(out).length
}

async function sockets (st) {
  const r = {}
  for (const n of NODES) {
    const out = await inNode(st, n, ['ss', '-tanH'])
    r[n] = out.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('TIME-WAIT')).length
  }
  return r
}

async function snapshot (st) {
  const proc = Object.fromEntries(LONG_LIVED.map((r) => [r, { fds: fds(st.processes[r].pid), rss: rssKiB(st.processes[r].pid) }]))
  return { proc, sockets: await sockets(st), sas: { client: await sas(st.ipsec.clientVici), terminal: await sas(st.ipsec.terminalVici) }, live: await liveSessions(st) }
}

/** One IPsec session: tunnel up, three GETs through it, stop. Resolves with its outcome. */
async function ipsecSession (st) {
  const conn = spawn(process.execPath, [BECKON, 'lab', 'exec', '--state-dir', st.stateDir, '--prefix', st.prefix, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--json'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const stages = []
  onJsonLines(conn.stderr, (v) => { if (v !== undefined) stages.push(v) })
  const exited = new Promise((resolve) => conn.once('exit', resolve))
  const coded = () => stages.find((s) => s.error !== undefined)?.error?.code ?? stages.find((s) => s.stage === 'closed' && s.code !== undefined)?.code
  try {
    const deadline = Date.now() + 60_000
    while (!stages.some((s) => s.stage === 'tunnel-up')) {
      if (conn.exitCode !== null || Date.now() > deadline) return coded() ?? (conn.exitCode !== null ? `uncoded: exited ${conn.exitCode}` : 'uncoded: no tunnel within 60 s')
      await sleep(100)
    }
    let ok = 0
    for (let i = 0; i < 3; i++) {
      const got = await inNode(st, 'client', ['curl', '-sS', '-m', '10', `http://[${st.terminal.permanentAddress}]:8080/glucose`], { timeoutMs: 15_000 }).catch(() => '')
      if (/mmol/.test(got)) ok++
      await sleep(1_000)
    }
    if (ok === 3) return 'ok'
    // A fault may have ended it: then it has a code; else it re-joined and some GETs were lost.
    return coded() ?? (stages.some((s) => s.stage === 'rejoined') ? 'ok' : `uncoded: ${ok}/3 GETs through the tunnel`)
  } finally {
    if (conn.exitCode === null) conn.kill('SIGTERM')
    await Promise.race([exited, sleep(10_000)])
    if (conn.exitCode === null) conn.kill('SIGKILL')
  }
}

const FAULTS = {
  'link dropped 3 s': async (st) => {
    const nft = (...a) => inNode(st, 'carrier-fw', ['nft', ...a])
    await nft('add', 'table', 'inet', 'soak')
    try {
      await nft('add', 'chain', 'inet', 'soak', 'cut', '{ type filter hook forward priority -10; }')
      await nft('add', 'rule', 'inet', 'soak', 'cut', 'iifname', 'inet0', 'drop')
      await nft('add', 'rule', 'inet', 'soak', 'cut', 'oifname', 'inet0', 'drop')
      await sleep(3_000)
    } finally { await nft('delete', 'table', 'inet', 'soak') }
  },
  'gateway killed': async (st) => { process.kill(st.processes.gateway.pid, 'SIGKILL'); await sleep(500); await startRole(st, 'gateway') },
  'gateway restarted': async (st) => { await stopRole(st, 'gateway'); await startRole(st, 'gateway') },
  'agent killed': async (st) => { process.kill(st.processes.agent.pid, 'SIGKILL'); await sleep(500); await startRole(st, 'agent') },
}

await withLab({}, async (st) => {
  log(`lab up; ${rawCount} raw + ${ipsecCount} IPsec sessions over ${minutes} min, seed ${seed}`)
  await sleep(3_000)
  const before = await snapshot(st)
  const t0 = Date.now()
  const end = t0 + minutes * 60_000
  const outcomes = {}
  const count = (o) => { outcomes[o] = (outcomes[o] ?? 0) + 1; if (o !== 'ok' && o !== 'ipsec ok') log(`session: ${o}`) }

  const client = spawn('ip', ['netns', 'exec', st.nodes.client.netns, process.execPath, join(ROOT, 'bench/soak-client.mjs'), st.clientConfig, 'patient-phone:8080', String(rawCount), String(minutes * 60), '64'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let rawDone = 0
  onJsonLines(client.stdout, (v, line) => { rawDone++; count(v === undefined ? `uncoded: ${line}` : v.outcome) })
  const clientDone = new Promise((resolve) => client.once('exit', resolve))

  const ipsec = (async () => {
    for (let n = 0; n < ipsecCount && Date.now() < end; n++) {
      const due = t0 + n * IPSEC_EVERY_MS
      if (Date.now() < due) await sleep(due - Date.now())
      count(`ipsec ${await ipsecSession(st)}`)
    }
  })()

  const faults = []
  const faulting = (async () => {
    for (;;) {
      await sleep(20_000 + rand() * 20_000)
      if (Date.now() > end - 15_000) return
      const names = Object.keys(FAULTS)
      const name = names[Math.floor(rand() * names.length)]
      log(`fault: ${name}`)
      faults.push(name)
      await FAULTS[name](st).catch((err) => log(`fault ${name} failed: ${err.message}`))
    }
  })()

  const ticker = setInterval(() => log(`${rawDone}/${rawCount} raw sessions done; ${JSON.stringify(outcomes)}`), 60_000)
  await Promise.all([faulting, ipsec])
  await Promise.race([clientDone, sleep(180_000)])
  clearInterval(ticker)
  if (client.exitCode === null) { client.kill('SIGKILL'); count('uncoded: the client helper did not finish') }
  const ranMs = Date.now() - t0

  // Re-join windows (60 s) and the agent's grace (15 s) must run out before the baseline returns.
  log('waiting for the lab to settle')
  let after
  const settleBy = Date.now() + 150_000
  for (;;) {
    after = await snapshot(st)
    const settled = after.live === 0 && after.sas.client === 0 && after.sas.terminal === 0 && NODES.every((n) => after.sockets[n] <= before.sockets[n])
    if (settled || Date.now() > settleBy) break
    await sleep(5_000)
  }
  const settleMs = Date.now() - t0 - ranMs

  const sessions = Object.values(outcomes).reduce((a, b) => a + b, 0)
  const uncoded = Object.entries(outcomes).filter(([k]) => k.includes('uncoded')).reduce((a, [, v]) => a + v, 0)
  const checks = [
    ['sessions that completed or ended with a code', `${sessions - uncoded}/${sessions}`, `${sessions}/${sessions}`, uncoded === 0 && sessions >= rawCount],
    ['live sessions on the relay afterwards', after.live, before.live, after.live === before.live],
    ['charon SAs afterwards (client · terminal)', `${after.sas.client} · ${after.sas.terminal}`, `${before.sas.client} · ${before.sas.terminal}`, after.sas.client === before.sas.client && after.sas.terminal === before.sas.terminal],
    ...LONG_LIVED.map((r) => [`${r} fds`, after.proc[r].fds, before.proc[r].fds, Math.abs(after.proc[r].fds - before.proc[r].fds) <= 2]),
    ...NODES.map((n) => [`${n} TCP sockets (not TIME-WAIT)`, after.sockets[n], before.sockets[n], after.sockets[n] <= before.sockets[n]]),
    ['relay RSS (MiB)', (after.proc.relay.rss / 1024).toFixed(1), (before.proc.relay.rss / 1024).toFixed(1), after.proc.relay.rss - before.proc.relay.rss <= 32 * 1024],
  ]
  const rows = checks.map(([name, got, base, pass]) => [name, got, base, pass ? 'back' : 'NOT BACK', ''])
  const outcomeRows = Object.entries(outcomes).sort((a, b) => b[1] - a[1]).map(([k, v]) => [`outcome ${k}`, v, '-', '-', ''])
  const faultCounts = faults.reduce((m, f) => ({ ...m, [f]: (m[f] ?? 0) + 1 }), {})
  const text = report(`bench/soak: ${sessions} sessions in ${(ranMs / 60_000).toFixed(1)} min, ${faults.length} faults (${Object.entries(faultCounts).map(([k, v]) => `${v}× ${k}`).join(', ')}), settled ${(settleMs / 1000).toFixed(0)} s after; seed ${seed}`,
    [...outcomeRows, ...rows])
  const pass = checks.every((c) => c[3])
  if (record) {
    recordSection('soak', text, `\`node bench/soak.mjs ${total} ${minutes} --seed ${seed}\` on ${machine()}. Columns here: *ours* = after the soak, *reference* = before it, *ratio* = whether it came back. Sessions that arrive while the gateway or the agent is down end with \`BECKON_ERR_TERMINAL_UNREACHABLE\`; a raw TCP session cut by a fault ends with \`BECKON_ERR_PATH_LOST\` (it cannot resume); an IPsec session re-joins, unless its agent was killed (the agent's session state died with it: \`BECKON_ERR_PATH_LOST\`). Not part of CI or bench/run (${minutes} min).`)
  }
  log(pass ? 'PASS' : 'FAIL')
  process.exitCode = pass ? 0 : 1
})
