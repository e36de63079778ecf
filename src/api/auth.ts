/**
 * API tokens: `bkn_<id>_<secret>`, id = 16 hex digits (the record's key, safe to log and
 * to rate-limit by), secret = 32 random bytes base64url. The store keeps only the
 * SHA-256 of the whole token, so a stolen database yields no usable token.
 *
 * Scopes nest: read < write < admin. A route declares the scope it needs in its
 * `config.scope`; `none` marks the unauthenticated ones (/health, /metrics, /docs).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BeckonError } from '../core/errors.js'
import type { Scope, TokenRecord } from '../store/records.js'
import type { ApiDeps } from './deps.js'

const TOKEN_RE = /^bkn_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$/
const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 }

export function tokenHash (token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** A new token and the record to store for it (the token itself is shown once). */
export function newToken (name: string, scopes: Scope[], now = Date.now()): { token: string, record: TokenRecord } {
  const id = randomBytes(8).toString('hex')
  const token = `bkn_${id}_${randomBytes(32).toString('base64url')}`
  return { token, record: { id, name, scopes: [...new Set(scopes)], hash: tokenHash(token), created_at: now } }
}

export function hasScope (granted: Scope[], need: Scope): boolean {
  return granted.some((s) => RANK[s] >= RANK[need])
}

declare module 'fastify' {
  interface FastifyRequest { actor?: string, token?: TokenRecord }
}

/** Resolves the bearer token of a request against the store, or throws a coded error. */
export async function authenticate (deps: ApiDeps, header: string | undefined): Promise<TokenRecord> {
  // The scheme is case-insensitive (RFC 7235 §2.1): `bearer …` is the same credential.
  const m = /^Bearer +(\S+)$/i.exec(header ?? '')
  if (m === null) throw new BeckonError('BECKON_ERR_API_UNAUTHORIZED', 'send Authorization: Bearer <token>')
  const t = TOKEN_RE.exec(m[1]!)
  if (t === null) throw new BeckonError('BECKON_ERR_API_UNAUTHORIZED', 'malformed token')
  const rec = await deps.store.get('token', t[1]!)
  const want = Buffer.from(rec?.hash ?? '0'.repeat(64), 'hex')
  const got = Buffer.from(tokenHash(m[1]!), 'hex')
  if (rec === undefined || !timingSafeEqual(want, got)) throw new BeckonError('BECKON_ERR_API_UNAUTHORIZED', 'unknown token')
  if (rec.revoked_at !== undefined) throw new BeckonError('BECKON_ERR_API_UNAUTHORIZED', `token ${rec.id} was revoked`)
  return rec
}

export function authHook (deps: ApiDeps) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    // Checked before anything else, open routes and unknown paths included: a token sent
    // over plain HTTP is compromised whatever it was sent to, and the client must learn it
    // at once rather than only when it next calls a scoped route.
    if (!deps.secure && req.headers.authorization !== undefined) {
      throw new BeckonError('BECKON_ERR_API_INSECURE', 'this listener has no TLS; configure api.tls')
    }
    const need = req.routeOptions.config?.scope
    // Unknown routes fall through to the 404 handler; open routes need nothing.
    if (need === undefined || need === 'none') return
    const rec = await authenticate(deps, req.headers.authorization)
    if (!hasScope(rec.scopes, need)) throw new BeckonError('BECKON_ERR_API_FORBIDDEN', `${req.method} ${req.routeOptions.url ?? ''} needs scope ${need}; token ${rec.id} has ${rec.scopes.join(',')}`)
    req.actor = `token:${rec.id}:${rec.name}`
    req.token = rec
  }
}
