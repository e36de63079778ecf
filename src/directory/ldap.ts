/**
 * Users and groups from an LDAP directory (OpenLDAP, Active Directory, 389 DS …), on
 * ldapts. The classic "search, then bind" (RFC 4513 §5.1.3 simple bind; RFC 4511):
 *
 *   1. connect: ldaps:// (TLS from the first byte) or ldap:// with StartTLS (RFC 4511 §4.14)
 *   2. bind as the service account (or stay anonymous)
 *   3. search base_dn for user_filter with `{user}` replaced by the RFC 4515-escaped name;
 *      exactly one entry, or the login fails (sizeLimit 2 is enough to see "several")
 *   4. bind as that entry's DN with the given password: the directory checks it
 *   5. groups: the first RDN value of each DN in the entry's memberOf (or group_attribute),
 *      or, with group_search, the name_attribute of each group matching a second search
 *      run as the service account again
 *
 * An empty password is refused before any bind: RFC 4513 §5.1.2 makes a simple bind with
 * a DN and no password an *unauthenticated* bind, which many servers answer with success.
 *
 * Errors: only "no such user", "several such users" and invalidCredentials on the user's
 * own bind are BECKON_ERR_AUTH_FAILED; everything else (connect, TLS, timeout, the service
 * bind refused, any other result code) is BECKON_ERR_DIRECTORY_UNAVAILABLE, so an outage
 * is never mistaken for a wrong password nor, worse, for a right one.
 */
import { channel } from 'node:diagnostics_channel'
import { createHmac, randomBytes } from 'node:crypto'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { Client, InvalidCredentialsError, SizeLimitExceededError, type Entry } from 'ldapts'
import { BeckonError, isBeckonError } from '../core/errors.js'
import { silentLogger, type Logger } from '../core/log.js'
import type { Credentials } from '../proto/connect/connect.js'
import type { LdapSettings } from '../store/records.js'
import type { Directory, User } from './directory.js'

/** Published once per LDAP lookup (not for cache hits): `{ user, outcome, ms }`; never a password. */
export const ldapLookupChannel = channel('beckon:directory:ldap:lookup')

export interface LdapLookupEvent {
  user: string
  /** 'ok' or the error code. */
  outcome: string
  ms: number
}

/**
 * RFC 4515 §3 assertion-value escaping: `*`, `(`, `)`, `\` and NUL must be escaped; other
 * control characters are escaped too so that a log line shows what was searched.
 */
export function escapeFilterValue (v: string): string {
  return v.replace(/[*()\\\x00-\x1f\x7f]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/**
 * Replaces `{name}` placeholders in one pass, so a substituted value that itself reads
 * `{user}` stays literal. Values must already be escaped for where they land.
 */
export function fillTemplate (template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{(\w+)\}/g, (all, k: string) => Object.hasOwn(values, k) ? values[k]! : all)
}

/**
 * The value of a DN's first RDN (RFC 4514 §3), unescaped: `cn=physicians,ou=groups,…` →
 * `physicians`, `CN=Smith\, J.,OU=…` → `Smith, J.`. A multi-valued RDN gives its first
 * value; a hex-encoded (`#…`) value or a malformed DN gives undefined.
 */
export function firstRdnValue (dn: string): string | undefined {
  const eq = dn.indexOf('=')
  if (eq <= 0) return undefined
  const bytes: number[] = []
  let i = eq + 1
  if (dn[i] === '#') return undefined
  while (i < dn.length) {
    const ch = dn[i]!
    if (ch === ',' || ch === '+' || ch === ';') break
    if (ch === '\\') {
      const hex = dn.slice(i + 1, i + 3)
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16))
        i += 3
        continue
      }
      if (i + 1 >= dn.length) return undefined
      bytes.push(...Buffer.from(dn[i + 1]!, 'utf8'))
      i += 2
      continue
    }
    const cp = dn.codePointAt(i)!
    const s = String.fromCodePoint(cp)
    bytes.push(...Buffer.from(s, 'utf8'))
    i += s.length
  }
  const value = Buffer.from(bytes).toString('utf8').trim()
  return value === '' ? undefined : value
}

