// IPsec ESP end to end over the rendezvous path, in the namespace lab:
//
//   client: beckon connect + charon ──TLS CONNECT──▶ relay ◀──dial-back── gateway ──▶ terminal: agent + charon
//           IKE/ESP-in-UDP ⇄ RFC 8229 bridge ═══════ frames, ciphertext only ═══════ RFC 8229 bridge ⇄ IKE/ESP
//
// The relay and gateway must carry ciphertext only (checked with packet captures), the
// traffic selectors must admit the allowed port only, and two users' tunnels must be
// independent and leave nothing behind.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from '../../src/core/exec.js'
import { onJsonLines } from '../../src/core/lines.js'
import { writeFileSync } from 'node:fs'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { caInit, caIssue } from '../../src/ipsec/ca.js'
import { labCli, readLabState, startRole, stopRole, type LabState } from '../../src/lab/lab.js'
import { ViciSession } from '../../src/proto/vici/session.js'
import { BECKON, beckon } from '../helpers/cli.js'
import { requireRoot } from '../helpers/charon-pair.js'
import { streamsInclude, tcpStreams } from '../helpers/pcap.js'

if (!requireRoot(t)) process.exit(1)

const prefix = `bki${process.pid % 10000}`
const stateDir = mkdtempSync(join(tmpdir(), 'beckon-labi-'))
const labArgs = ['--state-dir', stateDir, '--prefix', prefix]
const children: ChildProcess[] = []
t.teardown(async () => {
  for (const c of children) c.kill('SIGKILL')
  await beckon(['lab', 'down', ...labArgs])
})
let st: LabState

async function inNode (node: string, argv: string[], timeoutMs = 30_000): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return await beckon(['lab', 'exec', ...labArgs, node, '--', ...argv], { timeoutMs })
}

/** Starts `beckon connect patient-phone` (IPsec mode) and waits for the tunnel. */
async function connect (user?: { name: string, password: string }, config?: string): Promise<{ proc: ChildProcess, stages: Array<Record<string, unknown>> }> {
  const args = ['lab', 'exec', ...labArgs, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--json']
  if (user !== undefined) args.push('--user', user.name)
  if (config !== undefined) args.push('--config', config)
  const proc = spawn(process.execPath, [BECKON, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(user === undefined ? {} : { BECKON_PASSWORD: user.password }) } })
  children.push(proc)
  const stages: Array<Record<string, unknown>> = []
  onJsonLines(proc.stderr!, (v, line) => stages.push(v ?? { raw: line }))
  await waitFor('the IPsec tunnel', () => {
    const err = stages.find((s) => s.error !== undefined)
    if (err !== undefined) throw new Error(`beckon connect failed: ${JSON.stringify(err)}`)
    return stages.some((s) => s.stage === 'tunnel-up')
  }, 30_000)
  return { proc, stages }
}

async function stop (proc: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  await exited
}

const get = (path: string, from?: string): Promise<{ status: number | null, stdout: string }> =>
  inNode('client', ['curl', '-sS', '-m', '5', ...(from === undefined ? [] : ['--interface', from]), `http://[${st.terminal.permanentAddress}]:8080${path}`])

async function vici (uri: string): Promise<ViciSession> {
  const v = await ViciSession.open({ uri, reconnect: false })
  t.teardown(() => v.close())
  return v
}

t.test('lab up: permanent addresses in status --json', async (t) => {
  const up = await beckon(['lab', 'up', ...labArgs, '--json'], { timeoutMs: 90_000 })
  t.equal(up.status, 0, up.stderr)
  st = readLabState(stateDir)
  const s = JSON.parse((await beckon(['lab', 'status', ...labArgs, '--json'])).stdout) as Record<string, any>
  t.match(s.terminal.permanentAddress, /^fd00:beca:0:2:/, 'the terminal has a permanent ULA address')
  t.match(s.user.permanentAddress, /^fd00:beca:0:1:/, 'so does the user')
  t.equal(s.running['charon-client'], true)
  t.equal(s.running['charon-terminal'], true)
})

