/**
 * `beckon doctor`: what a role needs from its host, each miss with the command that fixes it.
 *
 * Every check reads the filesystem under `root` (default `/`), so tests run the whole set
 * against a temporary directory standing in for /usr/lib/ipsec/plugins, /proc, /dev, /etc.
 * Things that cannot be faked with files (binding a port, dialling a peer, the live ESP probe,
 * the SMSC bind, the store) are functions in `DoctorEnv` with real defaults.
 *
 * Kernel ESP detection, most to least direct (first answer wins):
 *   1. /proc/modules lists esp4 (loaded now)
 *   2. /proc/config.gz, then /boot/config-<release>: CONFIG_INET_ESP=y, or =m with the module file
 *   3. /lib/modules/<release>/modules.builtin names esp4.ko, or the esp4.ko* file exists
 *   4. live probe (root only): add an ESP SA in a throwaway network namespace
 *      (`unshare -n ip xfrm state add … proto esp`); the kernel answers "Requested type
 *      not found" when it has no ESP. Containers often lack 1–3, so the probe settles it.
 * No answer → warn and use kernel-libipsec, which works on any kernel with a TUN device.
 *
 * Imports core/ and proto/ only; role config parsers and channel probes come in from cli/.
 */
import { spawn } from 'node:child_process'
import { constants, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs'
import { createServer, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { parse as parseYaml } from 'yaml'
import { toBeckonError } from '../core/errors.js'
import { applyEnv, type Obj } from '../core/config.js'

export type Role = 'relay' | 'gateway' | 'agent' | 'client'
export const ROLES: readonly Role[] = ['relay', 'gateway', 'agent', 'client']
export type CheckStatus = 'ok' | 'warn' | 'fail'

export interface CheckResult {
  id: string
  status: CheckStatus
  /** What was found, in one line. */
  found: string
  /** How to fix it (absent when ok). */
  fix?: string
}

const APT = 'apt-get install --no-install-recommends'

/** Debian 12 (strongSwan 5.9.8): the package that ships each plugin doctor checks. */
export const PLUGIN_PACKAGES: Record<string, string> = {
  openssl: 'libstrongswan-standard-plugins',
  kdf: 'libstrongswan',
  nonce: 'libstrongswan',
  random: 'libstrongswan',
  'kernel-netlink': 'libstrongswan',
  'kernel-libipsec': 'libcharon-extra-plugins',
  'socket-default': 'strongswan-libcharon',
  vici: 'strongswan-swanctl',
}

/** Roles that drive a local charon over VICI (relay and gateway only splice ciphertext). */
const CHARON_ROLES = new Set<Role>(['agent', 'client'])

export interface ListenSpec { name: string, host: string, port: number }

export interface RoleConfigInfo {
  /** Sockets the role will listen on. */
  listens: ListenSpec[]
  /** Files the config names that must exist (TLS, IPsec certificates …): key path → file. */
  files: Array<[string, string]>
  /** charon's VICI URI when the role drives charon. */
  vici?: string
}

export interface OnlineProbes {
  /** Resolves once bound; rejects with the reason. */
  smppBind?: (o: { url: string, systemId: string, password: string, mode: 'transmitter' | 'receiver' }) => Promise<void>
  smtpLogin?: (cfg: Obj) => Promise<void>
  imapLogin?: (cfg: Obj) => Promise<void>
  /** The control plane's store (SQLite/PostgreSQL): resolves with a short description. */
  store?: (cfg: Obj) => Promise<string>
  /** host:port of the relay's dial-back listener, for a gateway's check. */
  dialback?: string
}

export interface DoctorEnv {
  role?: Role
  /** Prefix for every filesystem path ('' = the live system). */
  root: string
  configPath?: string
  /** BECKON_* overrides as the daemon would see them (default: none). */
  environ?: NodeJS.ProcessEnv
  /** Parses the role config the way the daemon will (from cli/, which may import roles/). */
  parseConfig?: (role: Role, obj: Obj, source: string) => void
  serviceUser: string
  /** Defaults to the config's, then unix:///var/run/charon.vici. */
  viciUri?: string
  kernelRelease: string
  now: () => number
  /** true/false when the kernel surely has/lacks ESP; undefined when unknown. */
  probeEsp: () => Promise<boolean | undefined>
  portFree: (host: string, port: number) => Promise<NodeJS.ErrnoException | undefined>
  tcpReachable: (host: string, port: number, timeoutMs: number) => Promise<void>
  /** Directory for the clock check's fresh file. */
  tmp: string
  online?: OnlineProbes
  timeoutMs: number
}

export function defaultEnv (over: Partial<DoctorEnv> = {}): DoctorEnv {
  let release = ''
  try { release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() } catch {}
  return {
    root: '',
    serviceUser: 'beckon',
    kernelRelease: release,
    now: Date.now,
    probeEsp: liveEspProbe,
    portFree,
    tcpReachable,
    tmp: tmpdir(),
    timeoutMs: 5_000,
    ...over,
  }
}

// ---------------------------------------------------------------------------------------
// real probes

/** Binds and releases host:port; returns the error when it cannot. */
export function portFree (host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err))
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(undefined)))
  })
}

