/**
 * Users and groups. The relay asks a Directory to authenticate CONNECT credentials;
 * the local store is below, LDAP comes behind the same interface.
 */
import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import { BeckonError } from '../core/errors.js'
import type { Credentials } from '../proto/connect/connect.js'

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, o: { N: number, r: number, p: number, maxmem: number }) => Promise<Buffer>

export interface User {
  name: string
  groups: string[]
}

export interface Directory {
  /** Resolves the user, or throws BECKON_ERR_AUTH_FAILED. */
  authenticate (c: Credentials): Promise<User>
}

const N = 16384
const R = 8
const P = 1

/** `scrypt$N$r$p$salt$hash` (base64url), as stored in configs and the store. */
export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scrypt(password, salt, 32, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 })
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${hash.toString('base64url')}`
}

export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number]
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0) || n > 1 << 20) return false
  const salt = Buffer.from(parts[4]!, 'base64url')
  const want = Buffer.from(parts[5]!, 'base64url')
  const got = await scrypt(password, salt, want.length, { N: n, r, p, maxmem: 256 * 1024 * 1024 })
  return got.length === want.length && timingSafeEqual(got, want)
}

export function isPasswordHash (s: string): boolean {
  return /^scrypt\$\d+\$\d+\$\d+\$[\w-]+\$[\w-]+$/.test(s)
}

export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export interface LocalUser {
  name: string
  passwordHash?: string
  /** SHA-256 hex of bearer tokens. */
  tokenHashes?: string[]
  groups?: string[]
}

/**
 * Users from the relay's config. A successful scrypt verification is remembered for
 * a minute under an HMAC of the credentials with a per-process key (never plaintext),
 * so a burst of sessions costs one scrypt, not one each; a wrong password always pays.
 */
export class LocalDirectory implements Directory {
  private readonly users = new Map<string, LocalUser>()
  private readonly cacheKey = randomBytes(32)
  private readonly verified = new Map<string, number>()
  /** Verifications in progress, so a burst of identical logins runs scrypt once. */
  private readonly inFlight = new Map<string, Promise<boolean>>()

  constructor (users: LocalUser[], private readonly cacheMs = 60_000) {
    for (const u of users) this.users.set(u.name, u)
  }

  async authenticate (c: Credentials): Promise<User> {
    if (c.scheme === 'bearer') {
      const h = hashToken(c.token)
      for (const u of this.users.values()) {
        if (u.tokenHashes?.some((t) => t.length === h.length && timingSafeEqual(Buffer.from(t), Buffer.from(h))) === true) return this.view(u)
      }
      throw new BeckonError('BECKON_ERR_AUTH_FAILED', 'unknown bearer token')
    }
    const u = this.users.get(c.user)
    if (u?.passwordHash === undefined) {
      throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${c.user}`)
    }
    const mark = createHmac('sha256', this.cacheKey).update(c.user).update('\0').update(c.password).update('\0').update(u.passwordHash).digest('base64')
    const until = this.verified.get(mark)
    if (until !== undefined && until > Date.now()) return this.view(u)
    let check = this.inFlight.get(mark)
    if (check === undefined) {
      check = verifyPassword(c.password, u.passwordHash).finally(() => this.inFlight.delete(mark))
      this.inFlight.set(mark, check)
    }
    if (!await check) throw new BeckonError('BECKON_ERR_AUTH_FAILED', `user ${c.user}`)
    if (this.verified.size > 10_000) this.verified.clear()
    this.verified.set(mark, Date.now() + this.cacheMs)
    return this.view(u)
  }

  private view (u: LocalUser): User {
    return { name: u.name, groups: [...(u.groups ?? [])] }
  }
}
