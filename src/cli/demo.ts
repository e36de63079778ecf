/**
 * `beckon demo`: the whole story on one machine, in about a minute (root).
 *
 *   [client] beckon connect ──TLS CONNECT──▶ [relay] ──SMS (SMPP) / e-mail (SMTP→IMAP)──▶ [gateway]
 *       ▲                                      ▲  tcpdump eth0                              │ dials
 *       └════ IKE + ESP in RFC 8229 frames ════╧══ (ciphertext only) ═══ dial-back ◀── [terminal]
 *
 * Brings up the namespace lab (src/lab/lab.ts) under a private state directory and a
 * prefix of its own, opens an SMS-signalled IPsec session, then switches the device to
 * e-mail through the management API and opens another. Each session prints its stages
 * as they happen, fetches the glucose log over the tunnel, and summarises what a capture
 * on the relay saw: the ESP SPIs inside the RFC 8229 stream and no plaintext.
 *
 * Teardown runs on success, on failure and on SIGINT/SIGTERM/SIGHUP at any point (the
 * handlers go in before the lab comes up; repeated signals cannot cut it short) and then
 * checks that no namespace, process, mount or file of the demo is left.
 */
import type { Command } from 'commander'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BeckonError, ERRORS, type ErrorCode } from '../core/errors.js'
import { onJsonLines } from '../core/lines.js'
import { run, waitFor } from '../core/exec.js'
import { DEVICE, PORTS, labCli, labDown, labUp, type LabState } from '../lab/lab.js'
import { listNetns } from '../lab/netns.js'
import { pcapTotals, rfc8229Frames, streamsInclude, tcpStreams } from '../lab/pcap.js'
import { ViciSession } from '../proto/vici/session.js'
import { exitWithError } from './output.js'

const BECKON_MAIN = fileURLToPath(new URL('./main.js', import.meta.url))
type Channel = 'sms' | 'email'

interface Reading { time: string, mmolPerL: number }

/** Everything the demo started, so teardown can find it whatever stage it reached. */
class Demo {
  readonly t0 = Date.now()
  readonly children = new Set<ChildProcess>()
  st: LabState | undefined
  /** Set while labUp runs: teardown must wait for it, or it could start roles after us. */
  up: Promise<unknown> | undefined
  private teardown: Promise<string[]> | undefined
  private stdoutOpen = true

  constructor (readonly stateDir: string, readonly prefix: string) {
    // A reader that goes away (`beckon demo | head`) must not end us before teardown.
    process.stdout.removeAllListeners('error')
    process.stdout.on('error', () => { this.stdoutOpen = false })
  }

  say (line = ''): void {
    if (this.stdoutOpen) process.stdout.write(line + '\n')
  }

  clock (): string {
    return `${((Date.now() - this.t0) / 1000).toFixed(1).padStart(5)} s`
  }

  /** Runs argv in a lab node, with `beckon` on PATH and the lab's client config. */
  spawnIn (st: LabState, node: 'client' | 'relay', argv: string[]): ChildProcess {
    const env = { ...process.env, PATH: `${join(st.stateDir, 'bin')}:${process.env.PATH ?? ''}`, BECKON_CLIENT_CONFIG: st.clientConfig }
    // Own process group: a terminal's Ctrl-C reaches us, and we decide the order of shutdown.
    const child = spawn('ip', ['netns', 'exec', st.nodes[node].netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true })
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  /** Idempotent; returns what was left behind (empty when nothing). */
  tearDown (): Promise<string[]> {
    this.teardown ??= (async () => {
      for (const c of this.children) kill(c, 'SIGKILL')
      await Promise.all([...this.children].map((c) => exited(c, 2_000)))
      // Down at once (a half-built lab fails fast without its namespaces and directory),
      // then again once labUp has given up, for whatever it made in between.
      await labDown(this.stateDir, this.prefix).catch(() => {})
      if (this.up !== undefined) await this.up.catch(() => {})
      await labDown(this.stateDir, this.prefix).catch(() => {})
      rmSync(this.stateDir, { recursive: true, force: true })
      return await this.leftovers()
    })()
    return this.teardown
  }

  private async leftovers (): Promise<string[]> {
    const left: string[] = []
    const ns = (await listNetns()).filter((n) => n.startsWith(`${this.prefix}-`))
    if (ns.length > 0) left.push(`namespaces ${ns.join(', ')}`)
    if (existsSync(this.stateDir)) left.push(`directory ${this.stateDir}`)
    const pids = Object.values(this.st?.processes ?? {}).map((p) => p.pid).filter(alive)
    for (const c of this.children) if (c.pid !== undefined && alive(c.pid)) pids.push(c.pid)
    if (pids.length > 0) left.push(`processes ${pids.join(', ')}`)
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.includes(this.stateDir) || l.includes(`/${this.prefix}-`))
    if (mounts.length > 0) left.push(`mounts ${mounts.map((l) => l.split(' ')[1]).join(', ')}`)
    return left
  }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

function kill (c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.exitCode !== null || c.signalCode !== null) return
  try { c.kill(sig) } catch { /* gone */ }
}

