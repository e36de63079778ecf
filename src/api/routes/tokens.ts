/**
 * API tokens: created with scopes, shown once, stored hashed, revoked (kept, marked)
 * rather than deleted so the audit log's actors stay resolvable.
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { BeckonError } from '../../core/errors.js'
import { Scope, type TokenRecord } from '../../store/records.js'
import { newToken } from '../auth.js'
import { errors } from '../crud.js'
import type { ApiDeps } from '../deps.js'

const TokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Scope),
  created_at: Type.Integer(),
  revoked_at: Type.Optional(Type.Integer()),
})
const view = ({ hash: _hash, ...rest }: TokenRecord): Omit<TokenRecord, 'hash'> => rest

export function registerTokens (app: FastifyInstance, deps: ApiDeps): void {
  app.get('/tokens', {
    config: { scope: 'admin' },
    schema: { tags: ['tokens'], summary: 'API tokens (never their secrets)', response: { 200: Type.Array(TokenView), ...errors(401, 403) } },
  }, async () => (await deps.store.list('token')).map(view))

  app.post('/tokens', {
    config: { scope: 'admin' },
    schema: {
      tags: ['tokens'],
      summary: 'create a token; the response is the only time its secret is shown',
      body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), scopes: Type.Array(Scope, { minItems: 1, uniqueItems: true }) }, { additionalProperties: false }),
      response: { 201: Type.Object({ ...TokenView.properties, token: Type.String() }), ...errors(400, 401, 403) },
    },
  }, async (req, reply) => {
    const b = req.body as { name: string, scopes: Scope[] }
    const { token, record } = newToken(b.name, b.scopes, (deps.now ?? Date.now)())
    await deps.store.put('token', record.id, record, req.actor!, { create: true })
    return reply.code(201).send({ ...view(record), token })
  })

  app.delete('/tokens/:id', {
    config: { scope: 'admin' },
    schema: { tags: ['tokens'], summary: 'revoke a token', params: Type.Object({ id: Type.String({ pattern: '^[a-f0-9]{16}$' }) }), response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    const { id } = req.params as { id: string }
    const rec = await deps.store.get('token', id)
    if (rec === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `token ${id}`)
    if (rec.revoked_at === undefined) await deps.store.put('token', id, { ...rec, revoked_at: (deps.now ?? Date.now)() }, req.actor!, { action: 'token.revoke' })
    return reply.code(204).send()
  })
}