t.test('beckon connect patient-phone: glucose over ESP; relay and gateway see ciphertext only', async (t) => {
  const caps = ['relay', 'gateway'].map((node) => {
    const file = join(stateDir, `${node}.pcap`)
    const p = spawn('ip', ['netns', 'exec', st.nodes[node as 'relay'].netns, 'tcpdump', '-i', 'eth0', '-s', '0', '-U', '--immediate-mode', '-B', '8192', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] })
    children.push(p)
    let stats = ''
    p.stderr!.on('data', (d: Buffer) => { stats += d.toString() })
    return { node, file, p, ready: new Promise((resolve) => p.stderr!.once('data', resolve)), stats: () => stats }
  })
  await Promise.all(caps.map((c) => c.ready)) // "listening on eth0"

  const { proc, stages } = await connect()
  t.same(stages.map((s) => s.stage), ['connecting', 'requested', 'signalled', 'called-back', 'connected', 'ipsec-loaded', 'tunnel-up'])
  const up = stages.find((s) => s.stage === 'tunnel-up')!
  t.equal(up.local, st.user.permanentAddress)
  t.equal(up.remote, st.terminal.permanentAddress)
  t.equal(up.selectors, 'tcp/8080')

  const marker = randomBytes(16).toString('hex')
  const r = await get(`/glucose?marker=${marker}`)
  t.equal(r.status, 0)
  const body = JSON.parse(r.stdout) as { patient: string, marker: string, readings: unknown[] }
  t.equal(body.patient, 'patient-phone')
  t.equal(body.marker, marker, 'the glucose JSON (with our marker) came through the tunnel')

  const cv = await vici(st.ipsec.clientVici)
  const tv = await vici(st.ipsec.terminalVici)
  const spis: string[] = []
  for (const [side, v] of [['client', cv], ['terminal', tv]] as const) {
    const sas = await v.listSas()
    t.equal(sas.length, 1, `${side}: one IKE_SA`)
    t.equal(sas[0]?.state, 'ESTABLISHED', `${side}: IKE_SA ESTABLISHED`)
    const c = sas[0]?.children[0]
    t.equal(c?.state, 'INSTALLED', `${side}: CHILD_SA INSTALLED`)
    t.equal(c?.mode, 'TUNNEL', `${side}: tunnel mode`)
    t.equal(c?.encap, true, `${side}: UDP encapsulation`)
    if (c?.spiOut !== undefined) spis.push(c.spiOut)
  }

  // Stop tcpdump only once it has written everything: a busy machine leaves packets in
  // its buffer, and SIGTERM discards them. Wait until each file stays still for 500 ms.
  for (const c of caps) {
    let last = -1
    let stillSince = Date.now()
    await waitFor(`${c.node} capture to settle`, () => {
      const size = statSync(c.file).size
      if (size !== last) { last = size; stillSince = Date.now() }
      return Date.now() - stillSince >= 500
    }, 15_000)
  }
  for (const c of caps) c.p.kill('SIGTERM')
  await Promise.all(caps.map((c) => new Promise((resolve) => c.p.once('exit', resolve))))
  for (const c of caps) {
    const m = /(\d+) packets? captured[\s\S]*?(\d+) packets? received by filter/.exec(c.stats())
    t.ok(m !== null && m[1] === m[2], `${c.node}: tcpdump wrote every packet its filter received (${m?.[1]}/${m?.[2]})`)
    // Search reassembled TCP streams: bytes split by a segment boundary still count.
    const streams = tcpStreams(readFileSync(c.file))
    const total = [...streams.values()].reduce((n, b) => n + b.length, 0)
    t.ok(total > 1000, `${c.node}: ${streams.size} TCP streams, ${total} payload bytes`)
    t.notOk(streamsInclude(streams, Buffer.from(marker)), `${c.node}: the plaintext marker never crossed this node`)
    t.notOk(streamsInclude(streams, Buffer.from('mmolPerL')), `${c.node}: nor any of the glucose JSON`)
    t.ok(streamsInclude(streams, Buffer.from('IKETCP')), `${c.node}: RFC 8229 stream prefix seen`)
    for (const spi of spis) t.ok(streamsInclude(streams, Buffer.from(spi, 'hex')), `${c.node}: ESP frames with SPI ${spi} seen`, { tcpdump: c.stats().trim().split('\n').slice(-3).join(' | '), streams: [...streams.keys()] })
  }
  await stop(proc)
})