function exited (c: ChildProcess, timeoutMs: number): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    c.once('exit', () => { clearTimeout(timer); resolve() })
  })
}

// ---- one session ------------------------------------------------------------------

const STAGE_TEXT: Record<string, (d: Record<string, unknown>) => string> = {
  connecting: (d) => `connecting to relay ${String(d.relay)}`,
  requested: () => `CONNECT ${DEVICE.name}:ipsec sent`,
  signalled: (d) => `relay signalled the gateway via ${String(d.channel ?? '?')}`,
  'called-back': () => 'terminal called back through the gateway',
  connected: (d) => `relay answered 200, session ${String(d.session)}`,
  'ipsec-loaded': (d) => `local charon programmed (${String(d.auth)})`,
  'tunnel-up': (d) => `IPsec tunnel up: ${String(d.local)} ⇄ ${String(d.remote)} (${String(d.selectors)})`,
}

interface Capture { proc: ChildProcess, file: string, stats: () => string }

/** tcpdump on the relay's eth0, resolved once it is listening. */
async function startCapture (demo: Demo, st: LabState, name: string): Promise<Capture> {
  const file = join(st.stateDir, `relay-${name}.pcap`)
  // -U with --immediate-mode: every packet reaches the file as it is seen.
  const proc = demo.spawnIn(st, 'relay', ['tcpdump', '-i', 'eth0', '-s', '0', '-U', '--immediate-mode', '-B', '8192', '-w', file])
  let stats = ''
  proc.stderr!.on('data', (d: Buffer) => { stats += d.toString() })
  await waitFor('tcpdump on the relay to listen', () => {
    if (proc.exitCode !== null) throw new BeckonError('BECKON_ERR_LAB', `tcpdump exited: ${stats.trim()}`)
    return /listening on/.test(stats)
  }, 10_000)
  return { proc, file, stats: () => stats }
}

async function stopCapture (c: Capture): Promise<Buffer> {
  // SIGTERM drops what tcpdump has not written yet; wait until the file stops growing.
  let last = -1
  let stillSince = Date.now()
  await waitFor('the capture to settle', () => {
    const size = existsSync(c.file) ? statSync(c.file).size : 0
    if (size !== last) { last = size; stillSince = Date.now() }
    return Date.now() - stillSince >= 500
  }, 10_000).catch(() => {})
  kill(c.proc, 'SIGTERM')
  await exited(c.proc, 3_000)
  return readFileSync(c.file)
}

/** `beckon connect --json` in the client node until its tunnel is up; stages printed live. */
async function openTunnel (demo: Demo, st: LabState, channel: Channel): Promise<{ proc: ChildProcess, stages: Array<Record<string, unknown>> }> {
  const started = Date.now()
  const proc = demo.spawnIn(st, 'client', [process.execPath, BECKON_MAIN, 'connect', DEVICE.name, '--json'])
  const stages: Array<Record<string, unknown>> = []
  let failure: BeckonError | undefined
  onJsonLines(proc.stderr!, (m, line) => {
    if (m === undefined) return
    const err = m.error as { code?: string, message?: string } | undefined
    if (err !== undefined) {
      const code = (err.code !== undefined && err.code in ERRORS ? err.code : 'BECKON_ERR_LAB') as ErrorCode
      failure = new BeckonError(code, `beckon connect (${channel}): ${err.message ?? line}`)
      return
    }
    if (typeof m.stage !== 'string' || STAGE_TEXT[m.stage] === undefined) return
    stages.push(m)
    const ms = ((Date.now() - started) / 1000).toFixed(3)
    demo.say(`  ${demo.clock()}  ${channel.padEnd(5)} ${`+${ms} s`.padEnd(9)}  ${STAGE_TEXT[m.stage]!(m)}`)
  })
  await waitFor(`the ${channel} session's IPsec tunnel`, () => {
    if (failure !== undefined) throw failure
    if (proc.exitCode !== null || proc.signalCode !== null) throw new BeckonError('BECKON_ERR_LAB', `beckon connect (${channel}) exited ${proc.exitCode ?? proc.signalCode} before its tunnel came up`)
    return stages.some((s) => s.stage === 'tunnel-up')
  }, 60_000)
  const signalled = stages.find((s) => s.stage === 'signalled')
  if (signalled?.channel !== undefined && signalled.channel !== channel) throw new BeckonError('BECKON_ERR_LAB', `expected a signal via ${channel}, the relay used ${String(signalled.channel)}`)
  return { proc, stages }
}

