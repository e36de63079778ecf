/**
 * relay.yaml — see docs/operations.md for a commented example.
 */
import type { KeyObject } from 'node:crypto'
import { Fields, type Obj } from '../../core/config.js'
import { BeckonError } from '../../core/errors.js'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../core/keys.js'
import { isDeviceName } from '../../proto/connect/connect.js'
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { checkSchema } from '../../core/schema.js'
import { isPasswordHash } from '../../directory/directory.js'
import { ulaPrefix } from '../../ipsec/addresses.js'
import { parseStoreConfig, type StoreSpec } from '../../store/open.js'
import { Device as DeviceSchema, Gateway as GatewaySchema, Policy as PolicySchema, User, type Device, type Gateway, type Policy, type PolicyRule } from '../../store/records.js'
import type { ImportBundle } from '../../store/store.js'

export interface RelayIpsec {
  /** The deployment's ULA /48: permanent addresses are derived in it. */
  prefix: string
  /** Suffix of IKE identities. */
  domain: string
}

export interface ApiListen {
  listen: { host: string, port: number }
  /** Absent: a self-signed certificate is made in the state directory at first start. */
  tls: { cert: string, key: string } | undefined
  /** charon's VICI socket for `policy/check` (the relay's own charon, when it has one). */
  vici: string | undefined
  rateLimit: { max: number, windowMs: number }
}

export interface RelayConfig {
  ipsec: RelayIpsec
  clientListen: { host: string, port: number }
  tls: { cert: string, key: string } | undefined
  allowPlainBasic: boolean
  dialbackListen: { host: string, port: number }
  /** The address and port put into signals: where gateways dial back. */
  publicAddress: string
  dialbackPort: number
  x25519Private: KeyObject
  ed25519Private: KeyObject
  signalTtlMs: number
  /**
   * How long an IPsec session whose TCP path broke may re-join (0: never; the ends unload
   * at once, as before). The agent keeps its side a little longer (RESUME_GRACE_S).
   */
  resumeWindowMs: number
  /** How long one re-join attempt waits for the dial-back (the device is awake). */
  resumeAttemptTimeoutMs: number
  maxPending: number
  perUserPerMinute: number
  smpp: { url: string, systemId: string, password: string, sourceAddr: string } | undefined
  smtp: { host: string, port: number, secure: boolean, user: string, password: string, from: string, ca: string | undefined, domain: string } | undefined
  /**
   * Devices, users, groups, gateways and policies written in the YAML (small
   * deployments, tests): served from memory, or moved into the store by `beckon import`.
   */
  seed: ImportBundle
  /** Where the control plane lives; absent: only the YAML seed, from memory. */
  store: StoreSpec | undefined
  stateDir: string
  /** Names this relay in session records (several relays share a store). */
  relayId: string
  api: ApiListen | undefined
  /** Steps A/B: publish the device zone into an authoritative server (src/dns/publisher.ts). */
  dns: RelayDns | undefined
}

/** relay.yaml `dns:` — the zone, the server taking TSIG-signed updates, the relays to publish. */
export interface RelayDns {
  server: { host: string, port: number }
  zone: string
  tsig: { name: string, algorithm: 'hmac-sha256', secret: Buffer }
  /** In SRV order; priority defaults to 10, 20, … by position. */
  relays: Array<{ host: string, address: string | undefined, port: number, priority: number, weight: number }>
  /** Seconds. */
  ttl: number
}

function v6 (f: Fields, key: string): string {
  const a = f.ip(key)
  if (!a.includes(':')) throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.${key} must be an IPv6 address`)
  return a
}

function ports (f: Fields, key: string): number[] {
  return f.strList(key, []).map((p) => {
    const n = Number(p)
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.${key}: ${p} is not a port`)
    return n
  })
}