export function tcpReachable (host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host, port })
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); s.end(); resolve() })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

/** See the module comment, step 4. A throwaway namespace: nothing to clean up. */
export function liveEspProbe (): Promise<boolean | undefined> {
  if (process.getuid?.() !== 0) return Promise.resolve(undefined)
  const key = '0x' + '11'.repeat(16)
  const args = ['-n', 'ip', 'xfrm', 'state', 'add', 'src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp', 'spi', '0x100',
    'enc', 'cbc(aes)', key, 'auth-trunc', 'hmac(sha256)', key + '11'.repeat(16), '128']
  return new Promise((resolve) => {
    let err = ''
    const p = spawn('unshare', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    p.stderr.on('data', (c: Buffer) => { err += String(c) })
    p.once('error', () => resolve(undefined))
    p.once('exit', (code) => {
      if (code === 0) resolve(true)
      else if (/Requested type not found|Protocol not supported/i.test(err)) resolve(false)
      else resolve(undefined)
    })
  })
}

// ---------------------------------------------------------------------------------------
// filesystem helpers under the root

function at (env: DoctorEnv, p: string): string { return env.root === '' ? p : join(env.root, p) }
function statOf (p: string): Stats | undefined { try { return statSync(p) } catch { return undefined } }
function readText (p: string): string | undefined { try { return readFileSync(p, 'utf8') } catch { return undefined } }

interface Account { uid: number, gid: number, groups: number[] }

/** The service user from <root>/etc/passwd and /etc/group (no NSS: doctor must work on a fake root). */
export function lookupAccount (root: string, name: string): Account | undefined {
  const passwd = readText(join(root || '/', 'etc/passwd')) ?? ''
  const line = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name)
  if (line === undefined) return undefined
  const uid = Number(line[2]); const gid = Number(line[3])
  const groups = [gid]
  for (const g of (readText(join(root || '/', 'etc/group')) ?? '').split('\n')) {
    const f = g.split(':')
    if (f.length >= 4 && f[3]!.split(',').includes(name)) groups.push(Number(f[2]))
  }
  return { uid, gid, groups }
}

/** connect(2) on a unix socket needs write permission on it. */
function mayConnect (st: Stats, a: Account): boolean {
  if (a.uid === 0) return true
  if (st.uid === a.uid) return (st.mode & constants.S_IWUSR) !== 0
  if (a.groups.includes(st.gid)) return (st.mode & constants.S_IWGRP) !== 0
  return (st.mode & constants.S_IWOTH) !== 0
}

function groupName (root: string, gid: number): string {
  const line = (readText(join(root || '/', 'etc/group')) ?? '').split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === gid && f[0] !== '')
  return line?.[0] ?? String(gid)
}

// ---------------------------------------------------------------------------------------
// kernel ESP

export interface EspAnswer { esp: boolean | undefined, source: string }

