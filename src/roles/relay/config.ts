/**
 * relay.yaml — see docs/operations.md for a commented example.
 */
import type { KeyObject } from 'node:crypto'
import { Fields, type Obj } from '../../core/config.js'
import { BeckonError } from '../../core/errors.js'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../core/keys.js'
import { isDeviceName } from '../../proto/connect/connect.js'
import { isPasswordHash, type LocalUser } from '../../directory/directory.js'
import { permanentAddress, ulaPrefix } from '../../ipsec/addresses.js'

export type ChannelName = 'sms' | 'email'

export interface PolicyRule {
  users: string[]
  groups: string[]
  tcp: number[]
  ipsec: boolean
}

export interface DeviceConfig {
  name: string
  /** Permanent IPv6 address; derived from the name when not configured. */
  address: string
  /** The agent's X25519 key: PSKs are sealed for it (IPsec mode). */
  agentKey: KeyObject | undefined
  ipsecAuth: 'psk' | 'pubkey'
  msisdn: string | undefined
  /** The gateway mailbox that receives this device's e-mail signals. */
  email: string | undefined
  /** Names the terminal inside e-mail signals (the mailbox may serve many devices). */
  emailReference: string
  channels: ChannelName[]
  gatewayKey: KeyObject
  wakeTimeoutMs: number
  allow: PolicyRule[]
}

export interface IpsecDefaults {
  prefix: string
  domain: string
  auth: 'psk' | 'pubkey'
  ikeProposals: string[]
  espProposals: string[]
  ikeRekeyS: number
  childRekeyS: number
  dpdS: number
}

export interface RelayConfig {
  ipsec: IpsecDefaults
  /** Permanent IPv6 address per user (derived when not configured). */
  userAddresses: Map<string, string>
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
  maxPending: number
  perUserPerMinute: number
  smpp: { url: string, systemId: string, password: string, sourceAddr: string } | undefined
  smtp: { host: string, port: number, secure: boolean, user: string, password: string, from: string, ca: string | undefined, domain: string } | undefined
  users: LocalUser[]
  devices: Map<string, DeviceConfig>
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
  const keys = f.sub('keys')
  const dialbackListen = f.hostPort('dialback_listen', '0.0.0.0:7001')
  const tls = f.has('tls') ? { cert: f.sub('tls').str('cert'), key: f.sub('tls').str('key') } : undefined
  const smppF = f.sub('smpp')
  const smpp = f.has('smpp')
    ? { url: smppF.str('url'), systemId: smppF.str('system_id'), password: smppF.str('password'), sourceAddr: smppF.str('source_addr', 'beckon') }
    : undefined

  const ip = f.sub('ipsec')
  const authOf = (v: string, where: string): 'psk' | 'pubkey' => {
    if (v !== 'psk' && v !== 'pubkey') throw new BeckonError('BECKON_ERR_CONFIG', `${where} must be psk or pubkey`)
    return v
  }
  const ipsec: IpsecDefaults = {
    prefix: ip.str('prefix', 'fd00:beca::/48'),
    domain: ip.str('domain', 'beckon'),
    auth: authOf(ip.str('auth', 'psk'), `${ip.path}.auth`),
    ikeProposals: ip.strList('ike_proposals', ['aes256gcm16-prfsha256-x25519']),
    espProposals: ip.strList('esp_proposals', ['aes256gcm16']),
    ikeRekeyS: Math.round(ip.ms('ike_rekey', 4 * 3600_000) / 1000),
    childRekeyS: Math.round(ip.ms('child_rekey', 3600_000) / 1000),
    dpdS: Math.max(1, Math.round(ip.ms('dpd', 30_000) / 1000)),
  }
  try { ulaPrefix(ipsec.prefix) } catch (err) { throw new BeckonError('BECKON_ERR_CONFIG', `${ip.path}.prefix: ${(err as Error).message}`) }
  const userAddresses = new Map<string, string>()

  const users: LocalUser[] = f.entries('users').map(([name, u]) => {
    userAddresses.set(name, u.has('address') ? v6(u, 'address') : permanentAddress(ipsec.prefix, 'user', name))
    const passwordHash = u.optStr('password_hash')
    if (passwordHash !== undefined && !isPasswordHash(passwordHash)) {
      throw new BeckonError('BECKON_ERR_CONFIG', `${u.path}.password_hash must be a scrypt hash (beckon hash-password)`)
    }
    return { name, passwordHash, tokenHashes: u.strList('token_sha256', []), groups: u.strList('groups', []) }
  })

  const devices = new Map<string, DeviceConfig>()
  for (const [name, d] of f.entries('devices')) {
    if (!isDeviceName(name)) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: device names are DNS labels (a-z, 0-9, -)`)
    const channels = d.strList('channels', ['sms']).map((c) => {
      if (c !== 'sms' && c !== 'email') throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}.channels: unknown channel ${c}`)
      return c as ChannelName
    })
    const msisdn = d.optStr('msisdn')
    const email = d.optStr('email')
    if (channels.includes('sms') && msisdn === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: channel sms needs msisdn`)
    if (channels.includes('email') && email === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `${d.path}: channel email needs email`)
    devices.set(name, {
      name,
      address: d.has('address') ? v6(d, 'address') : permanentAddress(ipsec.prefix, 'device', name),
      agentKey: d.has('agent_public_key') ? publicKeyFromRaw('x25519', d.str('agent_public_key'), `${d.path}.agent_public_key`) : undefined,
      ipsecAuth: d.has('ipsec_auth') ? authOf(d.str('ipsec_auth'), `${d.path}.ipsec_auth`) : ipsec.auth,
      msisdn,
      email,
      emailReference: d.str('email_reference', name),
      channels,
      gatewayKey: publicKeyFromRaw('x25519', d.str('gateway_public_key'), `${d.path}.gateway_public_key`),
      wakeTimeoutMs: d.ms('wake_timeout', 15_000),
      allow: d.list('allow').map((r) => ({ users: r.strList('users', []), groups: r.strList('groups', []), tcp: ports(r, 'tcp'), ipsec: r.bool('ipsec', false) })),
    })
  }

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
  return {
    smtp,
    ipsec,
    userAddresses,
    clientListen: f.hostPort('client_listen', '0.0.0.0:8080'),
    tls,
    allowPlainBasic: f.bool('allow_plain_basic', false),
    dialbackListen,
    publicAddress: f.ip('public_address'),
    dialbackPort: f.num('dialback_port', dialbackListen.port, 0, 65535),
    x25519Private: privateKeyFromRaw('x25519', keys.str('x25519_private'), `${source}.keys.x25519_private`),
    ed25519Private: privateKeyFromRaw('ed25519', keys.str('ed25519_private'), `${source}.keys.ed25519_private`),
    signalTtlMs: f.ms('signal_ttl', 120_000),
    maxPending: f.num('max_pending', 1_000, 1),
    perUserPerMinute: f.num('rate_per_user_per_minute', 600, 1),
    smpp,
    users,
    devices,
  }
}
