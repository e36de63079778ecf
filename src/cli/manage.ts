/**
 * The management commands: `beckon device|policy|user|group|gateway|directory|token|
 * session|audit …`, each one or a few calls to the management API (src/api/) through
 * src/cli/api-client.ts (URL, token and CA from flags, BECKON_API*, or api.yaml).
 *
 * Output: an aligned table (lists) or `key  value` lines (one record) for people;
 * `--json` prints the API's JSON as is for scripts (nothing for a 204 answer: the exit
 * status says it worked). Errors are `{"error":{"code","message"}}` on stderr with the
 * API's code and exit status 1; usage errors (bad flags, no token) exit 2.
 *
 * Durations are written as 500ms, 15s, 5m, 4h or 1d (a bare number is seconds) and
 * converted to the unit the API field names (`wake_timeout_ms`, `ike_rekey_s`).
 */
import type { Command, CommanderError } from 'commander'
import { readFileSync } from 'node:fs'
import { readYamlFile } from '../core/config.js'
import { BeckonError, isBeckonError } from '../core/errors.js'
import type { AuditEntry, Device, Gateway, Group, LdapSettings, Policy, PolicyRule, SessionRecord, TokenRecord } from '../store/records.js'
import { ApiClient, DEFAULT_API_URL, resolveApiTarget, seg, type Query } from './api-client.js'
import { exitWithError, printJson } from './output.js'

// ---------------------------------------------------------------------------------------
// Parsing flags

const usage = (msg: string): BeckonError => new BeckonError('BECKON_ERR_USAGE', msg)

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `500ms`, `15s`, `5m`, `4h`, `1d`, `1h30m`; a bare number is seconds. Returns ms. */
export function parseDuration (text: string, flag: string): number {
  const s = text.trim()
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== s) throw usage(`${flag}: ${text} is not a duration (e.g. 500ms, 15s, 5m, 4h, 1d)`)
  return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * UNIT_MS[p[2]!]!, 0))
}

function durationSeconds (text: string, flag: string): number {
  const ms = parseDuration(text, flag)
  if (ms % 1000 !== 0) throw usage(`${flag}: ${text} must be whole seconds`)
  return ms / 1000
}

/** 14400 s → `4h`, 90_000 ms → `1m30s`: for display only. */
export function formatDuration (ms: number): string {
  if (ms < 1000 || ms % 1000 !== 0) return `${ms}ms`
  let s = ms / 1000
  let out = ''
  for (const [u, n] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= n) { out += `${Math.floor(s / n)}${u}`; s %= n }
  }
  return out
}

function parseInt10 (text: string, flag: string, min: number, max: number): number {
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) throw usage(`${flag}: ${text} must be an integer from ${min} to ${max}`)
  return n
}

const csv = (s: string): string[] => s.split(',').map((x) => x.trim()).filter((x) => x !== '')
const collect = (v: string, prev: string[] = []): string[] => [...prev, v]

/** `--since 1h` (that long ago) or an ISO 8601 time; ms since the epoch. */
export function parseSince (text: string, flag: string, now = Date.now()): number {
  if (/^\d{4}-\d\d-\d\d/.test(text)) {
    const t = Date.parse(text)
    if (Number.isNaN(t)) throw usage(`${flag}: ${text} is not an ISO 8601 time`)
    return t
  }
  return now - parseDuration(text, flag)
}

/** `glucose:8443` or `glucose:8443/udp` → a device service. */
export function parseService (text: string): { name: string, port: number, protocol: 'tcp' | 'udp' } {
  const m = /^([a-z0-9-]+):(\d+)(?:\/(tcp|udp))?$/.exec(text.trim())
  if (m === null) throw usage(`--service: ${text} must be name:port or name:port/udp`)
  return { name: m[1]!, port: parseInt10(m[2]!, `--service ${text}`, 1, 65535), protocol: (m[3] ?? 'tcp') as 'tcp' | 'udp' }
}

/**
 * One policy rule from `--allow "group:physicians,user:dr-grey tcp/8080,8443"`: who
 * (comma-separated user:… and group:…), then the ports (protocol tcp unless given),
 * then optional words `raw-tcp` (may also open raw TCP sessions) and `no-ipsec`.
 */
