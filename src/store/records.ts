/**
 * The control plane's records: what the store keeps and what the management API takes
 * and gives. One TypeBox schema per record serves three purposes: the API validates
 * bodies with it (and names the failing field), the OpenAPI document shows it, and
 * `beckon import` checks YAML-born records with it before they reach the store.
 *
 * Semantic checks that a JSON schema cannot express (proposal grammar, selector
 * overlap, references between records) live in src/ipsec/policy.ts and the API.
 */
import { Type, type Static } from 'typebox'

/** Device names are DNS labels: they become `<device>.<zone>` and CONNECT targets. */
export const DEVICE_NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
/** Users, groups, gateways: LDAP uids and cn values as people write them. */
export const PRINCIPAL_NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'

const Name = Type.String({ pattern: PRINCIPAL_NAME })
const DeviceName = Type.String({ pattern: DEVICE_NAME, maxLength: 63 })
const Port = Type.Integer({ minimum: 1, maximum: 65535 })
/** 32 raw bytes, base64url without padding (what `beckon keygen` prints). */
const RawKey = Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' })
const Ipv6 = Type.String({ format: 'ipv6' })
/** Seconds for IPsec lifetimes: up to 30 days, far below 2^31 ms once converted. */
const Seconds = (min: number, max: number, def: number): ReturnType<typeof Type.Integer> => Type.Integer({ minimum: min, maximum: max, default: def })

export const Service = Type.Object({
  name: Type.String({ pattern: DEVICE_NAME, maxLength: 63, description: 'application name, e.g. glucose' }),
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')], { default: 'tcp' }),
  port: Port,
  address: Type.Optional(Ipv6),
}, { additionalProperties: false })
export type Service = Static<typeof Service>

export const Channel = Type.Union([Type.Literal('sms'), Type.Literal('email')])
export type Channel = Static<typeof Channel>

export const Device = Type.Object({
  name: DeviceName,
  /** E.164 number the SMS signal is sent to. */
  msisdn: Type.Optional(Type.String({ pattern: '^\\+?[0-9]{3,15}$' })),
  /** The gateway mailbox that receives this device's e-mail signals. */
  email: Type.Optional(Type.String({ pattern: '^[^@\\s]{1,64}@[^@\\s]{1,253}$' })),
  /** Names the terminal inside e-mail signals; defaults to the device name. */
  email_reference: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9@._+-]+$' })),
  /** The gateway (by name) that serves this device's carrier network. */
  gateway: Name,
  /** The terminal agent's predetermined port, dialled by the gateway. */
  port: Type.Integer({ minimum: 1, maximum: 65535, default: 7400 }),
  channels: Type.Array(Channel, { minItems: 1, maxItems: 2, uniqueItems: true, default: ['sms'] }),
  /** How long the relay waits for the dial-back (eDRX/PSM devices need minutes). */
  wake_timeout_ms: Type.Integer({ minimum: 100, maximum: 86_400_000, default: 15_000 }),
  /** The agent's X25519 key: PSKs are sealed for it. */
  agent_public_key: Type.Optional(RawKey),
  /** Permanent IPv6 address of the terminal; derived from the name when absent. */
  address: Type.Optional(Ipv6),
  /** One permanent address per application where the device serves several. */
  services: Type.Array(Service, { maxItems: 64, default: [] }),
}, { additionalProperties: false })
export type Device = Static<typeof Device>

export const Gateway = Type.Object({
  name: Name,
  /** The gateway's X25519 key: signals are sealed for it. */
  public_key: RawKey,
  description: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false })
export type Gateway = Static<typeof Gateway>

export const User = Type.Object({
  name: Name,
  /** scrypt hash (`beckon hash-password`); absent for token-only users. */
  password_hash: Type.Optional(Type.String({ pattern: '^scrypt\\$\\d+\\$\\d+\\$\\d+\\$[\\w-]+\\$[\\w-]+$' })),
  groups: Type.Array(Name, { maxItems: 64, uniqueItems: true, default: [] }),
  /** Permanent IPv6 address; derived from the name when absent. */
  address: Type.Optional(Ipv6),
  /** SHA-256 (hex) of bearer tokens this user may CONNECT with. */
  token_sha256: Type.Optional(Type.Array(Type.String({ pattern: '^[a-f0-9]{64}$' }), { maxItems: 16 })),
}, { additionalProperties: false })
export type User = Static<typeof User>

export const Group = Type.Object({
  name: Name,
  description: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false })
export type Group = Static<typeof Group>

/** One grant: these users and groups may reach these ports. */
export const PolicyRule = Type.Object({
  users: Type.Array(Name, { maxItems: 256, uniqueItems: true, default: [] }),
  groups: Type.Array(Name, { maxItems: 64, uniqueItems: true, default: [] }),
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')], { default: 'tcp' }),
  /** The terminal's ports, enforced by the traffic selectors. Never empty: see policy.ts. */
  ports: Type.Array(Port, { minItems: 1, maxItems: 64, uniqueItems: true }),
  /** May open an IPsec session (selectors = these ports). */
  ipsec: Type.Boolean({ default: true }),
  /** May open a raw TCP session to one of these ports (needs policy.raw_tcp). */
  raw_tcp: Type.Boolean({ default: false }),
}, { additionalProperties: false })
export type PolicyRule = Static<typeof PolicyRule>

