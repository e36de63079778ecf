// Mobility in the namespace lab: a 50 MB download over the IPsec tunnel survives the path
// breaking under it, and the same IKE_SA and CHILD_SA carry on (no renegotiation).
//
//   [client] curl ─▶ charon ⇄ bridge ══TLS══▶ [relay] ◀══dial-back══ [gateway] ══▶ [terminal] bridge ⇄ charon ─▶ file server :9000
//                                                 (a) gateway killed + restarted
//                                                 (b) carrier-fw inet0 down for 3 s (relay ↔ carrier)
//                                                 (c) the terminal's carrier address changes (.20 → .21); the carrier
//                                                     tells the gateway (its terminal map, here by config + restart)
//
// A raw TCP session cannot resume: a gateway restart mid-download reaches the client as a
// reset and the record says BECKON_ERR_PATH_LOST.
//
// Each case: SHA-256 of the download equals the source, list-sas on both charons shows the
// same IKE and CHILD SPIs before and after, and the time from the path being back to the
// download's bytes moving again is printed and must be ≤ 5 s.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { waitFor } from '../../src/core/exec.js'
import { onJsonLines } from '../../src/core/lines.js'
import { labCli, startRole, stopRole } from '../../src/lab/lab.js'
import { requireRoot } from '../helpers/charon-pair.js'
import { BECKON } from '../helpers/cli.js'
import { LabHarness, sha256, spisAt } from '../helpers/lab-session.js'

if (!requireRoot(t)) process.exit(1)

const lab = new LabHarness(t, 'bkm')
const SIZE = 50 * 1024 * 1024
const PORT = 9000
let sourceSha = ''

const bothSpis = (): Promise<string[]> => lab.spis()
const download = (out: string): ReturnType<LabHarness['download']> => lab.download(out, PORT)
const sha = sha256

/** Runs one fault mid-download; returns ms from "path back" to bytes moving again. */
async function survives (t: Test, name: string, fault: () => Promise<void>): Promise<number> {
  const before = await bothSpis()
  t.ok(before.length >= 4, `${name}: SAs up on both charons: ${before.join(', ')}`)
  const out = join(lab.stateDir, `dl-${name}.bin`)
  const dl = download(out)
  await waitFor('5 MB downloaded', () => dl.size() > 5 * 1024 * 1024, 30_000)
  await fault()
  const back = Date.now()
  const at = dl.size()
  await waitFor('bytes moving again', () => dl.size() > at + 64 * 1024, 30_000)
  const resumeMs = Date.now() - back
  t.comment(`${name}: traffic resumed ${resumeMs} ms after the path was back`)
  t.ok(resumeMs <= 5_000, `${name}: traffic resumed within 5 s of the path being back (${resumeMs} ms)`)
  t.equal(await dl.done, 0, `${name}: curl completed`)
  t.equal(statSync(out).size, SIZE, `${name}: 50 MB arrived`)
  t.equal(sha(out), sourceSha, `${name}: SHA-256 matches the source`)
  t.same(await bothSpis(), before, `${name}: the same IKE and CHILD SPIs on both charons (no new SA)`)
  return resumeMs
}

const stages: Array<{ stage?: string }> = []

t.test('lab up; a 50 MB file served on the terminal; the agent listens on every address', async (tt) => {
  const r = await lab.up(['--with-sink'])
  tt.equal(r.status, 0, r.stderr)
  sourceSha = (await lab.serveFile(SIZE)).sha
  // A terminal that moves keeps its agent reachable on whatever address it gets next.
  const agentYaml = join(lab.stateDir, 'etc', 'agent.yaml')
  const a = parseYaml(readFileSync(agentYaml, 'utf8')) as Record<string, unknown>
  a.listen = `0.0.0.0:7400`
  writeFileSync(agentYaml, toYaml(a))
  await stopRole(lab.st, 'agent')
  await startRole(lab.st, 'agent')
  await lab.inNode('terminal', ['sysctl', '-qw', 'net.ipv4.conf.eth0.promote_secondaries=1'])
})

