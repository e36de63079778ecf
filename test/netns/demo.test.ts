// `beckon demo` end to end: the lab up, an SMS- and an e-mail-signalled IPsec session,
// the glucose chart and the relay's capture summary, then nothing left behind — also
// when Ctrl-C arrives (twice) in the middle of a session.
//
//   beckon demo ──▶ [client] connect ══ IKE/ESP in RFC 8229 ══ [relay: tcpdump] ══ [gateway] ── [terminal]
//                    signal: SMS (smsc), then e-mail (mail) after `device set --channels email`
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { waitFor } from '../../src/core/exec.js'
import { listNetns } from '../../src/lab/netns.js'
import { BECKON, beckon } from '../helpers/cli.js'
import { requireRoot } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

/** What the demo with this prefix and state dir left: namespaces, dir, processes, mounts. */
async function leftovers (prefix: string, stateDir: string): Promise<string[]> {
  const left: string[] = []
  for (const n of await listNetns()) if (n.startsWith(`${prefix}-`)) left.push(`netns ${n}`)
  if (existsSync(stateDir)) left.push(`dir ${stateDir}`)
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd: string
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') } catch { continue }
    if (cmd.includes(stateDir) || cmd.includes(`${prefix}-`)) left.push(`process ${pid}: ${cmd.slice(0, 120)}`)
  }
  for (const l of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    if (l.includes(stateDir) || l.includes(`/${prefix}-`)) left.push(`mount ${l.split(' ')[1]}`)
  }
  return left
}

function stateDirOf (out: string): string {
  const m = /state dir (\/\S+)/.exec(out)
  if (m === null) throw new Error(`no state dir in the demo's output: ${out.slice(0, 300)}`)
  return m[1]!
}

/** Tears down after a failed demo, so one broken run does not leak into the next test. */
function cleanupAfter (t: Test, prefix: string, dir: () => string | undefined): void {
  t.teardown(async () => {
    const d = dir()
    if (d !== undefined) await beckon(['lab', 'down', '--state-dir', d, '--prefix', prefix])
  })
}

t.test('beckon demo: both channels, the chart, the capture summary, nothing left', async (t) => {
  const prefix = `bdt${process.pid % 10000}`
  let stateDir: string | undefined
  cleanupAfter(t, prefix, () => stateDir)
  const r = await beckon(['demo', '--prefix', prefix], { timeoutMs: 240_000 })
  t.equal(r.status, 0, r.stderr)
  const out = r.stdout
  stateDir = stateDirOf(out)
  t.match(out, /lab up: patient-phone at fd00:beca:/)
  for (const ch of ['sms', 'email']) {
    for (const stage of ['connecting to relay', `relay signalled the gateway via ${ch}`, 'terminal called back', 'relay answered 200', 'local charon programmed', 'IPsec tunnel up']) {
      t.match(out, new RegExp(`\\d+\\.\\d s  ${ch} +\\+\\d+\\.\\d{3} s +${stage}`), `${ch}: "${stage}" with its time`)
    }
    t.match(out, new RegExp(`${ch} +glucose log fetched over the tunnel: 6 readings`))
  }
  // stdout is a pipe here: plain ASCII bars, one per reading with its value.
  const bars = out.split('\n').filter((l) => /^ {2}\d\d-\d\d \d\d:\d\d {2}#+ *\d+\.\d mmol\/L$/.test(l))
  t.equal(bars.length, 6, 'six ASCII bars, one per reading')
  t.notMatch(out, /█/, 'no Unicode blocks when stdout is not a terminal')
  const caps = [...out.matchAll(/relay capture: (\d+) packets, (\d+) bytes/g)]
  t.equal(caps.length, 2, 'a capture summary per session')
  for (const c of caps) t.ok(Number(c[1]) > 10 && Number(c[2]) > 1000, `capture: ${c[1]} packets, ${c[2]} bytes`)
  const spis = [...out.matchAll(/ESP SPIs seen: (0x[0-9a-f]{8} \(\d+\)(?:, 0x[0-9a-f]{8} \(\d+\))*); the client's CHILD_SA: (.*)/g)]
  t.equal(spis.length, 2, 'ESP SPIs seen in each session')
  for (const m of spis) {
    for (const spi of m[2]!.split(', ')) t.ok(m[1]!.includes(spi), `the client's SPI ${spi} was in the relay's RFC 8229 stream`)
  }
  t.equal([...out.matchAll(/plaintext: no plaintext — neither "mmolPerL"/g)].length, 2, 'no plaintext in either capture')
  t.match(out, /done: no namespace .* left behind/)
  t.same(await leftovers(prefix, stateDir), [], 'no namespace, process, mount or state dir left')
})

t.test('Ctrl-C (twice) during a session: prompt exit, nothing left', async (t) => {
  const prefix = `bdi${process.pid % 10000}`
  let stateDir: string | undefined
  cleanupAfter(t, prefix, () => stateDir)
  const p = spawn(process.execPath, [BECKON, 'demo', '--prefix', prefix], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { p.kill('SIGKILL') })
  let out = ''
  p.stdout.on('data', (d: Buffer) => { out += d.toString() })
  p.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)))
  // The lab is up and the first session is under way: its first stage line is out.
  await waitFor('the first stage line', () => {
    if (p.exitCode !== null) throw new Error(`demo exited early (${p.exitCode}): ${out}`)
    return /sms +\+\d+\.\d{3} s +connecting to relay/.test(out)
  }, 120_000)
  stateDir = stateDirOf(out)
  t.ok(existsSync(stateDir), 'the lab is up (its state dir exists)')
  t.ok((await listNetns()).some((n) => n.startsWith(`${prefix}-`)), 'with its namespaces')
  const sent = Date.now()
  p.kill('SIGINT')
  // A second Ctrl-C, as an impatient user sends: must not cut the teardown short.
  await new Promise((resolve) => setTimeout(resolve, 200))
  p.kill('SIGINT')
  const code = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000))])
  t.equal(code, 130, `exits 128+SIGINT (${((Date.now() - sent) / 1000).toFixed(1)} s after Ctrl-C)`)
  t.ok(Date.now() - sent < 30_000, 'promptly')
  t.match(out, /SIGINT: interrupted; tearing down/)
  t.match(out, /torn down: nothing left behind/)
  t.same(await leftovers(prefix, stateDir), [], 'no namespace, process, mount or state dir left')
})