function espFromConfig (text: string, root: string, release: string): boolean | undefined {
  const m = /^CONFIG_INET_ESP=(y|m)$/m.exec(text)
  if (m?.[1] === 'y') return true
  if (m?.[1] === 'm') return moduleFile(root, release)
  if (/^# CONFIG_INET_ESP is not set$/m.test(text)) return false
  return undefined
}

function moduleFile (root: string, release: string): boolean {
  const dir = join(root || '/', 'lib/modules', release, 'kernel/net/ipv4')
  return ['esp4.ko', 'esp4.ko.xz', 'esp4.ko.zst', 'esp4.ko.gz'].some((f) => existsSync(join(dir, f)))
}

export async function detectKernelEsp (env: DoctorEnv): Promise<EspAnswer> {
  const mods = readText(at(env, '/proc/modules'))
  if (mods !== undefined && /^esp4 /m.test(mods)) return { esp: true, source: '/proc/modules lists esp4' }
  const gz = at(env, '/proc/config.gz')
  if (existsSync(gz)) {
    try {
      const v = espFromConfig(gunzipSync(readFileSync(gz)).toString('utf8'), env.root, env.kernelRelease)
      if (v !== undefined) return { esp: v, source: '/proc/config.gz' }
    } catch {}
  }
  const boot = readText(at(env, `/boot/config-${env.kernelRelease}`))
  if (boot !== undefined) {
    const v = espFromConfig(boot, env.root, env.kernelRelease)
    if (v !== undefined) return { esp: v, source: `/boot/config-${env.kernelRelease}` }
  }
  const builtin = readText(at(env, `/lib/modules/${env.kernelRelease}/modules.builtin`))
  if (builtin !== undefined && /\/esp4\.ko$/m.test(builtin)) return { esp: true, source: 'modules.builtin' }
  if (env.kernelRelease !== '' && moduleFile(env.root, env.kernelRelease)) return { esp: true, source: 'esp4 module file' }
  const probed = await env.probeEsp()
  if (probed !== undefined) return { esp: probed, source: 'probe: ESP SA in a throwaway namespace' }
  return { esp: undefined, source: 'no kernel config, module list or probe answered' }
}

// ---------------------------------------------------------------------------------------
// checks

const ok = (id: string, found: string): CheckResult => ({ id, status: 'ok', found })
const warn = (id: string, found: string, fix: string): CheckResult => ({ id, status: 'warn', found, fix })
const fail = (id: string, found: string, fix: string): CheckResult => ({ id, status: 'fail', found, fix })

function checkCharon (env: DoctorEnv, esp: EspAnswer): CheckResult[] {
  const out: CheckResult[] = []
  const bin = at(env, '/usr/lib/ipsec/charon')
  out.push(existsSync(bin) ? ok('charon', bin) : fail('charon', `${bin} missing`, `${APT} strongswan-charon`))
  const kernelPlugins = esp.esp === true ? ['kernel-netlink'] : ['kernel-libipsec', 'kernel-netlink']
  for (const p of ['openssl', 'kdf', 'nonce', 'random', 'socket-default', 'vici', ...kernelPlugins]) {
    const f = at(env, `/usr/lib/ipsec/plugins/libstrongswan-${p}.so`)
    out.push(existsSync(f) ? ok(`plugin:${p}`, f) : fail(`plugin:${p}`, `${f} missing`, `${APT} ${PLUGIN_PACKAGES[p]}`))
  }
  out.push(esp.esp === undefined
    ? warn('kernel-esp', `unknown (${esp.source})`, 'use kernel-libipsec (appliance/install.sh does when unsure); it needs /dev/net/tun')
    : ok('kernel-esp', `${esp.esp ? 'yes: kernel-netlink does ESP' : 'no: ESP runs in userspace (kernel-libipsec)'} (${esp.source})`))
  if (esp.esp !== true) {
    const tun = at(env, '/dev/net/tun')
    const st = statOf(tun)
    // A fake root has a plain file standing in for the character device.
    const good = st !== undefined && (env.root !== '' || st.isCharacterDevice())
    out.push(good ? ok('tun', tun) : fail('tun', `${tun} missing (kernel-libipsec needs it)`, 'modprobe tun (CONFIG_TUN); in a container pass --device /dev/net/tun'))
  }
  const xfrm = at(env, '/proc/net/xfrm_stat')
  out.push(existsSync(xfrm) ? ok('xfrm', xfrm) : fail('xfrm', `${xfrm} missing: no XFRM in this kernel`, 'a kernel with CONFIG_XFRM_USER (every Debian kernel has it)'))
  return out
}

function checkVici (env: DoctorEnv, uri: string): CheckResult {
  if (!uri.startsWith('unix://')) return warn('vici-socket', `${uri} is not a unix socket: not checked`, 'use unix:// (tcp:// is unauthenticated)')
  const path = at(env, uri.slice('unix://'.length))
  const st = statOf(path)
  if (st === undefined) return fail('vici-socket', `${path} missing: charon not running, or vici not loaded`, 'systemctl start strongswan (package charon-systemd); check charon.plugins.vici.socket')
  if (!st.isSocket()) return fail('vici-socket', `${path} is not a socket`, 'remove it and restart charon')
  const acct = lookupAccount(env.root, env.serviceUser)
  if (acct === undefined) return fail('vici-socket', `user ${env.serviceUser} does not exist`, 'appliance/install.sh <role> creates it')
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
  const desc = `${path} ${mode} uid ${st.uid} group ${groupName(env.root, st.gid)}`
  return mayConnect(st, acct)
    ? ok('vici-socket', `${desc}: ${env.serviceUser} may connect`)
    : fail('vici-socket', `${desc}: ${env.serviceUser} may not connect`,
      `set charon { group = ${env.serviceUser} } in /etc/strongswan.d/charon/beckon.conf (appliance/install.sh writes it), then restart charon`)
}

function checkTools (env: DoctorEnv): CheckResult[] {
  const nft = ['/usr/sbin/nft', '/sbin/nft'].map((p) => at(env, p)).find((p) => existsSync(p))
  const out = [nft !== undefined ? ok('nftables', nft) : fail('nftables', 'nft missing', `${APT} nftables`)]
  const acct = lookupAccount(env.root, env.serviceUser)
  out.push(acct !== undefined ? ok('service-user', `${env.serviceUser} uid ${acct.uid}`) : fail('service-user', `no user ${env.serviceUser}`, 'useradd --system --home /var/lib/beckon --shell /usr/sbin/nologin beckon (appliance/install.sh does)'))
  return out
}

/** Walks a parsed config for values that still hold the `REPLACE` marker. */
function replaceMarkers (v: unknown, path: string, out: string[]): void {
  if (typeof v === 'string') { if (v.includes('REPLACE')) out.push(path); return }
  if (Array.isArray(v)) { v.forEach((x, i) => replaceMarkers(x, `${path}[${i}]`, out)); return }
  if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) replaceMarkers(x, path === '' ? k : `${path}.${k}`, out)
}