export function parseRelayConfig (obj: Obj, source = 'relay.yaml'): RelayConfig {
  const f = new Fields(obj, source)
  known(f, ['client_listen', 'tls', 'allow_plain_basic', 'dialback_listen', 'public_address', 'dialback_port', 'keys', 'signal_ttl', 'max_pending',
    'rate_per_user_per_minute', 'smpp', 'smtp', 'ipsec', 'users', 'devices', 'gateways', 'store', 'state_dir', 'relay_id', 'api', 'dns', 'resume_window', 'resume_attempt_timeout'])
  const keys = f.sub('keys')
  const dialbackListen = f.hostPort('dialback_listen', '0.0.0.0:7001')
  const tls = f.has('tls') ? { cert: f.sub('tls').str('cert'), key: f.sub('tls').str('key') } : undefined
  const smppF = f.sub('smpp')
  const smpp = f.has('smpp')
    ? { url: smppF.str('url'), systemId: smppF.str('system_id'), password: smppF.str('password'), sourceAddr: smppF.str('source_addr', 'beckon') }
    : undefined

  const ip = f.sub('ipsec')
  const ipsec: RelayIpsec = { prefix: ip.str('prefix', 'fd00:beca::/48'), domain: ip.str('domain', 'beckon') }
  try { ulaPrefix(ipsec.prefix) } catch (err) { throw new BeckonError('BECKON_ERR_CONFIG', `${ip.path}.prefix: ${(err as Error).message}`) }
  const seed = yamlSeed(f, ip)
  const stateDir = f.str('state_dir', process.env.STATE_DIRECTORY?.split(':')[0] ?? '/var/lib/beckon')
  const api = f.sub('api')
  const apiTls = api.sub('tls')
  const sm = f.sub('smtp')
  const smtpAt = f.has('smtp') ? sm.hostPort('address') : undefined
  const smtp = smtpAt === undefined ? undefined : {
    ...smtpAt,
    secure: sm.bool('implicit_tls', smtpAt.port === 465),
    user: sm.str('user'),
    password: sm.str('password'),
    from: sm.str('from'),
    ca: sm.optStr('ca'),
    domain: sm.str('domain', 'beckon.invalid'),
  }
  const clientListen = f.hostPort('client_listen', '0.0.0.0:8080')
  return {
    smtp,
    ipsec,
    clientListen,
    dns: f.has('dns') ? parseDns(f.sub('dns'), clientListen.port) : undefined,
    tls,
    allowPlainBasic: f.bool('allow_plain_basic', false),
    dialbackListen,
    publicAddress: signalAddress(f),
    dialbackPort: f.num('dialback_port', dialbackListen.port, 0, 65535),
    x25519Private: privateKeyFromRaw('x25519', keys.str('x25519_private'), `${source}.keys.x25519_private`),
    ed25519Private: privateKeyFromRaw('ed25519', keys.str('ed25519_private'), `${source}.keys.ed25519_private`),
    signalTtlMs: f.ms('signal_ttl', 120_000),
    resumeWindowMs: f.ms('resume_window', 60_000),
    resumeAttemptTimeoutMs: f.ms('resume_attempt_timeout', 5_000),
    maxPending: f.num('max_pending', 1_000, 1),
    perUserPerMinute: f.num('rate_per_user_per_minute', 600, 1),
    smpp,
    seed,
    store: f.has('store') ? parseStoreConfig(f, { stateDir }) : undefined,
    stateDir,
    relayId: f.str('relay_id', hostname()),
    api: f.has('api') && api.bool('enabled', true)
      ? {
          listen: api.hostPort('listen', '127.0.0.1:8444'),
          tls: api.has('tls') ? { cert: apiTls.str('cert'), key: apiTls.str('key') } : undefined,
          vici: api.optStr('vici'),
          rateLimit: { max: api.num('rate_limit', 1200, 1), windowMs: 60_000 },
        }
      : undefined,
  }
}

const DOMAIN = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i