/** An attribute's values, whatever the casing the server used for its name. */
function attributeValues (entry: Entry, name: string): string[] {
  const want = name.toLowerCase()
  const out: string[] = []
  for (const [k, v] of Object.entries(entry)) {
    if (k === 'dn' || k.toLowerCase() !== want) continue
    for (const x of Array.isArray(v) ? v : [v]) out.push(Buffer.isBuffer(x) ? x.toString('utf8') : String(x))
  }
  return out
}

function unavailable (what: string, err: unknown): BeckonError {
  if (isBeckonError(err)) return err
  const msg = err instanceof Error ? err.message.split('\n')[0]! : String(err)
  return new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', `${what}: ${msg}`, { cause: err })
}

/**
 * One connection for one login: every step has its own deadline (timeout_ms), every
 * socket ldapts opens is tracked so that close() leaves nothing behind, whatever failed.
 */
class LdapSession {
  readonly client: Client
  private readonly sockets: Socket[] = []
  private readonly url: URL
  private steps = 0

  constructor (private readonly s: LdapSettings) {
    this.url = new URL(s.url)
    const track = <T extends Socket>(sock: T): T => { this.sockets.push(sock); return sock }
    const tlsOptions = this.tlsOptions()
    this.client = new Client({
      url: s.url,
      timeout: s.timeout_ms,
      connectTimeout: s.timeout_ms,
      // ldapts treats any tlsOptions as "connect with TLS": only for ldaps://.
      ...(this.url.protocol === 'ldaps:' ? { tlsOptions } : {}),
      createConnection: ((port: number, host: string) => track(netConnect(port, host))) as unknown as typeof netConnect,
      createSecureConnection: ((...args: unknown[]) => track((tlsConnect as (...a: unknown[]) => Socket)(...args))) as unknown as typeof tlsConnect,
    })
  }

  private host (): string {
    return this.url.hostname.replace(/^\[|\]$/g, '')
  }

  private tlsOptions (): ConnectionOptions {
    const host = this.host()
    return {
      minVersion: 'TLSv1.2',
      host,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(this.s.ca_pem === undefined ? {} : { ca: this.s.ca_pem }),
    }
  }

  /**
   * Runs one protocol step under timeout_ms (ldapts enforces the same per operation and
   * for the connect; this also bounds the StartTLS handshake, which ldapts does not). The
   * first step connects as well, so it gets twice the time. On expiry the connection is
   * torn down.
   */
  async step<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const budget = this.steps++ === 0 ? 2 * this.s.timeout_ms : this.s.timeout_ms
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        this.destroy()
        reject(new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', `${what}: timed out after ${budget} ms`))
      }, budget)
    })
    try {
      return await Promise.race([fn(), deadline])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Connects and, on ldap:// with starttls, upgrades; the TLS handshake is its own step. */
  async open (): Promise<void> {
    if (this.s.starttls) {
      try {
        await this.step('starttls', () => this.client.startTLS(this.tlsOptions()))
      } catch (err) { throw unavailable('starttls', err) }
    }
  }

  /** Simple bind; anonymous (no bind at all, or back to anonymous) without bind_dn. */
  async serviceBind (again = false): Promise<void> {
    try {
      if (this.s.bind_dn !== undefined) {
        await this.step('service bind', () => this.client.bind(this.s.bind_dn!, this.s.bind_password ?? ''))
      } else if (again) {
        await this.step('anonymous bind', () => this.client.bind(''))
      }
    } catch (err) {
      if (err instanceof InvalidCredentialsError) throw new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', `service bind refused for ${this.s.bind_dn ?? '(anonymous)'}`, { cause: err })
      throw unavailable('service bind', err)
    }
  }

  destroy (): void {
    for (const sock of this.sockets) sock.destroy()
  }

  async close (): Promise<void> {
    try {
      await this.step('unbind', () => this.client.unbind())
    } catch { /* the socket goes below either way */ }
    this.destroy()
  }
}