function get (o: Obj, path: string): unknown {
  let cur: unknown = o
  for (const k of path.split('.')) cur = cur !== null && typeof cur === 'object' ? (cur as Obj)[k] : undefined
  return cur
}

/** Keys each role cannot run without (beyond what the parser already demands). */
const REQUIRED_KEYS: Record<Role, string[]> = {
  relay: ['keys.x25519_private', 'keys.ed25519_private'],
  gateway: ['keys.x25519_private', 'trusted_relays'],
  agent: ['relay_keys', 'device'],
  client: ['relay', 'user'],
}

function hostPort (v: unknown, fallback: string): { host: string, port: number } {
  const s = typeof v === 'string' ? v : fallback
  const i = s.lastIndexOf(':')
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) }
}

/** What doctor needs from a role config, read leniently (the parser is the strict judge). */
export function configInfo (role: Role, cfg: Obj): RoleConfigInfo {
  const listens: ListenSpec[] = []
  const files: Array<[string, string]> = []
  const file = (key: string): void => { const v = get(cfg, key); if (typeof v === 'string' && !v.includes('REPLACE')) files.push([key, v]) }
  if (role === 'relay') {
    listens.push({ name: 'client_listen', ...hostPort(cfg.client_listen, '0.0.0.0:8443') })
    listens.push({ name: 'dialback_listen', ...hostPort(cfg.dialback_listen, '0.0.0.0:7001') })
    if (typeof get(cfg, 'api.listen') === 'string') listens.push({ name: 'api.listen', ...hostPort(get(cfg, 'api.listen'), '127.0.0.1:8444') })
    file('tls.cert'); file('tls.key'); file('smtp.ca')
  }
  if (role === 'gateway') file('imap.ca')
  if (role === 'agent') listens.push({ name: 'listen', ...hostPort(cfg.listen, '0.0.0.0:7400') })
  if (role === 'agent' || role === 'client') { file('ipsec.pubkey.cert'); file('ipsec.pubkey.key'); file('ipsec.pubkey.ca') }
  if (role === 'client') file('ca')
  const vici = get(cfg, 'ipsec.vici')
  return { listens, files, vici: typeof vici === 'string' ? vici : undefined }
}