/** The client charon's CHILD_SA SPIs (in and out), as charon prints them. */
async function childSpis (st: LabState): Promise<string[]> {
  const v = await ViciSession.open({ uri: st.ipsec.clientVici, reconnect: false, timeoutMs: 3_000 })
  try {
    return (await v.listSas()).flatMap((ike) => ike.children.flatMap((c) => [c.spiIn, c.spiOut])).filter((s): s is string => s !== undefined).map((s) => s.padStart(8, '0'))
  } finally { await v.close() }
}

async function fetchGlucose (st: LabState, marker: string): Promise<Reading[]> {
  const url = `http://[${st.terminal.permanentAddress}]:${PORTS.service}/glucose?marker=${marker}`
  const r = await run('ip', ['netns', 'exec', st.nodes.client.netns, 'curl', '-sS', '-m', '5', url], { allowFail: true, timeoutMs: 10_000 })
  if (r.code !== 0) throw new BeckonError('BECKON_ERR_LAB', `curl ${url} over the tunnel failed (${r.code}): ${r.stderr.trim()}`)
  let body: { marker?: string, readings?: Reading[] }
  try { body = JSON.parse(r.stdout) as typeof body } catch { throw new BeckonError('BECKON_ERR_LAB', `the glucose service answered something that is not JSON: ${r.stdout.slice(0, 200)}`) }
  if (body.marker !== marker || !Array.isArray(body.readings)) throw new BeckonError('BECKON_ERR_LAB', 'the glucose log came back without our marker or readings')
  return body.readings
}

/** A horizontal bar per reading; Unicode blocks on a terminal, `#` when piped. */
export function glucoseChart (readings: Reading[], tty: boolean, width = 40): string[] {
  const max = Math.max(...readings.map((r) => r.mmolPerL), 1)
  const fill = tty ? '█' : '#'
  return readings.map((r) => {
    const t = new Date(r.time)
    const label = Number.isNaN(t.getTime()) ? String(r.time).slice(0, 16) : `${t.toISOString().slice(5, 10)} ${t.toISOString().slice(11, 16)}`
    const n = Math.max(1, Math.round((r.mmolPerL / max) * width))
    return `  ${label}  ${fill.repeat(n)}${' '.repeat(width - n)}  ${r.mmolPerL.toFixed(1)} mmol/L`
  })
}

async function session (demo: Demo, st: LabState, channel: Channel, showChart: boolean): Promise<void> {
  demo.say('')
  demo.say(`${channel === 'sms' ? 'SMS' : 'E-mail'}-signalled IPsec session (capture running on the relay's eth0):`)
  const cap = await startCapture(demo, st, channel)
  const { proc } = await openTunnel(demo, st, channel)
  const spis = await childSpis(st)
  const marker = randomBytes(12).toString('hex')
  const readings = await fetchGlucose(st, marker)
  demo.say(`  ${demo.clock()}  ${channel.padEnd(5)} glucose log fetched over the tunnel: ${readings.length} readings`)
  if (showChart) {
    demo.say('')
    demo.say(`  ${DEVICE.name}: blood glucose (GET http://[${st.terminal.permanentAddress}]:${PORTS.service}/glucose)`)
    for (const l of glucoseChart(readings, process.stdout.isTTY === true)) demo.say(l)
    demo.say('')
  }
  kill(proc, 'SIGTERM') // closes its tunnel and removes what it loaded into charon
  await exited(proc, 5_000)
  const pcap = await stopCapture(cap)

  const totals = pcapTotals(pcap)
  const streams = tcpStreams(pcap)
  const frames = rfc8229Frames(streams)
  const plain = ['mmolPerL', marker].filter((s) => streamsInclude(streams, Buffer.from(s)))
  const seen = [...frames.esp.entries()]
  const ours = spis.filter((s) => frames.esp.has(s))
  demo.say(`  relay capture: ${totals.packets} packets, ${totals.bytes} bytes, ${streams.size} TCP payload streams`)
  demo.say(`    RFC 8229 stream: ${frames.ike} IKE frames, ${seen.reduce((n, [, c]) => n + c, 0)} ESP frames`)
  demo.say(`    ESP SPIs seen: ${seen.map(([s, n]) => `0x${s} (${n})`).join(', ') || 'none'}; the client's CHILD_SA: ${spis.map((s) => `0x${s}`).join(', ')}`)
  demo.say(`    plaintext: ${plain.length === 0 ? `no plaintext — neither "mmolPerL" nor this fetch's marker ${marker} crossed the relay` : `FOUND ${plain.join(', ')}`}`)
  if (plain.length > 0) throw new BeckonError('BECKON_ERR_LAB', `the relay saw plaintext (${plain.join(', ')})`)
  if (ours.length === 0) throw new BeckonError('BECKON_ERR_LAB', `no ESP frame of the session's SPIs (${spis.join(', ')}) in the relay's capture`)
}

// ---- the command ------------------------------------------------------------------

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
const SIGNO: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }

