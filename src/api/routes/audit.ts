/** The audit log: every change (actor, before, after) and every session's end, newest first. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { AuditEntry } from '../../store/records.js'
import type { AuditEntry as AuditEntryT } from '../../store/records.js'
import { errors } from '../crud.js'
import type { ApiDeps } from '../deps.js'

const Query = Type.Object({
  actor: Type.Optional(Type.String({ maxLength: 200 })),
  action: Type.Optional(Type.String({ maxLength: 100, description: 'exact, or a prefix ending in "." such as session.' })),
  target: Type.Optional(Type.String({ maxLength: 200, description: 'kind/key, e.g. device/patient-phone' })),
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'ms since the epoch' })),
  until: Type.Optional(Type.Integer({ minimum: 0 })),
  before: Type.Optional(Type.Integer({ minimum: 1, description: 'page: entries older than this id' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
}, { additionalProperties: false })

/**
 * Secrets a record copy in the log may still hold: the store redacts a token's hash and
 * the directory's bind password, but a user's copy keeps its scrypt `password_hash` and
 * the SHA-256 of its CONNECT tokens, which must not leave through the API either (the
 * user routes show only `has_password` and a count). Redacted here, at the HTTP edge.
 */
const SECRET_FIELDS = ['password_hash', 'token_sha256', 'hash', 'bind_password'] as const
function redact (v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
  const out: Record<string, unknown> = { ...(v as Record<string, unknown>) }
  for (const k of SECRET_FIELDS) if (out[k] !== undefined) out[k] = '[redacted]'
  return out
}
const redactEntry = (e: AuditEntryT): AuditEntryT => ({
  ...e,
  ...(e.before === undefined ? {} : { before: redact(e.before) }),
  ...(e.after === undefined ? {} : { after: redact(e.after) }),
})

export function registerAudit (app: FastifyInstance, deps: ApiDeps): void {
  app.get('/audit', {
    config: { scope: 'read' },
    schema: { tags: ['audit'], summary: 'audit entries, filtered and paged', querystring: Query, response: { 200: Type.Object({ entries: Type.Array(AuditEntry), next: Type.Optional(Type.Integer()) }), ...errors(400, 401, 403) } },
  }, async (req) => {
    const page = await deps.store.queryAudit(req.query as Record<string, never>)
    return { ...page, entries: page.entries.map(redactEntry) }
  })
}