export function parseAllow (text: string): PolicyRule {
  const words = text.trim().split(/\s+/)
  const example = '--allow "group:physicians,user:dr-grey tcp/8080,8443"'
  if (words.length < 2) throw usage(`--allow: ${text} needs who and ports, e.g. ${example}`)
  const users: string[] = []
  const groups: string[] = []
  for (const p of csv(words[0]!)) {
    const m = /^(user|group):(.+)$/.exec(p)
    if (m === null) throw usage(`--allow: ${p} must be user:<name> or group:<name>, e.g. ${example}`)
    ;(m[1] === 'user' ? users : groups).push(m[2]!)
  }
  const pm = /^(?:(tcp|udp)\/)?(\d+(?:,\d+)*)$/.exec(words[1]!)
  if (pm === null) throw usage(`--allow: ${words[1]} must be ports such as tcp/8080,8443 or udp/5683`)
  const rule: PolicyRule = {
    users,
    groups,
    protocol: (pm[1] ?? 'tcp') as 'tcp' | 'udp',
    ports: pm[2]!.split(',').map((p) => parseInt10(p, `--allow ${words[1]}`, 1, 65535)),
    ipsec: true,
    raw_tcp: false,
  }
  for (const w of words.slice(2)) {
    if (w === 'raw-tcp') rule.raw_tcp = true
    else if (w === 'no-ipsec') rule.ipsec = false
    else throw usage(`--allow: unknown word ${w} (known: raw-tcp, no-ipsec)`)
  }
  return rule
}

/** The inverse of parseAllow, for `policy show`. */
export function formatRule (r: PolicyRule): string {
  const who = [...r.groups.map((g) => `group:${g}`), ...r.users.map((u) => `user:${u}`)].join(',')
  return `${who === '' ? '(nobody)' : who} ${r.protocol}/${r.ports.join(',')}${r.raw_tcp ? ' raw-tcp' : ''}${r.ipsec === false ? ' no-ipsec' : ''}`
}

async function readStdin (what: string): Promise<string> {
  if (process.stdin.isTTY === true) process.stderr.write(`${what} (then Enter and Ctrl-D): `)
  let s = ''
  for await (const chunk of process.stdin) s += String(chunk)
  s = s.replace(/\r?\n$/, '')
  if (s === '') throw usage(`${what}: nothing on stdin`)
  return s
}

function readPem (path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw usage(`${flag}: cannot read ${path}: ${(err as Error).message}`)
  }
}

// ---------------------------------------------------------------------------------------
// Printing

const cell = (v: unknown): string => (v === undefined || v === null || v === '' ? '-' : String(v))

/** Columns padded to the widest cell, two spaces apart; the last column is not padded. */
export function table (header: string[], rows: unknown[][]): string {
  const cells = [header, ...rows.map((r) => r.map(cell))]
  const width = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)))
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]!))).join('  ').trimEnd()).join('\n') + '\n'
}

/** One record as `key  value` lines; arrays of records become one line each. */
function record (obj: Record<string, unknown>, lines: Record<string, (v: never) => string[]> = {}): string {
  const rows: Array<[string, string]> = []
  for (const [k, v] of Object.entries(obj)) {
    const fmt = lines[k]
    if (fmt !== undefined) {
      const ls = fmt(v as never)
      if (ls.length === 0) rows.push([k, '-'])
      ls.forEach((l) => rows.push([k, l]))
    } else if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) rows.push([k, v.length === 0 ? '-' : v.join(',')])
    else if (typeof v === 'object' && v !== null) rows.push([k, JSON.stringify(v)])
    else if (typeof v === 'number' && k.endsWith('_ms')) rows.push([k, `${v} (${formatDuration(v)})`])
    else if (typeof v === 'number' && k.endsWith('_s')) rows.push([k, `${v} (${formatDuration(v * 1000)})`])
    else if (typeof v === 'number' && k.endsWith('_at')) rows.push([k, `${time(v)}`])
    else rows.push([k, cell(v)])
  }
  const w = Math.max(0, ...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n'
}

const out = (s: string): void => { process.stdout.write(s) }
const time = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'))