function parseDns (d: Fields, clientPort: number): RelayDns {
  known(d, ['server', 'zone', 'tsig', 'relays', 'ttl'])
  const zone = d.str('zone').replace(/\.$/, '')
  if (!DOMAIN.test(zone)) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}.zone: ${zone} is not a domain name`)
  const raw = d.str('server')
  const server = new Fields({ server: /:\d+$/.test(raw) ? raw : `${raw.includes(':') ? `[${raw}]` : raw}:53` }, d.path).hostPort('server')
  const t = d.sub('tsig')
  known(t, ['name', 'algorithm', 'secret'])
  const algorithm = t.str('algorithm', 'hmac-sha256')
  if (algorithm !== 'hmac-sha256') throw new BeckonError('BECKON_ERR_CONFIG', `${t.path}.algorithm: only hmac-sha256 (got ${algorithm})`)
  const b64 = t.str('secret').trim()
  const secret = Buffer.from(b64, 'base64')
  // The message names the key, never the value (it is a secret).
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0 || secret.length < 16) throw new BeckonError('BECKON_ERR_CONFIG', `${t.path}.secret must be base64 of at least 16 bytes (tsig-keygen prints one)`)
  const relays = d.list('relays').map((r, i) => {
    known(r, ['host', 'address', 'port', 'priority', 'weight'])
    const host = r.str('host').replace(/\.$/, '')
    if (!DOMAIN.test(host)) throw new BeckonError('BECKON_ERR_CONFIG', `${r.path}.host: ${host} is not a host name`)
    return { host, address: r.has('address') ? r.ip('address') : undefined, port: r.num('port', clientPort, 1, 65535), priority: r.num('priority', 10 * (i + 1), 0, 65535), weight: r.num('weight', 0, 0, 65535) }
  })
  if (relays.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}.relays: list at least one relay (host, address, port)`)
  return { server, zone, tsig: { name: t.str('name'), algorithm, secret }, relays, ttl: d.num('ttl', 30, 0, 86400) }
}

/**
 * The address put into every signal, where gateways dial back: one a gateway can dial.
 * Unspecified, multicast and IPv4-mapped IPv6 forms pass `isIP` but would be carried
 * (or dialled) as something else, after every SMS was spent.
 */
function signalAddress (f: Fields): string {
  const a = f.ip('public_address')
  const bad = /^(0\.0\.0\.0|::|::ffff:.*|2(2[4-9]|3\d)\..*|ff[0-9a-f]{2}:.*)$/i.test(a)
  if (bad) throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.public_address: ${a} cannot be dialled back (unspecified, multicast or IPv4-mapped); give the relay's public unicast address`)
  return a
}

/** A YAML rule `{ users, groups, tcp: [ports], ipsec }` as a policy rule. */
function yamlRule (r: Fields): PolicyRule {
  const tcp = ports(r, 'tcp')
  // A rule without ports would grant `protocol: any`, which agents always refuse, after
  // the signal and the dial-back are spent: refuse it here.
  if (tcp.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${r.path}.tcp: list the ports this rule grants (a rule without ports would grant every protocol, which agents refuse)`)
  const users = r.strList('users', [])
  const groups = r.strList('groups', [])
  if (users.length + groups.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${r.path}: name users or groups`)
  return { users, groups, protocol: 'tcp', ports: tcp, ipsec: r.bool('ipsec', false), raw_tcp: true }
}

