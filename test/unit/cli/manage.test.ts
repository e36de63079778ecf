// The management commands against the real API: buildApi on an in-memory SQLite store, served over
// HTTPS on 127.0.0.1 port 0 with a throwaway self-signed certificate, driven through the
// built `beckon` (dist/: `npx tsc -p tsconfig.json` first; `npm test` does it).
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApi } from '../../../src/api/app.js'
import { newToken } from '../../../src/api/auth.js'
import { generateRawKeyPair } from '../../../src/core/keys.js'
import { silentLogger } from '../../../src/core/log.js'
import type { Device, Policy } from '../../../src/store/records.js'
import { memoryStore } from '../../../src/store/memory.js'
import { BECKON } from '../../helpers/cli.js'

if (!existsSync(BECKON)) throw new Error(`${BECKON} is missing: build first (npx tsc -p tsconfig.json)`)

const dir = mkdtempSync(join(tmpdir(), 'beckon-manage-'))
const certPath = join(dir, 'api.pem')
const keyPath = join(dir, 'api.key')
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyPath, '-out', certPath], { stdio: 'ignore' })

const store = await memoryStore()
const checked: Array<{ device: string, policy: Policy }> = []
const app = await buildApi({
  store,
  log: silentLogger,
  secure: true,
  quiet: true,
  ipsecPrefix: 'fd00:beca::/48',
  // Stands in for charon: records what it was asked to load.
  checkPolicy: async (policy, device) => { checked.push({ device: device.name, policy }); return { connection: { name: `beckon-${device.name}`, proposals: policy.ike_proposals } } },
})
await app.ready()
const server: Server = createServer({ key: readFileSync(keyPath), cert: readFileSync(certPath) }, (req, res) => app.routing(req, res))
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

const admin = newToken('test-admin', ['admin'])
await store.put('token', admin.record.id, admin.record, 'test', { create: true })
const adminActor = `token:${admin.record.id}:test-admin`

t.teardown(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await app.close()
  rmSync(dir, { recursive: true, force: true })
})

// The caller's own BECKON_* settings and ~/.config must not leak into the runs.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BECKON_')))
const apiEnv = { ...cleanEnv, HOME: dir, BECKON_API: url, BECKON_TOKEN: admin.token, BECKON_API_CA: certPath }
const outputs: string[] = []

interface Run { status: number | null, stdout: string, stderr: string }