export const Policy = Type.Object({
  auth: Type.Union([Type.Literal('psk'), Type.Literal('pubkey')], { default: 'psk' }),
  rules: Type.Array(PolicyRule, { maxItems: 128, default: [] }),
  ike_proposals: Type.Array(Type.String({ minLength: 3, maxLength: 200 }), { minItems: 1, maxItems: 16, default: ['aes256gcm16-prfsha256-x25519'] }),
  esp_proposals: Type.Array(Type.String({ minLength: 3, maxLength: 200 }), { minItems: 1, maxItems: 16, default: ['aes256gcm16'] }),
  ike_rekey_s: Seconds(300, 30 * 86_400, 14_400),
  child_rekey_s: Seconds(60, 30 * 86_400, 3_600),
  /** Dead peer detection interval; also what re-detects a changed path. */
  dpd_s: Seconds(1, 3600, 30),
  /** Raw TCP (no IPsec) allowed at all for this device. */
  raw_tcp: Type.Boolean({ default: false }),
}, { additionalProperties: false })
export type Policy = Static<typeof Policy>

export const Scope = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')])
export type Scope = Static<typeof Scope>

/** An API token as stored: only the SHA-256 of the secret. */
export const TokenRecord = Type.Object({
  id: Type.String({ pattern: '^[a-f0-9]{16}$' }),
  name: Type.String({ minLength: 1, maxLength: 100 }),
  scopes: Type.Array(Scope, { minItems: 1, uniqueItems: true }),
  hash: Type.String({ pattern: '^[a-f0-9]{64}$' }),
  created_at: Type.Integer(),
  revoked_at: Type.Optional(Type.Integer()),
}, { additionalProperties: false })
export type TokenRecord = Static<typeof TokenRecord>

export const LdapSettings = Type.Object({
  /** ldap:// (with starttls) or ldaps:// */
  url: Type.String({ pattern: '^ldaps?://[^\\s/]+(:\\d{1,5})?/?$' }),
  starttls: Type.Boolean({ default: false }),
  /** PEM of the CA that signs the directory's certificate (none = system store). */
  ca_pem: Type.Optional(Type.String({ maxLength: 20_000 })),
  /** Service account for the user search; anonymous when absent. */
  bind_dn: Type.Optional(Type.String({ maxLength: 500 })),
  bind_password: Type.Optional(Type.String({ maxLength: 500 })),
  base_dn: Type.String({ minLength: 1, maxLength: 500 }),
  /** `{user}` is replaced by the escaped user name. */
  user_filter: Type.String({ default: '(uid={user})', maxLength: 500 }),
  /** Group names from this attribute of the user entry (its RDN value)... */
  group_attribute: Type.String({ default: 'memberOf', maxLength: 100 }),
  /** ...or from a search: `{dn}` and `{user}` are replaced. */
  group_search: Type.Optional(Type.Object({
    base_dn: Type.String({ minLength: 1, maxLength: 500 }),
    filter: Type.String({ maxLength: 500, default: '(member={dn})' }),
    name_attribute: Type.String({ maxLength: 100, default: 'cn' }),
  }, { additionalProperties: false })),
  timeout_ms: Type.Integer({ minimum: 100, maximum: 60_000, default: 3_000 }),
}, { additionalProperties: false })
export type LdapSettings = Static<typeof LdapSettings>

export const SessionStage = Type.Union([Type.Literal('authorized'), Type.Literal('signalled'), Type.Literal('called-back'), Type.Literal('connected'), Type.Literal('closed')])
export type SessionStage = Static<typeof SessionStage>

export const SessionRecord = Type.Object({
  id: Type.String({ pattern: '^[a-f0-9]{24}$' }),
  /** The relay instance that holds the session (several relays share a store). */
  relay: Type.String(),
  user: Type.String(),
  device: Type.String(),
  mode: Type.Union([Type.Literal('ipsec'), Type.Literal('tcp')]),
  port: Type.Optional(Type.Integer()),
  stage: SessionStage,
  channel: Type.Optional(Type.String()),
  fallback: Type.Array(Type.String()),
  bytes_up: Type.Integer(),
  bytes_down: Type.Integer(),
  ike_state: Type.Optional(Type.String()),
  child_state: Type.Optional(Type.String()),
  started_at: Type.Integer(),
  ended_at: Type.Optional(Type.Integer()),
  /** 'ok' or the error code that ended it. */
  outcome: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
  /** Set by the API; the holding relay ends the session. */
  kill_requested: Type.Optional(Type.String()),
})
export type SessionRecord = Static<typeof SessionRecord>

export const AuditEntry = Type.Object({
  id: Type.Integer(),
  at: Type.Integer({ description: 'ms since the epoch' }),
  actor: Type.String(),
  /** `device.create`, `policy.update`, `session.end`, `session.kill` … */
  action: Type.String(),
  target: Type.String(),
  before: Type.Optional(Type.Unknown()),
  after: Type.Optional(Type.Unknown()),
  /** Sessions: 'ok' or an error code. */
  outcome: Type.Optional(Type.String()),
  detail: Type.Optional(Type.Unknown()),
})
export type AuditEntry = Static<typeof AuditEntry>