async function demo (flags: { prefix?: string }): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new BeckonError('BECKON_ERR_LAB', 'beckon demo needs root: it creates network namespaces, runs charon, tcpdump and a mail server in them. Run it as root (sudo node dist/cli/main.js demo)')
  }
  const prefix = flags.prefix ?? `bdemo${process.pid % 100000}`
  if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) throw new BeckonError('BECKON_ERR_USAGE', `--prefix ${prefix}: 1–12 lower-case letters and digits, starting with a letter`)
  // Directory, handlers, then the lab; no await in between, so no signal can slip past.
  const stateDir = mkdtempSync(join(tmpdir(), `beckon-demo-${prefix}-`))
  const d = new Demo(stateDir, prefix)
  let interrupted: NodeJS.Signals | undefined
  const onSignal = (sig: NodeJS.Signals): void => {
    // Handlers stay installed: a second Ctrl-C must not fall back to the default (exit now).
    if (interrupted !== undefined) { d.say(`${sig} again: still tearing down, please wait`); return }
    interrupted = sig
    d.say(`\n${sig}: interrupted; tearing down the lab`)
    void d.tearDown().then((left) => {
      d.say(left.length === 0 ? 'torn down: nothing left behind' : `left behind: ${left.join('; ')}`)
      process.exit(128 + (SIGNO[sig] ?? 1))
    })
  }
  for (const s of SIGNALS) process.on(s, onSignal)

  try {
    d.say(`beckon demo: lab prefix ${prefix}, state dir ${stateDir}`)
    d.say(`  ${d.clock()}  bringing up the lab (client, relay, smsc, mail, ldap, carrier-fw, gateway, terminal; ~25 s)`)
    d.up = labUp({ stateDir, prefix, channels: ['sms'] })
    const st = await d.up as LabState
    d.st = st
    d.up = undefined
    d.say(`  ${d.clock()}  lab up: ${st.terminal.device} at ${st.terminal.permanentAddress}, behind carrier-fw; user ${st.user.name}`)

    await session(d, st, 'sms', true)
    // The control plane: the next CONNECT signals by e-mail, no restart.
    await labCli(st, ['device', 'set', DEVICE.name, '--channels', 'email'])
    d.say('')
    d.say(`  ${d.clock()}  beckon device set ${DEVICE.name} --channels email (management API, no restart)`)
    await session(d, st, 'email', false)
  } catch (err) {
    if (interrupted !== undefined) return await new Promise(() => {}) // the signal handler exits
    d.say(`\n  ${d.clock()}  failed; tearing down`)
    const left = await d.tearDown()
    if (left.length > 0) process.stderr.write(`beckon demo: left behind: ${left.join('; ')}\n`)
    throw err
  }
  if (interrupted !== undefined) return await new Promise(() => {})
  d.say('')
  d.say(`  ${d.clock()}  tearing down`)
  const left = await d.tearDown()
  if (interrupted !== undefined) return await new Promise(() => {})
  if (left.length > 0) throw new BeckonError('BECKON_ERR_LAB', `teardown left ${left.join('; ')}`)
  d.say(`  ${d.clock()}  done: no namespace ${prefix}-*, no process, mount or file left behind`)
}

export function registerDemo (program: Command): void {
  program.command('demo')
    .description('bring up the lab, open an SMS- and an e-mail-signalled IPsec session, show the glucose log and the relay\'s capture, tear down (root)')
    .option('--prefix <p>', 'namespace name prefix (default bdemo<pid>)')
    .action(async (flags: { prefix?: string }) => {
      try {
        await demo(flags)
        process.exit(0)
      } catch (err) { exitWithError(err) }
    })
}