function run (args: string[], opts: { env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<Run> {
  const child = spawn(process.execPath, [BECKON, ...args], { env: opts.env ?? apiEnv, stdio: ['pipe', 'pipe', 'pipe'] })
  child.stdin.end(opts.input ?? '')
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  return new Promise((resolve) => child.on('close', (status) => {
    clearTimeout(timer)
    outputs.push(stdout, stderr)
    resolve({ status, stdout, stderr })
  }))
}

/** Runs and expects exit 0 with JSON on stdout. */
async function json<T = unknown> (t: Test, args: string[], opts: { env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<T> {
  const r = await run([...args, '--json'], opts)
  t.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** Runs and expects a coded error: the last stderr line is {"error":{code,message}}. */
async function fails (t: Test, args: string[], code: string, status: number, opts: { env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<{ code: string, message: string }> {
  const r = await run(args, opts)
  t.equal(r.status, status, `${args.join(' ')} exits ${status}`)
  t.equal(r.stdout, '', 'nothing on stdout')
  const err = (JSON.parse(r.stderr.trim().split('\n').pop()!) as { error: { code: string, message: string } }).error
  t.equal(err.code, code, err.message)
  return err
}

/** Every data cell starts where its header does, and the gap before it is blank. */
function assertAligned (t: Test, text: string, header: string[]): string[][] {
  const lines = text.trimEnd().split('\n')
  const starts = header.map((h) => lines[0]!.indexOf(h))
  t.same(lines[0]!.split(/\s{2,}/), header, 'header')
  t.ok(starts.every((s, i) => i === 0 || s > starts[i - 1]!), 'columns in order')
  return lines.slice(1).map((line) => starts.map((s, i) => {
    t.ok(s === 0 || line[s - 1] === ' ', `row "${line}": blank before column ${header[i]}`)
    t.not(line[s], ' ', `row "${line}": column ${header[i]} starts at its header`)
    return line.slice(s, i + 1 < starts.length ? starts[i + 1] : undefined).trim()
  }))
}

const gwKey = generateRawKeyPair('x25519').publicKey
const agentKey = generateRawKeyPair('x25519').publicKey

t.test('no token: a usage error naming the three ways, before any request', async (t) => {
  const [err, bad, http] = await Promise.all([
    fails(t, ['device', 'list'], 'BECKON_ERR_USAGE', 2, { env: { ...cleanEnv, HOME: dir, BECKON_API: url } }),
    fails(t, ['device', 'list'], 'BECKON_ERR_USAGE', 2, { env: { ...apiEnv, BECKON_TOKEN: 'hunter2-not-a-token' } }),
    fails(t, ['device', 'list', '--api', url.replace('https:', 'http:')], 'BECKON_ERR_USAGE', 2),
  ])
  t.match(err.message, /--token/)
  t.match(err.message, /BECKON_TOKEN/)
  t.match(err.message, /\.config\/beckon\/api\.yaml/)
  t.match(err.message, /--api-config/)
  t.match(bad.message, /from BECKON_TOKEN is malformed/)
  t.notMatch(bad.message, /hunter2/, 'a malformed token is not echoed')
  t.match(http.message, /must be https/)
})

t.test('the API\'s certificate must be trusted: without the CA a config error names --ca', async (t) => {
  const err = await fails(t, ['device', 'list'], 'BECKON_ERR_CONFIG', 1, { env: { ...apiEnv, BECKON_API_CA: '' } })
  t.match(err.message, /does not trust.*--ca/)
})

t.test('a config file supplies url, token and ca (ca relative to the file)', async (t) => {
  const cfg = join(dir, 'api.yaml')
  writeFileSync(cfg, `url: ${url}\ntoken: ${admin.token}\nca: api.pem\n`, { mode: 0o600 })
  t.same(await Promise.all([
    json(t, ['gateway', 'list', '--api-config', cfg], { env: { ...cleanEnv, HOME: dir } }),
    json(t, ['gateway', 'list'], { env: { ...cleanEnv, HOME: dir, BECKON_API_CONFIG: cfg } }),
  ]), [[], []])
  writeFileSync(cfg, 'url: https://127.0.0.1:1\ntokn: x\n')
  const err = await fails(t, ['gateway', 'list', '--api-config', cfg], 'BECKON_ERR_CONFIG', 1, { env: { ...cleanEnv, HOME: dir } })
  t.match(err.message, /api\.yaml\.tokn: unknown key/)
})

t.test('gateway, group and user for the devices below', async (t) => {
  const [gw, grp] = await Promise.all([
    json(t, ['gateway', 'add', 'gw-berlin', '--public-key', gwKey, '--description', 'Berlin carrier']),
    json(t, ['group', 'add', 'physicians', '--description', 'may read glucose']),
  ])
  t.same(gw, { name: 'gw-berlin', public_key: gwKey, description: 'Berlin carrier' })
  t.same(grp, { name: 'physicians', description: 'may read glucose' })
  const u = await json<{ name: string, groups: string[], has_password: boolean, address: string }>(t, ['user', 'add', 'dr-grey', '--groups', 'physicians', '--password-stdin'], { input: 'correct horse battery\n' })
  t.match(u, { name: 'dr-grey', groups: ['physicians'], has_password: true, address: /^fd00:beca:/ })
  const hash = (await store.get('user', 'dr-grey'))?.password_hash
  t.match(hash, /^scrypt\$/, 'stored as a hash')
  t.match(await json(t, ['user', 'set', 'dr-grey', '--password-stdin'], { input: 'another long password\n' }), { has_password: true, groups: ['physicians'] })
  t.not((await store.get('user', 'dr-grey'))?.password_hash, hash, 'a new password replaces the hash')
  const r = await run(['user', 'list'])
  t.equal(r.status, 0)
  t.same(assertAligned(t, r.stdout, ['NAME', 'GROUPS', 'ADDRESS', 'PASSWORD', 'TOKENS']).map((row) => [row[0], row[1], row[3]]), [['dr-grey', 'physicians', 'yes']])
})

t.test('device add, list, show, set, rm', async (t) => {
  const [d] = await Promise.all([
    json<Device>(t, ['device', 'add', 'patient-phone', '--gateway', 'gw-berlin', '--msisdn', '+4915112345678', '--wake-timeout', '2m',
      '--agent-key', agentKey, '--service', 'glucose:8443', '--service', 'telemetry:5683/udp']),
    json(t, ['device', 'add', 'pump-7', '--gateway', 'gw-berlin', '--channels', 'email', '--email', 'signals@gw.example', '--port', '7401']),
  ])
  t.match(d, { name: 'patient-phone', gateway: 'gw-berlin', msisdn: '+4915112345678', wake_timeout_ms: 120_000, port: 7400, channels: ['sms'], agent_public_key: agentKey, address: /^fd00:beca:/ })
  t.match(d.services, [{ name: 'glucose', protocol: 'tcp', port: 8443, address: /^fd00:beca:/ }, { name: 'telemetry', protocol: 'udp', port: 5683 }])

  const [list, shown, shownJson] = await Promise.all([run(['device', 'list']), run(['device', 'show', 'patient-phone']), json(t, ['device', 'show', 'patient-phone'])])
  t.equal(list.status, 0, list.stderr)
  const rows = assertAligned(t, list.stdout, ['NAME', 'GATEWAY', 'CHANNELS', 'MSISDN', 'EMAIL', 'PORT', 'WAKE', 'ADDRESS', 'SERVICES'])
  t.same(rows.map((r) => [r[0], r[2], r[3], r[4], r[5], r[6], r[8]]), [
    ['patient-phone', 'sms', '+4915112345678', '-', '7400', '2m', 'glucose,telemetry'],
    ['pump-7', 'email', '-', 'signals@gw.example', '7401', '15s', '-'],
  ])

  t.equal(shown.status, 0)
  t.match(shown.stdout, /^wake_timeout_ms\s+120000 \(2m\)$/m)
  t.match(shown.stdout, /^services\s+glucose {4}tcp\/8443 {3}fd00:beca:/m)
  t.same(shownJson, d, '--json is the API\'s record')

  // sms needs an MSISDN: the API refuses, the CLI passes its code on.
  const refused = await fails(t, ['device', 'set', 'patient-phone', '--unset', 'msisdn'], 'BECKON_ERR_VALIDATION', 1)
  t.match(refused.message, /msisdn: required by channel sms/)
  const changed = await json<Device>(t, ['device', 'set', 'patient-phone', '--channels', 'email,sms', '--email', 'signals@gw.example', '--wake-timeout', '5m', '--unset', 'agent-key'])
  t.match(changed, { channels: ['email', 'sms'], email: 'signals@gw.example', wake_timeout_ms: 300_000, msisdn: '+4915112345678' })
  t.notOk('agent_public_key' in changed, '--unset removed the field')
  t.equal(changed.services.length, 2, 'fields not given are kept')

  const [, rm] = await Promise.all([fails(t, ['device', 'set', 'patient-phone'], 'BECKON_ERR_USAGE', 2), run(['device', 'rm', 'pump-7'])])
  t.equal(rm.status, 0)
  t.match(rm.stdout, /removed device pump-7/)
  await fails(t, ['device', 'show', 'pump-7'], 'BECKON_ERR_NOT_FOUND', 1)
})

t.test('a duplicate is a 409: BECKON_ERR_CONFLICT on stderr, exit 1', async (t) => {
  const [err, gw] = await Promise.all([
    fails(t, ['device', 'add', 'patient-phone', '--gateway', 'gw-berlin', '--msisdn', '+4915100000000'], 'BECKON_ERR_CONFLICT', 1),
    fails(t, ['gateway', 'rm', 'gw-berlin'], 'BECKON_ERR_CONFLICT', 1),
  ])
  t.equal(err.message, 'already exists: device patient-phone', 'the API\'s message, once')
  t.match(gw.message, /serves device patient-phone/)
})

t.test('policy set from flags, then from a file, then check', async (t) => {
  t.match(await fails(t, ['policy', 'show', 'patient-phone'], 'BECKON_ERR_NOT_FOUND', 1), { message: /has no policy/ })
  // psk mode seals PSKs for the agent: refused while the device has no agent key.
  t.match(await fails(t, ['policy', 'set', 'patient-phone', '--allow', 'group:physicians tcp/8443'], 'BECKON_ERR_POLICY_INVALID', 1), { message: /agent_public_key/ })
  await json(t, ['device', 'set', 'patient-phone', '--agent-key', agentKey])
  const p = await json<Policy>(t, ['policy', 'set', 'patient-phone', '--allow', 'group:physicians,user:dr-grey tcp/8443', '--allow', 'user:dr-grey udp/5683',
    '--ike-rekey', '4h', '--child-rekey', '1h', '--dpd', '20s', '--esp', 'aes256gcm16,chacha20poly1305'])
  t.match(p, { auth: 'psk', ike_rekey_s: 14_400, child_rekey_s: 3600, dpd_s: 20, esp_proposals: ['aes256gcm16', 'chacha20poly1305'], raw_tcp: false })
  t.same(p.rules, [
    { users: ['dr-grey'], groups: ['physicians'], protocol: 'tcp', ports: [8443], ipsec: true, raw_tcp: false },
    { users: ['dr-grey'], groups: [], protocol: 'udp', ports: [5683], ipsec: true, raw_tcp: false },
  ])
  // Flags alone change the stored policy; they do not drop its rules.
  const tuned = await json<Policy>(t, ['policy', 'set', 'patient-phone', '--dpd', '45s'])
  t.equal(tuned.dpd_s, 45)
  t.equal(tuned.rules.length, 2)
  const shown = await run(['policy', 'show', 'patient-phone'])
  t.match(shown.stdout, /^rules\s+group:physicians,user:dr-grey tcp\/8443$/m, 'rules shown as --allow would take them')
  t.match(shown.stdout, /^ike_rekey_s\s+14400 \(4h\)$/m)

  const yamlFile = join(dir, 'policy.yaml')
  writeFileSync(yamlFile, ['raw_tcp: true', 'rules:', '  - groups: [physicians]', '    ports: [8443]', '    raw_tcp: true', 'ike_proposals: [aes128gcm16-prfsha256-ecp256]', ''].join('\n'))
  const fromYaml = await json<Policy>(t, ['policy', 'set', 'patient-phone', '--file', yamlFile, '--dpd', '10s'])
  t.match(fromYaml, { raw_tcp: true, dpd_s: 10, ike_proposals: ['aes128gcm16-prfsha256-ecp256'], ike_rekey_s: 14_400, rules: [{ groups: ['physicians'], users: [], ports: [8443], raw_tcp: true, ipsec: true }] })
  const jsonFile = join(dir, 'policy.json')
  writeFileSync(jsonFile, JSON.stringify({ rules: [{ users: ['dr-grey'], ports: [8443] }] }))
  t.match(await json<Policy>(t, ['policy', 'set', 'patient-phone', '--file', jsonFile]), { raw_tcp: false, rules: [{ users: ['dr-grey'], ports: [8443] }] }, 'a file replaces the policy')

  const ok = await json<{ ok: boolean, connection: unknown }>(t, ['policy', 'check', 'patient-phone'])
  t.match(ok, { ok: true, connection: { name: 'beckon-patient-phone' } })
  t.match(checked.pop(), { device: 'patient-phone', policy: { rules: [{ users: ['dr-grey'] }] } }, 'the stored policy was checked')
  const [bad, port] = await Promise.all([
    fails(t, ['policy', 'check', 'patient-phone', '--allow', 'user:nobody tcp/8443'], 'BECKON_ERR_POLICY_INVALID', 1),
    fails(t, ['policy', 'set', 'patient-phone', '--allow', 'user:dr-grey tcp/22'], 'BECKON_ERR_POLICY_INVALID', 1),
    fails(t, ['policy', 'set', 'patient-phone', '--allow', 'dr-grey 8443'], 'BECKON_ERR_USAGE', 2),
    fails(t, ['policy', 'set', 'patient-phone', '--dpd', 'soon'], 'BECKON_ERR_USAGE', 2),
  ])
  t.match(bad.message, /unknown user nobody/)
  t.equal(checked.length, 0, 'an invalid policy never reaches charon')
  t.match(port.message, /tcp\/22 is not a service/)
})

t.test('tokens: create, a read-only token gets 403 on writes, revoke', async (t) => {
  const created = await run(['token', 'create', '--name', 'dashboard', '--scopes', 'read'])
  t.equal(created.status, 0, created.stderr)
  t.match(created.stderr, /shown only now/)
  const reader = /^token\s+(bkn_\S+)$/m.exec(created.stdout)?.[1]
  const id = /^id\s+([a-f0-9]{16})$/m.exec(created.stdout)?.[1]
  t.ok(reader !== undefined && id !== undefined, 'the new token and its id are shown')
  const readerEnv = { ...apiEnv, BECKON_TOKEN: reader! }

  const [devices, denied, , list] = await Promise.all([
    json<Device[]>(t, ['device', 'list'], { env: readerEnv }),
    fails(t, ['group', 'add', 'nurses'], 'BECKON_ERR_API_FORBIDDEN', 1, { env: readerEnv }),
    fails(t, ['token', 'list'], 'BECKON_ERR_API_FORBIDDEN', 1, { env: readerEnv }),
    run(['token', 'list']),
  ])
  t.equal(devices.length, 1, 'read works')
  t.match(denied.message, /needs scope write/)
  const rows = assertAligned(t, list.stdout, ['ID', 'NAME', 'SCOPES', 'CREATED', 'REVOKED'])
  t.same(rows.map((r) => [r[0], r[1], r[2], r[4]]).sort(), [[admin.record.id, 'test-admin', 'admin', '-'], [id, 'dashboard', 'read', '-']].sort())
  t.notMatch(list.stdout, /bkn_/, 'no secret in the list')

  const revoked = await run(['token', 'revoke', id!])
  t.equal(revoked.status, 0)
  const gone = await fails(t, ['device', 'list'], 'BECKON_ERR_API_UNAUTHORIZED', 1, { env: readerEnv })
  t.match(gone.message, /was revoked/)
  t.ok((await json<Array<{ id: string, revoked_at?: number }>>(t, ['token', 'list'])).find((x) => x.id === id)?.revoked_at, 'kept, marked revoked')
})

t.test('sessions: an empty list, then one live session shown and killed', async (t) => {
  const [empty, emptyJson] = await Promise.all([run(['session', 'list']), json(t, ['session', 'list', '--live'])])
  t.equal(empty.status, 0, empty.stderr)
  t.equal(empty.stdout, 'ID  USER  DEVICE  STAGE  CHANNEL  UP  DOWN  IKE  CHILD  STARTED\n', 'header only')
  t.same(emptyJson, [])

  const id = 'a1b2c3d4e5f60718293a4b5c'
  await store.sessionOpen({ id, relay: 'relay-1', user: 'dr-grey', device: 'patient-phone', mode: 'ipsec', port: 8443, stage: 'connected', channel: 'sms', fallback: [], bytes_up: 1536, bytes_down: 3 * 1024 * 1024, ike_state: 'ESTABLISHED', child_state: 'INSTALLED', started_at: Date.parse('2025-01-02T03:04:05Z') })
  const [live, other, one] = await Promise.all([run(['session', 'list', '--live', '--device', 'patient-phone']), json(t, ['session', 'list', '--user', 'someone-else']), json(t, ['session', 'show', id])])
  t.same(assertAligned(t, live.stdout, ['ID', 'USER', 'DEVICE', 'STAGE', 'CHANNEL', 'UP', 'DOWN', 'IKE', 'CHILD', 'STARTED']),
    [[id, 'dr-grey', 'patient-phone', 'connected', 'sms', '1.5KiB', '3.0MiB', 'ESTABLISHED', 'INSTALLED', '2025-01-02 03:04:05Z']])
  t.same(other, [])
  t.match(one, { id, relay: 'relay-1', bytes_down: 3 * 1024 * 1024 })
  // No relay holds it in this process: the API flags it for its holder (202).
  const kill = await run(['session', 'kill', id])
  t.equal(kill.status, 0, kill.stderr)
  t.match(kill.stdout, /asked relay relay-1 to end session/)
  t.equal((await store.getSession(id))?.kill_requested, adminActor)
  await store.sessionEnd(id, { outcome: 'ok', bytes_up: 1536, bytes_down: 3 * 1024 * 1024 })
  await fails(t, ['session', 'kill', id], 'BECKON_ERR_SESSION_ENDED', 1)
})

t.test('audit lists the changes, filters, and follows pages with --all', async (t) => {
  type Page = { entries: Array<{ id: number, at: number, actor: string, action: string, target: string }>, next?: number }
  const [page, devices, future, paged, all, table] = await Promise.all([
    json<Page>(t, ['audit', '--actor', adminActor, '--limit', '500']),
    json<Page>(t, ['audit', '--target', 'device/patient-phone', '--action', 'device.', '--since', '1h']),
    json<Page>(t, ['audit', '--since', '2999-01-01T00:00:00Z']),
    json<Page>(t, ['audit', '--limit', '3']),
    json<Page>(t, ['audit', '--limit', '3', '--all']),
    run(['audit', '--target', 'group/physicians']),
  ])
  const actions = page.entries.map((e) => `${e.action} ${e.target}`)
  for (const a of ['gateway.create gateway/gw-berlin', 'group.create group/physicians', 'user.create user/dr-grey', 'device.create device/patient-phone',
    'device.update device/patient-phone', 'device.delete device/pump-7', 'policy.create policy/patient-phone', 'policy.update policy/patient-phone',
    'policy.check policy/patient-phone', 'token.create token/' + /token\/(\w+)/.exec(actions.find((x) => x.startsWith('token.create'))!)![1]!, 'session.kill session/a1b2c3d4e5f60718293a4b5c']) {
    t.ok(actions.includes(a), a)
  }
  t.ok(page.entries.every((e) => e.actor === adminActor))

  t.same(devices.entries.map((e) => e.action), ['device.update', 'device.update', 'device.create'], 'newest first')
  t.same(future.entries, [])
  const total = (await store.queryAudit({ limit: 500 })).entries.length
  t.equal(paged.entries.length, 3)
  t.type(paged.next, 'number', 'one page: next as the API gives it')
  t.equal(all.entries.length, total, '--all follows next to the end')
  t.same(all.entries.map((e) => e.id), [...all.entries.map((e) => e.id)].sort((a, b) => b - a))
  const rows = assertAligned(t, table.stdout, ['ID', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'OUTCOME'])
  t.same(rows.map((r) => [r[2], r[3], r[4]]), [[adminActor, 'group.create', 'group/physicians']])
})

t.test('usage errors exit 2 with a coded error', async (t) => {
  const [bogus, missing, forever, limit, role] = await Promise.all([
    fails(t, ['device', 'add', 'x', '--gateway', 'gw-berlin', '--bogus'], 'BECKON_ERR_USAGE', 2),
    fails(t, ['device', 'add', 'x'], 'BECKON_ERR_USAGE', 2),
    fails(t, ['device', 'add', 'x', '--gateway', 'g', '--wake-timeout', 'forever'], 'BECKON_ERR_USAGE', 2),
    fails(t, ['audit', '--limit', '0'], 'BECKON_ERR_USAGE', 2),
    // The gateway role itself still starts from `beckon gateway`.
    run(['gateway', '--config', join(dir, 'none.yaml')]),
  ])
  t.match(bogus.message, /unknown option '--bogus'/)
  t.match(missing.message, /--gateway/)
  t.match(forever.message, /--wake-timeout: forever is not a duration/)
  t.match(limit.message, /--limit/)
  t.equal(role.status, 1)
  t.match(role.stderr, /BECKON_ERR_CONFIG.*cannot read/)
})

t.test('no run printed the token it was given', async (t) => {
  t.ok(outputs.length > 50)
  t.notOk(outputs.some((o) => o.includes(admin.token)), 'the admin token never appears in output')
})