export interface LdapDirectoryOptions {
  /** How long a successful verification is remembered (0 = never). */
  cacheMs?: number
  /** For tests: the clock the cache reads. */
  now?: () => number
}

interface Verified {
  until: number
  user: User
}

const MAX_USER_LENGTH = 256

/**
 * A Directory backed by LDAP. A successful verification is remembered for `cacheMs`
 * under an HMAC of the credentials with a per-process key (never the password itself),
 * and concurrent identical logins share one lookup; failures are never remembered.
 */
export class LdapDirectory implements Directory {
  private readonly cacheKey = randomBytes(32)
  private readonly verified = new Map<string, Verified>()
  private readonly inFlight = new Map<string, Promise<User>>()
  private readonly cacheMs: number
  private readonly now: () => number
  /** The attribute a `(attr={user})` filter matches on: the canonical spelling of the name. */
  private readonly nameAttribute: string | undefined

  constructor (private readonly settings: LdapSettings, private readonly log: Logger = silentLogger, opts: LdapDirectoryOptions = {}) {
    checkSettings(settings)
    this.cacheMs = opts.cacheMs ?? 30_000
    this.now = opts.now ?? Date.now
    this.nameAttribute = /\(([A-Za-z][\w-]*)=\{user\}\)/.exec(settings.user_filter)?.[1]
  }