t.test('a 50 MB download survives the path breaking three ways; same SAs throughout', async (t) => {
  const s = await lab.connect()
  t.teardown(() => lab.stop(s))
  const times: Record<string, number> = {}

  times['gateway restarted'] = await survives(t, 'gateway-restart', async () => {
    await stopRole(lab.st, 'gateway')
    await startRole(lab.st, 'gateway')
  })

  times['relay-carrier link down 3 s'] = await survives(t, 'link-down', async () => {
    // Everything crossing carrier-fw's internet side is dropped for 3 s. (Not `ip link set
    // inet0 down`: that also flushes the masquerade's conntrack entries — a different
    // fault, every NAT binding lost at once, see the report.)
    const nft = (...a: string[]): Promise<unknown> => lab.inNode('carrier-fw', ['nft', ...a])
    await nft('add', 'table', 'inet', 'mobility')
    t.teardown(() => { spawn('ip', ['netns', 'exec', lab.st.nodes['carrier-fw'].netns, 'nft', 'delete', 'table', 'inet', 'mobility']) })
    await nft('add', 'chain', 'inet', 'mobility', 'cut', '{ type filter hook forward priority -10; }')
    await nft('add', 'rule', 'inet', 'mobility', 'cut', 'iifname', 'inet0', 'drop')
    await nft('add', 'rule', 'inet', 'mobility', 'cut', 'oifname', 'inet0', 'drop')
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    await nft('delete', 'table', 'inet', 'mobility')
  })

  times['terminal moved to another carrier address'] = await survives(t, 'address-change', async () => {
    // The carrier gives the terminal a new address and drops the old one; its core tells
    // the gateway where the MSISDN now lives (here: the gateway's terminal map + restart).
    await lab.inNode('terminal', ['ip', 'addr', 'add', '203.0.113.21/24', 'dev', 'eth0'])
    await lab.inNode('terminal', ['ip', 'addr', 'del', '203.0.113.20/24', 'dev', 'eth0'])
    const gwYaml = join(lab.stateDir, 'etc', 'gateway.yaml')
    const g = parseYaml(readFileSync(gwYaml, 'utf8')) as { terminals: Record<string, { address: string }> }
    for (const k of Object.keys(g.terminals)) g.terminals[k]!.address = '203.0.113.21:7400'
    writeFileSync(gwYaml, toYaml(g))
    await stopRole(lab.st, 'gateway')
    await startRole(lab.st, 'gateway')
  })

  t.comment(`resume times: ${JSON.stringify(times)}`)
  const seen = s.stages.map((x) => x.stage)
  t.ok(seen.includes('path-lost') && seen.includes('rejoining') && seen.includes('rejoined'), `the client's stages show the re-joins: ${seen.join(' → ')}`)
  for (const st of s.stages.filter((x) => x.stage === 'rejoined')) t.comment(`rejoined: ${JSON.stringify(st)}`)
  stages.push(...s.stages)
  const { entries } = await labCli(lab.st, ['audit', '--all']) as { entries: Array<Record<string, any>> }
  const rejoins = entries.filter((e) => e.action === 'session.rejoin')
  t.ok(rejoins.some((e) => e.outcome === 'ok'), `every re-join attempt is audited (${rejoins.map((e) => e.outcome).join(', ')})`)
})

t.test('an operator kill ends everything and does not re-join', async (t) => {
  const s = await lab.connect()
  const [live] = await labCli(lab.st, ['session', 'list', '--live', '--user', lab.st.user.name]) as Array<{ id: string }>
  await labCli(lab.st, ['session', 'kill', live!.id])
  await Promise.race([s.exited, new Promise((_r, reject) => setTimeout(() => reject(new Error('still running after kill')), 15_000))])
  const closed = s.stages.find((x) => x.stage === 'closed') as { code?: string } | undefined
  t.equal(closed?.code, 'BECKON_ERR_SESSION_ENDED', 'the client ends with the kill\'s code')
  t.notOk(s.stages.some((x) => x.stage === 'rejoined'), 'no re-join')
  for (const uri of [lab.st.ipsec.clientVici, lab.st.ipsec.terminalVici]) {
    await waitFor('no SA left', async () => (await spisAt(uri)).length === 0, 10_000)
  }
  t.pass('no SA left on either charon')
})

t.test('a raw TCP session cannot resume: the gateway restarted mid-download ends it with PATH_LOST, as a reset', async (t) => {
  const env = { ...process.env, BECKON_PASSWORD: lab.st.user.password }
  const proc = spawn(process.execPath, [BECKON, 'lab', 'exec', ...lab.args, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--tcp', String(PORT), '-L', '19000', '--once', '--json'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  onJsonLines(proc.stderr!, (v, line) => lines.push(v ?? { raw: line }))
  await waitFor('beckon connect to forward', () => {
    if (proc.exitCode !== null) throw new Error(`beckon connect exited: ${JSON.stringify(lines)}`)
    return lines.some((l) => l.stage === 'forwarding')
  }, 30_000)
  const session = (lines.find((l) => l.stage === 'connected') as { session: string }).session
  const out = join(lab.stateDir, 'dl-raw.bin')
  const curl = spawn('ip', ['netns', 'exec', lab.st.nodes.client.netns, 'curl', '-sS', '--limit-rate', '4M', '-m', '60', '-o', out, `http://127.0.0.1:19000/file`], { stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(() => { curl.kill('SIGKILL') })
  let curlErr = ''
  curl.stderr!.on('data', (d: Buffer) => { curlErr += d.toString() })
  const curlExit = new Promise<number | null>((resolve) => curl.once('exit', resolve))
  await waitFor('2 MB downloaded', () => existsSync(out) && statSync(out).size > 2 * 1024 * 1024, 30_000)
  await stopRole(lab.st, 'gateway')
  const code = await curlExit
  await startRole(lab.st, 'gateway')
  t.not(code, 0, `curl failed (exit ${code}: ${curlErr.trim()})`)
  t.match(curlErr, /reset|Recv failure/i, 'the local client saw a reset, not a clean end')
  t.ok(statSync(out).size < SIZE, 'the transfer is incomplete, and it shows')
  await waitFor('the client to report the break', () => lines.some((l) => l.stage === 'closed'), 10_000)
  t.match(lines.find((l) => l.stage === 'closed'), { code: 'BECKON_ERR_PATH_LOST' }, 'the client names the code')
  await waitFor('the relay to record the end', async () => {
    const rec = (await labCli(lab.st, ['session', 'show', session])) as { outcome?: string }
    return rec.outcome !== undefined
  }, 10_000)
  t.match(await labCli(lab.st, ['session', 'show', session]), { outcome: 'BECKON_ERR_PATH_LOST', reason: /cannot resume/ }, 'the session record says PATH_LOST')
})