/** relay.yaml's users and devices as store records (what `beckon import` writes). */
export function yamlSeed (f: Fields, ip: Fields): ImportBundle {
  const authOf = (v: string, where: string): 'psk' | 'pubkey' => {
    if (v !== 'psk' && v !== 'pubkey') throw new BeckonError('BECKON_ERR_CONFIG', `${where} must be psk or pubkey`)
    return v
  }
  const defaults = {
    auth: authOf(ip.str('auth', 'psk'), `${ip.path}.auth`),
    ike_proposals: ip.strList('ike_proposals', ['aes256gcm16-prfsha256-x25519']),
    esp_proposals: ip.strList('esp_proposals', ['aes256gcm16']),
    ike_rekey_s: Math.round(ip.ms('ike_rekey', 4 * 3600_000) / 1000),
    child_rekey_s: Math.round(ip.ms('child_rekey', 3600_000) / 1000),
    dpd_s: Math.max(1, Math.round(ip.ms('dpd', 30_000) / 1000)),
  }
  const groups = new Set<string>()
  const users: User[] = f.entries('users').map(([name, u]) => {
    known(u, ['password_hash', 'token_sha256', 'groups', 'address'])
    const passwordHash = u.optStr('password_hash')
    if (passwordHash !== undefined && !isPasswordHash(passwordHash)) {
      throw new BeckonError('BECKON_ERR_CONFIG', `${u.path}.password_hash must be a scrypt hash (beckon hash-password)`)
    }
    const rec = { name, groups: u.strList('groups', []), ...(passwordHash === undefined ? {} : { password_hash: passwordHash }), ...(u.has('token_sha256') ? { token_sha256: u.strList('token_sha256') } : {}), ...(u.has('address') ? { address: v6(u, 'address') } : {}) }
    rec.groups.forEach((g) => groups.add(g))
    return checkSchema<User>(User, rec, u.path, 'BECKON_ERR_CONFIG')
  })
  const gateways = new Map<string, Gateway>()
  for (const [name, g] of f.entries('gateways')) {
    known(g, ['public_key', 'description'])
    gateways.set(name, checkSchema<Gateway>(GatewaySchema, { name, public_key: g.str('public_key'), ...(g.has('description') ? { description: g.str('description') } : {}) }, g.path, 'BECKON_ERR_CONFIG'))
  }
  const devices: Device[] = []
  const policies: Record<string, Policy> = {}
  for (const [name, d] of f.entries('devices')) {
    known(d, ['msisdn', 'email', 'email_reference', 'channels', 'gateway', 'gateway_public_key', 'agent_public_key', 'ipsec_auth', 'wake_timeout', 'address', 'port', 'allow'])
    if (!isDeviceName(name)) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: device names are DNS labels (a-z, 0-9, -)`)
    // A device may name a gateway from `gateways:`, or carry the gateway's key itself.
    let gateway = d.optStr('gateway')
    if (gateway === undefined) {
      const key = d.str('gateway_public_key')
      publicKeyFromRaw('x25519', key, `${d.path}.gateway_public_key`)
      gateway = `gw-${createHash('sha256').update(key).digest('hex').slice(0, 12)}`
      gateways.set(gateway, { name: gateway, public_key: key, description: `from ${d.path}` })
    } else if (!gateways.has(gateway)) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}.gateway: no gateway ${gateway} under gateways:`)
    if (d.has('agent_public_key')) publicKeyFromRaw('x25519', d.str('agent_public_key'), `${d.path}.agent_public_key`)
    const channels = d.strList('channels', ['sms'])
    const dev = checkSchema<Device>(DeviceSchema, {
      name,
      gateway,
      channels,
      wake_timeout_ms: d.ms('wake_timeout', 15_000),
      ...(d.has('msisdn') ? { msisdn: d.str('msisdn') } : {}),
      ...(d.has('email') ? { email: d.str('email') } : {}),
      ...(d.has('email_reference') ? { email_reference: d.str('email_reference') } : {}),
      ...(d.has('agent_public_key') ? { agent_public_key: d.str('agent_public_key') } : {}),
      ...(d.has('address') ? { address: v6(d, 'address') } : {}),
      ...(d.has('port') ? { port: d.num('port', 7400, 1, 65535) } : {}),
    }, d.path, 'BECKON_ERR_CONFIG')
    if (dev.channels.includes('sms') && dev.msisdn === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: channel sms needs msisdn`)
    if (dev.channels.includes('email') && dev.email === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: channel email needs email`)
    devices.push(dev)
    const rules = d.list('allow').map(yamlRule)
    policies[name] = checkSchema<Policy>(PolicySchema, { ...defaults, auth: d.has('ipsec_auth') ? authOf(d.str('ipsec_auth'), `${d.path}.ipsec_auth`) : defaults.auth, rules, raw_tcp: rules.length > 0 }, `${d.path}.allow`, 'BECKON_ERR_CONFIG')
  }
  return { gateways: [...gateways.values()], groups: [...groups].map((name) => ({ name })), users, devices, policies }
}

/** Refuses keys the schema does not know: a typo must not pass unnoticed. */
function known (f: Fields, keys: readonly string[]): void { f.only(keys) }