  async authenticate (c: Credentials): Promise<User> {
    if (c.scheme !== 'basic') throw new BeckonError('BECKON_ERR_AUTH_FAILED', 'LDAP takes Basic credentials only')
    if (c.user === '' || c.user.length > MAX_USER_LENGTH) throw new BeckonError('BECKON_ERR_AUTH_FAILED', 'invalid user name')
    // RFC 4513 §5.1.2: DN + empty password = unauthenticated bind, which "succeeds".
    if (c.password === '') throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${c.user}: empty password`)

    const mark = this.mark(c.user, c.password)
    const hit = this.verified.get(mark)
    if (hit !== undefined) {
      if (hit.until > this.now()) return copy(hit.user)
      this.verified.delete(mark)
    }
    let lookup = this.inFlight.get(mark)
    if (lookup === undefined) {
      lookup = this.lookup(c.user, c.password).finally(() => this.inFlight.delete(mark))
      this.inFlight.set(mark, lookup)
    }
    const user = await lookup
    if (this.cacheMs > 0) {
      if (this.verified.size > 10_000) this.verified.clear()
      this.verified.set(mark, { until: this.now() + this.cacheMs, user })
    }
    return copy(user)
  }

  /** Length-prefixed so that no (user, password) pair can collide with another. */
  private mark (user: string, password: string): string {
    const u = Buffer.from(user, 'utf8')
    const len = Buffer.alloc(4)
    len.writeUInt32BE(u.length)
    return createHmac('sha256', this.cacheKey).update(len).update(u).update(password, 'utf8').digest('base64')
  }

  private async lookup (name: string, password: string): Promise<User> {
    const started = Date.now()
    const session = new LdapSession(this.settings)
    let outcome = 'ok'
    try {
      return await this.verify(session, name, password)
    } catch (e) {
      const err = unavailable('ldap', e)
      outcome = err.code
      if (err.code === 'BECKON_ERR_AUTH_FAILED') this.log.debug({ user: name, reason: err.detail }, 'ldap: authentication failed')
      else this.log.warn({ user: name, url: this.settings.url, err: err.message }, 'ldap: directory unavailable')
      throw err
    } finally {
      await session.close()
      if (ldapLookupChannel.hasSubscribers) {
        ldapLookupChannel.publish({ user: name, outcome, ms: Date.now() - started } satisfies LdapLookupEvent)
      }
    }
  }

  private async verify (session: LdapSession, name: string, password: string): Promise<User> {
    const s = this.settings
    await session.open()
    await session.serviceBind()

    const escaped = escapeFilterValue(name)
    const filter = fillTemplate(s.user_filter, { user: escaped })
    const attributes = [s.group_search === undefined ? s.group_attribute : undefined, this.nameAttribute].filter((a): a is string => a !== undefined)
    let entries: Entry[]
    try {
      const res = await session.step('user search', () => session.client.search(s.base_dn, {
        scope: 'sub',
        filter,
        sizeLimit: 2,
        timeLimit: Math.ceil(s.timeout_ms / 1000),
        attributes: attributes.length === 0 ? ['1.1'] : attributes,
      }))
      entries = res.searchEntries
    } catch (err) {
      if (err instanceof SizeLimitExceededError) throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${name}: several entries match`)
      throw unavailable('user search', err)
    }
    if (entries.length !== 1) throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${name}: ${entries.length === 0 ? 'no entry' : 'several entries'} match`)
    const entry = entries[0]!
    if (entry.dn === '') throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${name}: entry without a DN`)

    try {
      await session.step('user bind', () => session.client.bind(entry.dn, password))
    } catch (err) {
      if (err instanceof InvalidCredentialsError) throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${name}: invalid credentials`)
      throw unavailable('user bind', err)
    }

    let groups: string[]
    if (s.group_search === undefined) {
      groups = attributeValues(entry, s.group_attribute).map(firstRdnValue).filter((g): g is string => g !== undefined)
    } else {
      const gs = s.group_search
      // Read groups with the service account's rights, not the user's.
      await session.serviceBind(true)
      try {
        const res = await session.step('group search', () => session.client.search(gs.base_dn, {
          scope: 'sub',
          filter: fillTemplate(gs.filter, { dn: escapeFilterValue(entry.dn), user: escaped }),
          sizeLimit: 1000,
          timeLimit: Math.ceil(s.timeout_ms / 1000),
          attributes: [gs.name_attribute],
        }))
        groups = res.searchEntries.flatMap((g) => attributeValues(g, gs.name_attribute).slice(0, 1))
      } catch (err) {
        throw unavailable('group search', err)
      }
    }

    const canonical = this.nameAttribute === undefined ? [] : attributeValues(entry, this.nameAttribute).filter((v) => v.toLowerCase() === name.toLowerCase())
    return { name: canonical.length === 1 ? canonical[0]! : name, groups: [...new Set(groups)] }
  }
}

function copy (u: User): User {
  return { name: u.name, groups: [...u.groups] }
}

/** The semantic checks the schema cannot express; named by key, at construction. */
function checkSettings (s: LdapSettings): void {
  const bad = (key: string, why: string): never => { throw new BeckonError('BECKON_ERR_CONFIG', `ldap.${key}: ${why}`) }
  let url: URL
  try { url = new URL(s.url) } catch { return bad('url', 'not a URL') }
  if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') bad('url', 'must be ldap:// or ldaps://')
  if (s.starttls && url.protocol === 'ldaps:') bad('starttls', 'StartTLS is for ldap:// (ldaps:// is TLS already)')
  if (!s.user_filter.includes('{user}')) bad('user_filter', 'must contain {user}')
  if (s.bind_dn !== undefined && (s.bind_password ?? '') === '') bad('bind_password', 'required with bind_dn (an empty password is an unauthenticated bind)')
  if (s.bind_dn === undefined && s.bind_password !== undefined) bad('bind_dn', 'bind_password without bind_dn')
  if (s.group_search !== undefined && !/\{(dn|user)\}/.test(s.group_search.filter)) bad('group_search.filter', 'must contain {dn} or {user}')
}

export interface LdapTestResult {
  ok: boolean
  ms: number
  error?: string
}

/** Connects (StartTLS if set) and binds the service account (anonymously without bind_dn). */
export async function testLdap (settings: LdapSettings): Promise<LdapTestResult> {
  const started = Date.now()
  let session: LdapSession | undefined
  try {
    checkSettings(settings)
    session = new LdapSession(settings)
    await session.open()
    await session.serviceBind(true)
    return { ok: true, ms: Date.now() - started }
  } catch (err) {
    return { ok: false, ms: Date.now() - started, error: unavailable('ldap', err).message }
  } finally {
    await session?.close()
  }
}