/** KEY=VALUE lines of a systemd EnvironmentFile (quotes stripped; no expansion, as systemd). */
function envFile (path: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of (readText(path) ?? '').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (m !== null) out[m[1]!] = m[2]!.trim().replace(/^(["'])(.*)\1$/, '$2')
  }
  return out
}

function checkConfig (env: DoctorEnv, role: Role): { results: CheckResult[], cfg: Obj | undefined } {
  const path = env.configPath ?? `/etc/beckon/${role}.yaml`
  const real = at(env, path)
  const text = readText(real)
  if (text === undefined) return { results: [fail('config', `${real} missing or unreadable`, `appliance/install.sh ${role} writes it from appliance/defaults/${role}.yaml`)], cfg: undefined }
  let cfg: Obj
  try {
    const v = parseYaml(text) as unknown
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('top level must be a mapping')
    cfg = v as Obj
  } catch (err) {
    return { results: [fail('config', `${real}: ${(err as Error).message.split('\n')[0]}`, 'fix the YAML syntax')], cfg: undefined }
  }
  // As the daemon sees it: the unit's EnvironmentFile, then this process's BECKON_* variables.
  applyEnv(cfg, role, { ...envFile(at(env, `/etc/default/beckon-${role}`)), ...(env.environ ?? {}) })
  const results: CheckResult[] = []
  const markers: string[] = []
  replaceMarkers(cfg, '', markers)
  results.push(markers.length === 0 ? ok('config-replace', 'no REPLACE markers') : fail('config-replace', `REPLACE left in ${markers.join(', ')}`, 'fill them in: beckon keygen x25519|ed25519, the peers\' public keys, passwords'))
  const missing = REQUIRED_KEYS[role].filter((k) => { const v = get(cfg, k); return v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) })
  results.push(missing.length === 0 ? ok('config-keys', `${REQUIRED_KEYS[role].join(', ')} present`) : fail('config-keys', `missing ${missing.join(', ')}`, `set them in ${path} (beckon keygen x25519|ed25519)`))
  const absent = configInfo(role, cfg).files.filter(([, f]) => !existsSync(at(env, f)))
  if (absent.length > 0) results.push(fail('config-files', absent.map(([k, f]) => `${k}: ${f} missing`).join('; '), 'create them (beckon ca issue …, your TLS certificate) or fix the paths'))
  if (env.parseConfig !== undefined && markers.length === 0) {
    try {
      env.parseConfig(role, cfg, path)
      results.unshift(ok('config', `${real} valid`))
    } catch (err) {
      results.unshift(fail('config', toBeckonError(err, 'BECKON_ERR_CONFIG').message, `fix ${path}`))
    }
  } else {
    results.unshift(ok('config', `${real} parses${markers.length > 0 ? ' (not validated until REPLACE markers are filled)' : ''}`))
  }
  return { results, cfg }
}

async function checkPorts (env: DoctorEnv, listens: ListenSpec[]): Promise<CheckResult[]> {
  const out: CheckResult[] = []
  for (const l of listens) {
    const err = await env.portFree(l.host, l.port)
    const id = `port:${l.port}`
    if (err === undefined) out.push(ok(id, `${l.name} ${l.host}:${l.port} free`))
    else if (err.code === 'EADDRINUSE') out.push(fail(id, `${l.name} ${l.host}:${l.port} in use`, `ss -ltnp 'sport = :${l.port}' names the holder; stop it (or beckon itself, if running) or change ${l.name}`))
    else out.push(fail(id, `${l.name} ${l.host}:${l.port}: ${err.code ?? err.message}`, `${l.host} must be an address of this host`))
  }
  return out
}

function checkClock (env: DoctorEnv): CheckResult {
  const now = env.now()
  const year = new Date(now).getUTCFullYear()
  if (year < 2024) return fail('clock', `year ${year}`, 'set the clock (systemd-timesyncd / chrony): signals expire and certificates check dates')
  // A fresh file's mtime comes from the kernel's clock, as the filesystem sees it.
  const dir = mkdtempSync(join(env.tmp, 'beckon-doctor-'))
  try {
    const f = join(dir, 'now')
    writeFileSync(f, '')
    const skew = Math.abs(statSync(f).mtimeMs - now)
    return skew > 120_000
      ? fail('clock', `${Math.round(skew / 1000)} s from a fresh file's mtime`, 'the process clock disagrees with the filesystem: check the time namespace / NTP')
      : ok('clock', `${new Date(now).toISOString()} (file mtime within ${Math.round(skew)} ms)`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function timed<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })])
  } finally { clearTimeout(timer) }
}