export function bytes (n: number): string {
  if (n < 1024) return `${n}B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = -1
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return `${v.toFixed(1)}${units[u]!}`
}

const serviceLines = (ss: Device['services']): string[] => {
  const w = Math.max(0, ...ss.map((s) => s.name.length))
  return ss.map((s) => `${s.name.padEnd(w)}  ${`${s.protocol}/${s.port}`.padEnd(9)}  ${s.address ?? ''}`.trimEnd())
}
const showDevice = (d: Device): string => record(d, { services: serviceLines })
const showPolicy = (p: Policy): string => record(p, { rules: (rs: PolicyRule[]) => rs.map(formatRule) })

// ---------------------------------------------------------------------------------------
// Commands: common flags, the API client, exits

interface Common {
  json?: boolean
  api?: string
  token?: string
  ca?: string
  apiCa?: string
  apiConfig?: string
  timeout: string
}

interface Ctx {
  /** Resolved at first use, so flag errors show before a missing token does. */
  api: () => ApiClient
  json: boolean
}

type Handler<O> = (ctx: Ctx, args: string[], o: O & Common) => Promise<void>

/**
 * Commander's own errors (unknown flag, missing argument) as coded usage errors with
 * exit status 2, like every other usage error of this command set.
 */
function codedUsage (cmd: Command): Command {
  return cmd
    .showHelpAfterError(false)
    .configureOutput({
      outputError: (str, write) => write(JSON.stringify({ error: usage(`${str.replace(/^error: /, '').trim()} (see --help)`).toJSON() }) + '\n'),
    })
    .exitOverride((err: CommanderError) => process.exit(err.exitCode === 0 ? 0 : 2))
}

/**
 * Adds the connection flags and the action. `directory ldap set` has its own `--ca`
 * (the directory's CA), so there the API's CA is `--api-ca`.
 */
function handle<O> (cmd: Command, fn: Handler<O>, opts: { apiCaFlag?: '--api-ca' } = {}): Command {
  codedUsage(cmd)
    .option('--json', 'print the API\'s JSON as is (for scripts)')
    .option('--api <url>', `management API URL (BECKON_API; default ${DEFAULT_API_URL})`)
    .option('--token <token>', 'API token (BECKON_TOKEN or token: in the API config; a flag is visible to other local users)')
    .option(`${opts.apiCaFlag ?? '--ca'} <file>`, 'PEM CA for the API\'s certificate (BECKON_API_CA)')
    .option('--api-config <path>', 'YAML with url, token, ca (BECKON_API_CONFIG; default ~/.config/beckon/api.yaml)')
    .option('--timeout <duration>', 'per API request', '10s')
  return cmd.action(async (...params: unknown[]) => {
    const command = params[params.length - 1] as Command
    const o = command.opts<O & Common>()
    const args = params.slice(0, -2) as string[]
    let client: ApiClient | undefined
    try {
      const timeoutMs = parseDuration(o.timeout, '--timeout')
      const ca = opts.apiCaFlag === '--api-ca' ? o.apiCa : o.ca
      const ctx: Ctx = {
        api: () => (client ??= new ApiClient(resolveApiTarget({ api: o.api, token: o.token, ca, apiConfig: o.apiConfig, timeoutMs }))),
        json: o.json === true,
      }
      await fn(ctx, args, o)
    } catch (err) {
      client?.close()
      exitWithError(err)
    }
    client?.close()
  })
}

function group (parent: Command, name: string, description: string): Command {
  return codedUsage(parent.command(name).description(description))
}

/** Prints the API's answer as JSON, or the human rendering of it. */
function show<T> (ctx: Ctx, body: T, human: (b: T) => string): void {
  if (ctx.json) printJson(body)
  else out(human(body))
}

/** A 204 answer: nothing for scripts, one line for people. */
function done (ctx: Ctx, line: string): void {
  if (!ctx.json) out(line + '\n')
}

async function request<T> (ctx: Ctx, method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  return (await ctx.api().request<T>(method, path, { body, query })).body as T
}

// ---------------------------------------------------------------------------------------
// device

interface DeviceOpts {
  gateway?: string
  msisdn?: string
  email?: string
  emailReference?: string
  port?: string
  channels?: string
  wakeTimeout?: string
  agentKey?: string
  address?: string
  service?: string[]
  unset?: string[]
}

function deviceOptions (cmd: Command, add: boolean): Command {
  if (add) cmd.requiredOption('--gateway <name>', 'the gateway serving the device\'s carrier network')
  else cmd.option('--gateway <name>', 'the gateway serving the device\'s carrier network')
  return cmd
    .option('--msisdn <number>', 'E.164 number SMS signals go to')
    .option('--email <address>', 'the gateway mailbox for e-mail signals')
    .option('--email-reference <ref>', 'names the terminal inside e-mail signals (default: the device name)')
    .option('--port <port>', 'the agent\'s predetermined port (API default 7400)')
    .option('--channels <list>', 'sms,email in order of preference (API default sms)')
    .option('--wake-timeout <duration>', 'wait this long for the dial-back, e.g. 15s, 5m (API default 15s)')
    .option('--agent-key <key>', 'the agent\'s X25519 public key (beckon keygen x25519)')
    .option('--address <ipv6>', 'permanent address (default: derived from the name)')
    .option('--service <name:port[/udp]>', 'an application with its own permanent address; repeat for several', collect)
}

/** Flag → API field, for --unset (only optional fields; the rest have defaults or are required). */
const DEVICE_UNSET: Record<string, string> = {
  msisdn: 'msisdn',
  email: 'email',
  'email-reference': 'email_reference',
  'agent-key': 'agent_public_key',
  address: 'address',
  service: 'services',
  services: 'services',
}

function deviceFields (o: DeviceOpts): Record<string, unknown> {
  const b: Record<string, unknown> = {}
  if (o.gateway !== undefined) b.gateway = o.gateway
  if (o.msisdn !== undefined) b.msisdn = o.msisdn
  if (o.email !== undefined) b.email = o.email
  if (o.emailReference !== undefined) b.email_reference = o.emailReference
  if (o.port !== undefined) b.port = parseInt10(o.port, '--port', 1, 65535)
  if (o.channels !== undefined) b.channels = csv(o.channels)
  if (o.wakeTimeout !== undefined) b.wake_timeout_ms = parseDuration(o.wakeTimeout, '--wake-timeout')
  if (o.agentKey !== undefined) b.agent_public_key = o.agentKey
  if (o.address !== undefined) b.address = o.address
  if (o.service !== undefined) b.services = o.service.map(parseService)
  return b
}

function registerDevice (program: Command): void {
  const device = group(program, 'device', 'devices (mobile terminals) in the management API')

  handle<DeviceOpts>(deviceOptions(device.command('add').argument('<name>').description('create a device'), true), async (ctx, [name], o) => {
    const d = await request<Device>(ctx, 'POST', '/v1/devices', { name, ...deviceFields(o) })
    show(ctx, d, showDevice)
  })

  handle(device.command('list').description('all devices'), async (ctx) => {
    const ds = await request<Device[]>(ctx, 'GET', '/v1/devices')
    show(ctx, ds, (l) => table(['NAME', 'GATEWAY', 'CHANNELS', 'MSISDN', 'EMAIL', 'PORT', 'WAKE', 'ADDRESS', 'SERVICES'],
      l.map((d) => [d.name, d.gateway, d.channels.join(','), d.msisdn, d.email, d.port, formatDuration(d.wake_timeout_ms), d.address, d.services.map((s) => s.name).join(',')])))
  })

  handle(device.command('show').argument('<name>').description('one device, with its derived addresses'), async (ctx, [name]) => {
    show(ctx, await request<Device>(ctx, 'GET', `/v1/devices/${seg(name!)}`), showDevice)
  })

  handle<DeviceOpts>(deviceOptions(device.command('set').argument('<name>').description('change the given fields only (--service replaces the whole list)'), false)
    .option('--unset <field>', `remove an optional field: ${Object.keys(DEVICE_UNSET).filter((k) => k !== 'service').join(', ')}; repeatable`, collect), async (ctx, [name], o) => {
    const patch = deviceFields(o)
    for (const f of o.unset ?? []) {
      const field = DEVICE_UNSET[f] ?? Object.values(DEVICE_UNSET).find((v) => v === f)
      if (field === undefined) throw usage(`--unset: ${f} is not an optional device field (known: ${Object.keys(DEVICE_UNSET).join(', ')})`)
      if (field in patch) throw usage(`--unset ${f}: the same field is also being set`)
      // services is a list with a default: "unset" means none.
      patch[field] = field === 'services' ? [] : null
    }
    if (Object.keys(patch).length === 0) throw usage('device set: nothing to change; give at least one field flag or --unset')
    show(ctx, await request<Device>(ctx, 'PATCH', `/v1/devices/${seg(name!)}`, patch), showDevice)
  })

  handle(device.command('rm').argument('<name>').description('remove a device and its policy'), async (ctx, [name]) => {
    await request(ctx, 'DELETE', `/v1/devices/${seg(name!)}`)
    done(ctx, `removed device ${name!} and its policy`)
  })
}

// ---------------------------------------------------------------------------------------
// policy

interface PolicyOpts {
  file?: string
  allow?: string[]
  auth?: string
  ike?: string
  esp?: string
  ikeRekey?: string
  childRekey?: string
  dpd?: string
  rawTcp?: boolean
}

function policyOptions (cmd: Command): Command {
  return cmd
    .option('--file <path>', 'the policy as YAML or JSON (the API\'s fields); other flags override it')
    .option('--allow <rule>', 'who may reach which ports: "group:physicians,user:dr-grey tcp/8080,8443 [raw-tcp] [no-ipsec]"; repeat for several rules (replaces all rules)', collect)
    .option('--auth <mode>', 'psk or pubkey')
    .option('--ike <proposals>', 'IKE proposals, comma-separated, e.g. aes256gcm16-prfsha256-x25519')
    .option('--esp <proposals>', 'ESP proposals, comma-separated, e.g. aes256gcm16')
    .option('--ike-rekey <duration>', 'IKE SA rekey interval, e.g. 4h')
    .option('--child-rekey <duration>', 'CHILD SA rekey interval, e.g. 1h')
    .option('--dpd <duration>', 'dead peer detection interval, e.g. 30s')
    .option('--raw-tcp', 'allow raw TCP sessions (no IPsec) for rules marked raw-tcp')
    .option('--no-raw-tcp', 'forbid raw TCP sessions')
}

const hasPolicyFlags = (o: PolicyOpts): boolean =>
  [o.allow, o.auth, o.ike, o.esp, o.ikeRekey, o.childRekey, o.dpd, o.rawTcp].some((v) => v !== undefined)

function applyPolicyFlags (base: Record<string, unknown>, o: PolicyOpts): Record<string, unknown> {
  const p = { ...base }
  if (o.allow !== undefined) p.rules = o.allow.map(parseAllow)
  if (o.auth !== undefined) {
    if (o.auth !== 'psk' && o.auth !== 'pubkey') throw usage(`--auth: ${o.auth} must be psk or pubkey`)
    p.auth = o.auth
  }
  if (o.ike !== undefined) p.ike_proposals = csv(o.ike)
  if (o.esp !== undefined) p.esp_proposals = csv(o.esp)
  if (o.ikeRekey !== undefined) p.ike_rekey_s = durationSeconds(o.ikeRekey, '--ike-rekey')
  if (o.childRekey !== undefined) p.child_rekey_s = durationSeconds(o.childRekey, '--child-rekey')
  if (o.dpd !== undefined) p.dpd_s = durationSeconds(o.dpd, '--dpd')
  if (o.rawTcp !== undefined) p.raw_tcp = o.rawTcp
  return p
}

/**
 * The policy a `set` or `check` sends: the file, else the stored policy (so `--dpd 10s`
 * alone does not drop the rules), with the flags applied on top. Undefined when neither
 * a file nor a flag was given.
 */
async function policyBody (ctx: Ctx, device: string, o: PolicyOpts): Promise<Record<string, unknown> | undefined> {
  if (o.file === undefined && !hasPolicyFlags(o)) return undefined
  let base: Record<string, unknown>
  if (o.file !== undefined) {
    base = readYamlFile(o.file)
  } else {
    try {
      base = await request<Record<string, unknown>>(ctx, 'GET', `/v1/devices/${seg(device)}/policy`)
    } catch (err) {
      // A device without a policy yet starts from the API's defaults.
      if (!isBeckonError(err, 'BECKON_ERR_NOT_FOUND') || !/has no policy/.test(err.message)) throw err
      base = {}
    }
  }
  return applyPolicyFlags(base, o)
}

function registerPolicy (program: Command): void {
  const policy = group(program, 'policy', 'per-device IPsec policies: who may reach which ports, with which proposals')

  handle(policy.command('show').argument('<device>').description('the device\'s policy'), async (ctx, [device]) => {
    show(ctx, await request<Policy>(ctx, 'GET', `/v1/devices/${seg(device!)}/policy`), showPolicy)
  })

  handle<PolicyOpts>(policyOptions(policy.command('set').argument('<device>').description('set the policy from --file and/or flags (flags alone change the stored policy); validated by the API first')), async (ctx, [device], o) => {
    const body = await policyBody(ctx, device!, o)
    if (body === undefined) throw usage('policy set: give --file or at least one policy flag (--allow, --auth, --ike, --esp, --ike-rekey, --child-rekey, --dpd, --raw-tcp)')
    show(ctx, await request<Policy>(ctx, 'PUT', `/v1/devices/${seg(device!)}/policy`, body), showPolicy)
  })

  handle<PolicyOpts>(policyOptions(policy.command('check').argument('<device>').description('validate a policy (the stored one, or --file/flags) and try its connection in charon')), async (ctx, [device], o) => {
    // No body (no file, no flag): the API checks the stored policy.
    const body = await policyBody(ctx, device!, o)
    const r = await request<{ ok: boolean, verdict: string, connection: unknown }>(ctx, 'POST', `/v1/devices/${seg(device!)}/policy/check`, body)
    show(ctx, r, (x) => `${x.ok ? 'ok' : 'failed'}: ${x.verdict}\n${JSON.stringify(x.connection, null, 2)}\n`)
  })

  handle(policy.command('rm').argument('<device>').description('remove the policy: nobody may reach the device'), async (ctx, [device]) => {
    await request(ctx, 'DELETE', `/v1/devices/${seg(device!)}/policy`)
    done(ctx, `removed the policy of device ${device!}`)
  })
}

// ---------------------------------------------------------------------------------------
// user, group, gateway

interface UserView { name: string, groups: string[], address: string, has_password: boolean, tokens: number }
interface UserOpts { passwordStdin?: boolean, groups?: string, address?: string, unset?: string[] }

const showUser = (u: UserView): string => record(u as unknown as Record<string, unknown>)

function registerPrincipals (program: Command): void {
  const user = group(program, 'user', 'local users (besides those of an LDAP directory)')
  const userFlags = (c: Command): Command => c
    .option('--password-stdin', 'read the password from stdin (hashed with scrypt by the API)')
    .option('--groups <list>', 'comma-separated group names')
    .option('--address <ipv6>', 'permanent address (default: derived from the name)')

  handle<UserOpts>(userFlags(user.command('add').argument('<name>').description('create a user')), async (ctx, [name], o) => {
    const body: Record<string, unknown> = { name }
    if (o.groups !== undefined) body.groups = csv(o.groups)
    if (o.address !== undefined) body.address = o.address
    if (o.passwordStdin === true) body.password = await readStdin(`password for ${name!}`)
    show(ctx, await request<UserView>(ctx, 'POST', '/v1/users', body), showUser)
  })

  handle(user.command('list').description('all local users'), async (ctx) => {
    const us = await request<UserView[]>(ctx, 'GET', '/v1/users')
    show(ctx, us, (l) => table(['NAME', 'GROUPS', 'ADDRESS', 'PASSWORD', 'TOKENS'], l.map((u) => [u.name, u.groups.join(','), u.address, u.has_password ? 'yes' : 'no', u.tokens])))
  })

  handle(user.command('show').argument('<name>').description('one user'), async (ctx, [name]) => {
    show(ctx, await request<UserView>(ctx, 'GET', `/v1/users/${seg(name!)}`), showUser)
  })

  handle<UserOpts>(userFlags(user.command('set').argument('<name>').description('change the given fields only (--groups replaces the list)'))
    .option('--unset <field>', 'remove: address, groups; repeatable', collect), async (ctx, [name], o) => {
    const patch: Record<string, unknown> = {}
    if (o.groups !== undefined) patch.groups = csv(o.groups)
    if (o.address !== undefined) patch.address = o.address
    // The stored hash goes; the API hashes the new password.
    if (o.passwordStdin === true) Object.assign(patch, { password: await readStdin(`new password for ${name!}`), password_hash: null })
    // No "--unset password": the API keeps a user's hash unless a new password replaces it.
    for (const f of o.unset ?? []) {
      const field = ({ address: 'address', groups: 'groups' } as Record<string, string>)[f]
      if (field === undefined) throw usage(`--unset: ${f} is not one of address, groups`)
      if (field in patch) throw usage(`--unset ${f}: the same field is also being set`)
      patch[field] = field === 'groups' ? [] : null
    }
    if (Object.keys(patch).length === 0) throw usage('user set: nothing to change; give --password-stdin, --groups, --address or --unset')
    show(ctx, await request<UserView>(ctx, 'PATCH', `/v1/users/${seg(name!)}`, patch), showUser)
  })

  handle(user.command('rm').argument('<name>').description('remove a user'), async (ctx, [name]) => {
    await request(ctx, 'DELETE', `/v1/users/${seg(name!)}`)
    done(ctx, `removed user ${name!}`)
  })

  const grp = group(program, 'group', 'local groups that policies name')
  handle<{ description?: string }>(grp.command('add').argument('<name>').description('create a group').option('--description <text>', 'what the group is for'), async (ctx, [name], o) => {
    show(ctx, await request<Group>(ctx, 'POST', '/v1/groups', { name, ...(o.description === undefined ? {} : { description: o.description }) }), (g) => record(g))
  })
  handle(grp.command('list').description('all groups'), async (ctx) => {
    show(ctx, await request<Group[]>(ctx, 'GET', '/v1/groups'), (l) => table(['NAME', 'DESCRIPTION'], l.map((g) => [g.name, g.description])))
  })
  handle(grp.command('show').argument('<name>').description('one group'), async (ctx, [name]) => {
    show(ctx, await request<Group>(ctx, 'GET', `/v1/groups/${seg(name!)}`), (g) => record(g))
  })
  handle(grp.command('rm').argument('<name>').description('remove a group'), async (ctx, [name]) => {
    await request(ctx, 'DELETE', `/v1/groups/${seg(name!)}`)
    done(ctx, `removed group ${name!}`)
  })

  // `beckon gateway` already runs the gateway role (cli/roles.ts): add, list, show and rm
  // become its subcommands, and `beckon gateway [--config …]` still starts the role.
  const gw = program.commands.find((c) => c.name() === 'gateway') ?? group(program, 'gateway', 'carrier-side gateways (signals are sealed for their keys)')
  handle<{ publicKey: string, description?: string }>(gw.command('add').argument('<name>').description('register a gateway')
    .requiredOption('--public-key <key>', 'the gateway\'s X25519 public key (beckon keygen x25519)')
    .option('--description <text>', 'where it is, which carrier'), async (ctx, [name], o) => {
    const body = { name, public_key: o.publicKey, ...(o.description === undefined ? {} : { description: o.description }) }
    show(ctx, await request<Gateway>(ctx, 'POST', '/v1/gateways', body), (g) => record(g))
  })
  handle(gw.command('list').description('all gateways'), async (ctx) => {
    show(ctx, await request<Gateway[]>(ctx, 'GET', '/v1/gateways'), (l) => table(['NAME', 'PUBLIC-KEY', 'DESCRIPTION'], l.map((g) => [g.name, g.public_key, g.description])))
  })
  handle(gw.command('show').argument('<name>').description('one gateway'), async (ctx, [name]) => {
    show(ctx, await request<Gateway>(ctx, 'GET', `/v1/gateways/${seg(name!)}`), (g) => record(g))
  })
  handle(gw.command('rm').argument('<name>').description('remove a gateway (refused while a device names it)'), async (ctx, [name]) => {
    await request(ctx, 'DELETE', `/v1/gateways/${seg(name!)}`)
    done(ctx, `removed gateway ${name!}`)
  })
}

// ---------------------------------------------------------------------------------------
// directory ldap

interface LdapOpts {
  url: string
  baseDn: string
  bindDn?: string
  bindPasswordStdin?: boolean
  starttls?: boolean
  ca?: string
  userFilter?: string
  groupAttribute?: string
  ldapTimeout?: string
}

const showLdap = (s: LdapSettings): string => record({ ...s, ...(s.ca_pem === undefined ? {} : { ca_pem: `(${s.ca_pem.length} bytes of PEM)` }) })

function registerDirectory (program: Command): void {
  const directory = group(program, 'directory', 'the user directory the relay checks credentials against')
  const ldap = codedUsage(directory.command('ldap').description('the LDAP connection (admin scope)'))
  const path = '/v1/directory/ldap'

  handle(ldap.command('show').description('the LDAP connection (the bind password shows as [redacted])'), async (ctx) => {
    show(ctx, await request<LdapSettings>(ctx, 'GET', path), showLdap)
  })

  handle<LdapOpts>(ldap.command('set').description('set the LDAP connection (replaces it; the stored bind password is kept unless a new one is given)')
    .requiredOption('--url <url>', 'ldap://host[:port] (with --starttls) or ldaps://host[:port]')
    .requiredOption('--base-dn <dn>', 'where users are searched')
    .option('--bind-dn <dn>', 'service account (anonymous when absent)')
    .option('--bind-password-stdin', 'read the service account\'s password from stdin')
    .option('--starttls', 'upgrade ldap:// with StartTLS')
    .option('--ca <file>', 'PEM CA of the directory\'s certificate (default: system store)')
    .option('--user-filter <filter>', '{user} is replaced by the escaped user name (API default (uid={user}))')
    .option('--group-attribute <attr>', 'group names from this attribute of the user entry (API default memberOf)')
    .option('--ldap-timeout <duration>', 'per directory operation (API default 3s)'), async (ctx, _args, o) => {
    const body: Record<string, unknown> = { url: o.url, base_dn: o.baseDn }
    if (o.bindDn !== undefined) body.bind_dn = o.bindDn
    if (o.starttls === true) body.starttls = true
    if (o.ca !== undefined) body.ca_pem = readPem(o.ca, '--ca')
    if (o.userFilter !== undefined) body.user_filter = o.userFilter
    if (o.groupAttribute !== undefined) body.group_attribute = o.groupAttribute
    if (o.ldapTimeout !== undefined) body.timeout_ms = parseDuration(o.ldapTimeout, '--ldap-timeout')
    if (o.bindPasswordStdin === true) body.bind_password = await readStdin('LDAP bind password')
    show(ctx, await request<LdapSettings>(ctx, 'PUT', path, body), showLdap)
  }, { apiCaFlag: '--api-ca' })

  handle(ldap.command('test').description('bind the service account now'), async (ctx) => {
    const r = await request<{ ok: boolean, ms?: number, detail?: string }>(ctx, 'POST', `${path}/test`)
    show(ctx, r, (x) => `${x.ok ? 'ok' : 'failed'}${x.ms === undefined ? '' : ` in ${x.ms} ms`}${x.detail === undefined ? '' : `: ${x.detail}`}\n`)
  })

  handle(ldap.command('rm').description('stop using LDAP'), async (ctx) => {
    await request(ctx, 'DELETE', path)
    done(ctx, 'removed the LDAP directory')
  })
}

// ---------------------------------------------------------------------------------------
// token, session, audit

type TokenView = Omit<TokenRecord, 'hash'>

function registerTokens (program: Command): void {
  const token = group(program, 'token', 'API tokens (admin scope)')

  handle<{ name: string, scopes: string }>(token.command('create').description('create a token; its secret is shown this once')
    .requiredOption('--name <name>', 'who or what uses it')
    .requiredOption('--scopes <list>', 'read, write, admin (each includes the ones before it)'), async (ctx, _args, o) => {
    const t = await request<TokenView & { token: string }>(ctx, 'POST', '/v1/tokens', { name: o.name, scopes: csv(o.scopes) })
    show(ctx, t, (x) => {
      process.stderr.write('the token is shown only now: store it (BECKON_TOKEN or token: in ~/.config/beckon/api.yaml)\n')
      return record(x as unknown as Record<string, unknown>)
    })
  })

  handle(token.command('list').description('all tokens (never their secrets)'), async (ctx) => {
    show(ctx, await request<TokenView[]>(ctx, 'GET', '/v1/tokens'), (l) => table(['ID', 'NAME', 'SCOPES', 'CREATED', 'REVOKED'],
      l.map((t) => [t.id, t.name, t.scopes.join(','), time(t.created_at), t.revoked_at === undefined ? '' : time(t.revoked_at)])))
  })

  handle(token.command('revoke').argument('<id>').description('revoke a token (kept, marked revoked)'), async (ctx, [id]) => {
    await request(ctx, 'DELETE', `/v1/tokens/${seg(id!)}`)
    done(ctx, `revoked token ${id!}`)
  })
}

const SESSION_COLUMNS = ['ID', 'USER', 'DEVICE', 'STAGE', 'CHANNEL', 'UP', 'DOWN', 'IKE', 'CHILD', 'STARTED']
const sessionRow = (s: SessionRecord): unknown[] => [s.id, s.user, s.device, s.stage, s.channel, bytes(s.bytes_up), bytes(s.bytes_down), s.ike_state, s.child_state, time(s.started_at)]

function registerSessions (program: Command): void {
  const session = group(program, 'session', 'rendezvous sessions: live and past')

  handle<{ live?: boolean, device?: string, user?: string, limit?: string }>(session.command('list').description('sessions, newest first')
    .option('--live', 'only sessions in progress')
    .option('--device <name>', 'only this device\'s')
    .option('--user <name>', 'only this user\'s')
    .option('--limit <n>', 'at most this many (API default 100, at most 500)'), async (ctx, _args, o) => {
    const q: Query = { live: o.live, device: o.device, user: o.user, limit: o.limit === undefined ? undefined : parseInt10(o.limit, '--limit', 1, 500) }
    show(ctx, await request<SessionRecord[]>(ctx, 'GET', '/v1/sessions', undefined, q), (l) => table(SESSION_COLUMNS, l.map(sessionRow)))
  })

  handle(session.command('show').argument('<id>').description('one session'), async (ctx, [id]) => {
    show(ctx, await request<SessionRecord>(ctx, 'GET', `/v1/sessions/${seg(id!)}`), (s) => record(s as unknown as Record<string, unknown>))
  })

  handle(session.command('kill').argument('<id>').description('end a live session (both ends unload its connection and secret)'), async (ctx, [id]) => {
    const r = await ctx.api().request<{ id: string, relay: string }>('DELETE', `/v1/sessions/${seg(id!)}`)
    if (r.status === 202) show(ctx, r.body!, (b) => `asked relay ${b.relay} to end session ${b.id}\n`)
    else done(ctx, `ended session ${id!}`)
  })
}

interface AuditOpts { actor?: string, action?: string, target?: string, since?: string, until?: string, limit?: string, all?: boolean }

function registerAudit (program: Command): void {
  const audit = codedUsage(program.command('audit').description('the audit log, newest first: every change, who made it, and every session\'s end'))
  handle<AuditOpts>(audit
    .option('--actor <actor>', 'e.g. token:<id>:<name> or relay:<name>')
    .option('--action <action>', 'exact (device.create) or a prefix ending in "." (session.)')
    .option('--target <kind/key>', 'e.g. device/patient-phone')
    .option('--since <when>', 'a duration ago (1h, 7d) or an ISO 8601 time')
    .option('--until <when>', 'a duration ago or an ISO 8601 time')
    .option('--limit <n>', 'entries per page (API default 100, at most 500)')
    .option('--all', 'follow the pages to the oldest entry'), async (ctx, _args, o) => {
    const limit = o.limit === undefined ? (o.all === true ? 500 : undefined) : parseInt10(o.limit, '--limit', 1, 500)
    const q: Query = {
      actor: o.actor,
      action: o.action,
      target: o.target,
      since: o.since === undefined ? undefined : parseSince(o.since, '--since'),
      until: o.until === undefined ? undefined : parseSince(o.until, '--until'),
      limit,
    }
    type Page = { entries: AuditEntry[], next?: number }
    let page = await request<Page>(ctx, 'GET', '/v1/audit', undefined, q)
    if (o.all === true) {
      const entries = [...page.entries]
      while (page.next !== undefined) {
        const before: number = page.next
        page = await request<Page>(ctx, 'GET', '/v1/audit', undefined, { ...q, before })
        entries.push(...page.entries)
        if (page.next !== undefined && page.next >= before) throw new BeckonError('BECKON_ERR_PROTOCOL', `audit paging does not advance (next ${page.next} after ${before})`)
      }
      page = { entries }
    }
    show(ctx, page, (p) => {
      if (p.next !== undefined) process.stderr.write(`older entries follow: --all, or --limit up to 500\n`)
      return table(['ID', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'OUTCOME'], p.entries.map((e) => [e.id, time(e.at), e.actor, e.action, e.target, e.outcome]))
    })
  })
}

/** Call after registerRoles: `gateway`'s management subcommands join the role command. */
export function registerManage (program: Command): void {
  registerDevice(program)
  registerPolicy(program)
  registerPrincipals(program)
  registerDirectory(program)
  registerTokens(program)
  registerSessions(program)
  registerAudit(program)
}
