/** The audit log: every change (actor, before, after) and every session's end, newest first. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { AuditEntry } from '../../store/records.js'
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

export function registerAudit (app: FastifyInstance, deps: ApiDeps): void {
  app.get('/audit', {
    config: { scope: 'read' },
    schema: { tags: ['audit'], summary: 'audit entries, filtered and paged', querystring: Query, response: { 200: Type.Object({ entries: Type.Array(AuditEntry), next: Type.Optional(Type.Integer()) }), ...errors(400, 401, 403) } },
  }, async (req) => await deps.store.queryAudit(req.query as Record<string, never>))
}