async function checkOnline (env: DoctorEnv, role: Role, cfg: Obj | undefined): Promise<CheckResult[]> {
  const out: CheckResult[] = []
  const on = env.online ?? {}
  const probe = async (id: string, run: () => Promise<string>, fix: string): Promise<void> => {
    try { out.push(ok(id, await timed(run(), env.timeoutMs, id))) } catch (err) { out.push(fail(id, (err as Error).message, fix)) }
  }
  const c = cfg ?? {}
  const smpp = get(c, 'smpp') as Obj | undefined
  if ((role === 'relay' || role === 'gateway') && smpp !== undefined) {
    if (on.smppBind === undefined) out.push(warn('smpp-bind', 'no SMPP probe in this build', 'run beckon doctor from the beckon command'))
    else {
      const mode = role === 'relay' ? 'transmitter' : 'receiver'
      await probe('smpp-bind', async () => {
        await on.smppBind!({ url: String(smpp.url), systemId: String(smpp.system_id), password: String(smpp.password), mode })
        return `${mode} bound to ${String(smpp.url)} as ${String(smpp.system_id)}`
      }, 'check smpp.url, system_id and password with the SMSC operator')
    }
  }
  const smtp = get(c, 'smtp') as Obj | undefined
  if (role === 'relay' && smtp !== undefined && on.smtpLogin !== undefined) {
    await probe('smtp-login', async () => { await on.smtpLogin!(smtp); return `logged in to ${String(smtp.address)} as ${String(smtp.user)}` }, 'check smtp.address, user, password, ca')
  }
  const imap = get(c, 'imap') as Obj | undefined
  if (role === 'gateway' && imap !== undefined && on.imapLogin !== undefined) {
    await probe('imap-login', async () => { await on.imapLogin!(imap); return `logged in to ${String(imap.address)} as ${String(imap.user)}` }, 'check imap.address, user, password, ca')
  }
  let dialback: string | undefined
  if (role === 'gateway') dialback = on.dialback
  if (role === 'relay') dialback = `${typeof c.public_address === 'string' ? c.public_address : '127.0.0.1'}:${hostPort(c.dialback_listen, '0.0.0.0:7001').port}`
  if (dialback !== undefined) {
    const { host, port } = hostPort(dialback, '')
    await probe('dialback', async () => { await env.tcpReachable(host, port, env.timeoutMs); return `${host}:${port} accepts TCP` },
      role === 'relay' ? 'start the relay; open dialback port in the relay\'s firewall' : 'the gateway\'s egress must reach the relay\'s dial-back port')
  } else if (role === 'gateway') {
    out.push(warn('dialback', 'not checked', 'pass --dialback <relay host:port>'))
  }
  if (role === 'relay') {
    if (on.store === undefined) out.push(warn('store', 'no store probe wired in this build', 'none yet: the store check arrives with the control plane'))
    else await probe('store', () => on.store!(c), 'check store settings (SQLite path writable, PostgreSQL URL reachable)')
  }
  return out
}

/** Runs the checks for `env.role` (or the host checks of every role when none is given). */
export async function runDoctor (env: DoctorEnv, o: { online?: boolean } = {}): Promise<CheckResult[]> {
  const role = env.role
  const results: CheckResult[] = []
  const needsCharon = role === undefined || CHARON_ROLES.has(role)
  let cfg: Obj | undefined
  if (role !== undefined) {
    const c = checkConfig(env, role)
    results.push(...c.results)
    cfg = c.cfg
  }
  if (needsCharon) {
    results.push(...checkCharon(env, await detectKernelEsp(env)))
    const uri = env.viciUri ?? (cfg === undefined ? undefined : configInfo(role!, cfg).vici) ?? 'unix:///var/run/charon.vici'
    results.push(checkVici(env, uri))
  }
  results.push(...checkTools(env))
  if (role !== undefined && cfg !== undefined) results.push(...await checkPorts(env, configInfo(role, cfg).listens))
  results.push(checkClock(env))
  if (o.online === true && role !== undefined) results.push(...await checkOnline(env, role, cfg))
  return results
}

/** An aligned table; each miss followed by its fix. */
export function formatTable (results: CheckResult[]): string {
  const w = Math.max(...results.map((r) => r.id.length), 2)
  const lines = results.map((r) => {
    const head = `${r.status.toUpperCase().padEnd(4)}  ${r.id.padEnd(w)}  ${r.found}`
    return r.fix === undefined || r.status === 'ok' ? head : `${head}\n${' '.repeat(8 + w)}fix: ${r.fix}`
  })
  const failed = results.filter((r) => r.status === 'fail').length
  const warned = results.filter((r) => r.status === 'warn').length
  return `${lines.join('\n')}\n${results.length} checks: ${failed} failed, ${warned} warnings\n`
}
