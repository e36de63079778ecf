/**
 * The LDAP directory the relay checks CONNECT credentials against (besides local
 * users). The service account's password is write-only: reads show `[redacted]`.
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { BeckonError } from '../../core/errors.js'
import { LdapSettings } from '../../store/records.js'
import { errors } from '../crud.js'
import type { ApiDeps } from '../deps.js'

const path = '/directory/ldap'
const redact = (s: LdapSettings): LdapSettings => (s.bind_password === undefined ? s : { ...s, bind_password: '[redacted]' })

export function registerDirectory (app: FastifyInstance, deps: ApiDeps): void {
  const current = async (): Promise<LdapSettings> => {
    const s = await deps.store.get('setting', 'ldap')
    if (s === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', 'no LDAP directory is configured')
    return s
  }
  app.get(path, {
    config: { scope: 'read' },
    schema: { tags: ['directory'], summary: 'the LDAP connection', response: { 200: LdapSettings, ...errors(401, 403, 404) } },
  }, async () => redact(await current()))

  app.put(path, {
    config: { scope: 'admin' },
    schema: { tags: ['directory'], summary: 'set the LDAP connection (bind_password omitted = keep the stored one)', body: LdapSettings, response: { 200: LdapSettings, ...errors(400, 401, 403) } },
  }, async (req) => {
    const body = req.body as LdapSettings
    const before = await deps.store.get('setting', 'ldap')
    const next = body.bind_password === undefined && before?.bind_password !== undefined ? { ...body, bind_password: before.bind_password } : body
    await deps.store.put('setting', 'ldap', next, req.actor!, { action: 'directory.update' })
    return redact(next)
  })

  app.delete(path, {
    config: { scope: 'admin' },
    schema: { tags: ['directory'], summary: 'stop using LDAP', response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    await deps.store.delete('setting', 'ldap', req.actor!, 'directory.delete')
    return reply.code(204).send()
  })

  app.post(`${path}/test`, {
    config: { scope: 'admin' },
    schema: { tags: ['directory'], summary: 'bind the service account now', response: { 200: Type.Object({ ok: Type.Boolean(), ms: Type.Optional(Type.Number()), detail: Type.Optional(Type.String()) }), ...errors(401, 403, 404, 503) } },
  }, async () => {
    if (deps.testLdap === undefined) throw new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', 'this process has no LDAP client')
    const r = await deps.testLdap(await current())
    if (!r.ok) throw new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', r.detail)
    return r
  })
}
