/**
 * Sessions: the live list (with this relay's current byte counters and SA states) and
 * history from the store. DELETE ends a live session: the relay holding it closes the
 * splice, and both ends then unload the connection and its secret from charon. With
 * several relays, a session held by another one is flagged in the store and ended by
 * its holder (202).
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { BeckonError } from '../../core/errors.js'
import { SessionRecord } from '../../store/records.js'
import { errors } from '../crud.js'
import type { ApiDeps } from '../deps.js'

const Query = Type.Object({
  live: Type.Optional(Type.Boolean()),
  device: Type.Optional(Type.String({ maxLength: 63 })),
  user: Type.Optional(Type.String({ maxLength: 64 })),
  before: Type.Optional(Type.Integer({ minimum: 0, description: 'page: sessions started before this time (ms)' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
}, { additionalProperties: false })
const IdParam = Type.Object({ id: Type.String({ pattern: '^[a-f0-9]{24}$' }) })

export function registerSessions (app: FastifyInstance, deps: ApiDeps): void {
  const fresh = (s: SessionRecord): SessionRecord => (s.ended_at === undefined ? deps.sessions?.live(s.id) ?? s : s)

  app.get('/sessions', {
    config: { scope: 'read' },
    schema: { tags: ['sessions'], summary: 'sessions, newest first (live=true: only those in progress)', querystring: Query, response: { 200: Type.Array(SessionRecord), ...errors(400, 401, 403) } },
  }, async (req) => (await deps.store.listSessions(req.query as Record<string, never>)).map(fresh))

  app.get('/sessions/:id', {
    config: { scope: 'read' },
    schema: { tags: ['sessions'], summary: 'one session', params: IdParam, response: { 200: SessionRecord, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { id } = req.params as { id: string }
    const s = await deps.store.getSession(id)
    if (s === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
    return fresh(s)
  })

  app.delete('/sessions/:id', {
    config: { scope: 'write' },
    schema: { tags: ['sessions'], summary: 'end a live session', params: IdParam, response: { 202: Type.Object({ id: Type.String(), relay: Type.String() }), 204: Type.Null(), ...errors(401, 403, 404, 410) } },
  }, async (req, reply) => {
    const { id } = req.params as { id: string }
    const s = await deps.store.getSession(id)
    if (s === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
    if (s.ended_at !== undefined) throw new BeckonError('BECKON_ERR_SESSION_ENDED', `session ${id} ended with ${s.outcome ?? 'unknown'}`)
    await deps.store.audit({ actor: req.actor!, action: 'session.kill', target: `session/${id}`, detail: { user: s.user, device: s.device, relay: s.relay } })
    if (deps.sessions?.kill(id, 'ended by an operator', req.actor!) === true) return reply.code(204).send()
    await deps.store.sessionUpdate(id, { kill_requested: req.actor! })
    return reply.code(202).send({ id, relay: s.relay })
  })
}