t.test('the traffic selectors admit port 8080 only', async (t) => {
  // A listener on port 22 of the terminal: reachable locally, not through the tunnel.
  const listener = spawn('ip', ['netns', 'exec', st.nodes.terminal.netns, process.execPath, '-e',
    "require('net').createServer((s) => s.end('SSH-2.0-test\\r\\n')).listen(22, '::', () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(listener)
  await new Promise((resolve) => listener.stdout!.once('data', resolve))
  const local = await inNode('terminal', ['curl', '-sS', '-m', '3', `telnet://[${st.terminal.permanentAddress}]:22`], 10_000)
  t.match(local.stdout, /SSH-2\.0-test/, 'port 22 answers on the terminal itself')
  const { proc } = await connect()
  t.equal((await get('/glucose')).status, 0, 'port 8080 through the tunnel')
  const ssh = await inNode('client', ['curl', '-sS', '-m', '3', `telnet://[${st.terminal.permanentAddress}]:22`])
  t.equal(ssh.status, 28, 'port 22 through the tunnel: nothing comes back (outside the selectors)')
  t.notMatch(ssh.stdout, /SSH/)
  listener.kill('SIGKILL')
  await stop(proc)
})

t.test('two users at once; closing one leaves the other; closing both leaves nothing', async (t) => {
  const a = await connect()
  const b = await connect(st.user2)
  t.equal((await get('/glucose', st.user.permanentAddress)).status, 0, `${st.user.name} through its tunnel`)
  t.equal((await get('/glucose', st.user2.permanentAddress)).status, 0, `${st.user2.name} through its tunnel`)
  const tv = await vici(st.ipsec.terminalVici)
  t.equal((await tv.listSas()).length, 2, 'the terminal holds two IKE_SAs')
  await stop(b.proc)
  await waitFor('the second tunnel to go', async () => (await tv.listSas()).length === 1, 10_000)
  t.equal((await get('/glucose', st.user.permanentAddress)).status, 0, `${st.user.name} still works after ${st.user2.name} left`)
  await stop(a.proc)
  const cv = await vici(st.ipsec.clientVici)
  await waitFor('the terminal to clean up', async () => (await tv.getConns()).length === 0, 10_000)
  for (const [side, v, node] of [['client', cv, 'client'], ['terminal', tv, 'terminal']] as const) {
    t.same(await v.getConns(), [], `${side}: no connection left`)
    t.same(await v.getShared(), [], `${side}: no secret left`)
    t.same(await v.listSas(), [], `${side}: no SA left`)
    const routes = await inNode(node, ['ip', '-6', 'route', 'show', 'table', '220'])
    t.equal(routes.stdout.trim(), '', `${side}: no route left in table 220`)
  }
})

t.test('charon restarted under a live tunnel: the client reloads and traffic resumes', async (t) => {
  const { proc } = await connect()
  t.equal((await get('/glucose')).status, 0)
  await stopRole(st, 'charon-client')
  await startRole(st, 'charon-client')
  await waitFor('traffic through the re-established tunnel', async () => (await get('/glucose')).status === 0, 30_000)
  t.pass('the glucose log is reachable again without a new rendezvous')
  await stop(proc)
})

t.test('pubkey mode: certificates from the lab CA; a certificate from another CA fails clearly', async (t) => {
  // Through the management API: the next CONNECT uses it, no relay restart.
  await labCli(st, ['policy', 'set', 'patient-phone', '--auth', 'pubkey'])
  t.teardown(async () => { await labCli(st, ['policy', 'set', 'patient-phone', '--auth', 'psk']) })

  const { proc, stages } = await connect()
  t.equal(stages.find((s) => s.stage === 'ipsec-loaded')?.auth, 'pubkey')
  t.equal((await get('/glucose')).status, 0, 'glucose over a certificate-authenticated tunnel')
  const tv = await vici(st.ipsec.terminalVici)
  t.equal((await tv.listSas())[0]?.remoteId, `${st.user.name}@${st.ipsec.domain}`, 'the terminal authenticated the user by certificate')
  await stop(proc)

  // Same identity, but issued by a CA the terminal does not trust.
  const other = mkdtempSync(join(tmpdir(), 'beckon-otherca-'))
  await caInit(other, 'Not the lab CA')
  const forged = await caIssue(other, `${st.user.name}@${st.ipsec.domain}`)
  const clientCfg = parseYaml(readFileSync(st.clientConfig, 'utf8')) as Record<string, any>
  clientCfg.ipsec.pubkey = { cert: forged.cert, key: forged.key, ca: st.ipsec.ca }
  const bad = join(stateDir, 'client', 'client-forged.yaml')
  writeFileSync(bad, toYaml(clientCfg))
  const r = await beckon(['lab', 'exec', ...labArgs, 'client', '--', process.execPath, BECKON, 'connect', 'patient-phone', '--config', bad], { timeoutMs: 60_000 })
  t.equal(r.status, 1, 'beckon connect exits 1')
  const err = JSON.parse(r.stderr.trim().split('\n').pop()!) as { error: { code: string, message: string } }
  t.equal(err.error.code, 'BECKON_ERR_IPSEC_FAILED')
  t.match(err.error.message, /AUTHENTICATION_FAILED/, 'and says why')
  await waitFor('the terminal to clean up', async () => (await tv.getConns()).length === 0, 10_000)
  t.same(await tv.getConns(), [], 'the refused session left nothing on the terminal')
})
