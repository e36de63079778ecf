/**
 * One set of routes per stored kind (list, get, create, replace, patch, delete), so
 * devices, users, groups and gateways behave alike: 201 on create, 409 on a taken
 * name, 404 on an unknown one, 400 naming the field, every change audited by the store
 * with the token that made it as the actor.
 */
import type { FastifyInstance } from 'fastify'
import { Type, type TSchema } from 'typebox'
import { BeckonError } from '../core/errors.js'
import type { Kind, Kinds } from '../store/store.js'
import type { ApiDeps } from './deps.js'
import { checkSchema } from '../core/schema.js'

export const ErrorBody = Type.Object({ code: Type.String(), message: Type.String() })
export const errors = (...codes: number[]): Record<number, typeof ErrorBody> => Object.fromEntries(codes.map((c) => [c, ErrorBody]))
export const NameParam = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) })

export interface CrudSpec<K extends Kind> {
  kind: K
  /** e.g. '/devices' */
  path: string
  tag: string
  /** The stored record. */
  record: TSchema
  /** What clients send to create or replace (defaults to `record`). */
  input?: TSchema
  /** What clients get back (defaults to `record`). */
  output?: TSchema
  /** Body → record (hash a password…); `before` on replace and patch. */
  toRecord?: (body: Record<string, unknown>, before: Kinds[K] | undefined) => Promise<Kinds[K]> | Kinds[K]
  /** Record → response (derived addresses, no secrets). */
  view?: (r: Kinds[K]) => unknown
  /** Checks references to other records; throws BECKON_ERR_VALIDATION naming the field. */
  check?: (r: Kinds[K], deps: ApiDeps) => Promise<void>
}

export function crudRoutes<K extends Kind> (app: FastifyInstance, deps: ApiDeps, s: CrudSpec<K>): void {
  const input = s.input ?? s.record
  const output = s.output ?? s.record
  const view = s.view ?? ((r: Kinds[K]) => r)
  const toRecord = s.toRecord ?? ((b: Record<string, unknown>) => b as unknown as Kinds[K])
  const one = `${s.path}/:name`
  const write = async (body: Record<string, unknown>, name: string, actor: string, mode: 'create' | 'replace', before?: Kinds[K]): Promise<Kinds[K]> => {
    if (body.name !== undefined && body.name !== name) throw new BeckonError('BECKON_ERR_VALIDATION', `body.name: ${String(body.name)} does not match the path (${name})`)
    const rec = await toRecord({ ...body, name }, before)
    await s.check?.(rec, deps)
    await deps.store.put(s.kind, name, rec, actor, mode === 'create' ? { create: true } : { replace: true })
    return rec
  }

  app.get(s.path, {
    config: { scope: 'read' },
    schema: { tags: [s.tag], summary: `list ${s.tag}`, response: { 200: Type.Array(output), ...errors(401, 403) } },
  }, async () => (await deps.store.list(s.kind)).map(view))

  app.get(one, {
    config: { scope: 'read' },
    schema: { tags: [s.tag], summary: `one ${s.kind}`, params: NameParam, response: { 200: output, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { name } = req.params as { name: string }
    const r = await deps.store.get(s.kind, name)
    if (r === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${s.kind} ${name}`)
    return view(r)
  })

  app.post(s.path, {
    config: { scope: 'write' },
    schema: { tags: [s.tag], summary: `create a ${s.kind}`, body: input, response: { 201: output, ...errors(400, 401, 403, 409) } },
  }, async (req, reply) => {
    const body = req.body as Record<string, unknown>
    const rec = await write(body, String(body.name), req.actor!, 'create')
    return reply.code(201).send(view(rec))
  })

  app.put(one, {
    config: { scope: 'write' },
    schema: { tags: [s.tag], summary: `replace a ${s.kind}`, params: NameParam, body: input, response: { 200: output, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const { name } = req.params as { name: string }
    const before = await deps.store.get(s.kind, name)
    if (before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${s.kind} ${name}`)
    return view(await write(req.body as Record<string, unknown>, name, req.actor!, 'replace', before))
  })

  // PATCH: the stored record with the given top-level fields replaced (null removes one),
  // validated again as a whole.
  app.patch(one, {
    config: { scope: 'write' },
    schema: { tags: [s.tag], summary: `change some fields of a ${s.kind}`, params: NameParam, body: Type.Record(Type.String(), Type.Unknown()), response: { 200: output, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const { name } = req.params as { name: string }
    const before = await deps.store.get(s.kind, name)
    if (before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${s.kind} ${name}`)
    const merged: Record<string, unknown> = { ...(before as Record<string, unknown>) }
    for (const [k, v] of Object.entries(req.body as Record<string, unknown>)) {
      if (v === null) delete merged[k]
      else merged[k] = v
    }
    // The schema check the route would have made on a full body.
    checkSchema(input, merged, 'body')
    return view(await write(merged, name, req.actor!, 'replace', before))
  })

  app.delete(one, {
    config: { scope: 'write' },
    schema: { tags: [s.tag], summary: `remove a ${s.kind}`, params: NameParam, response: { 204: Type.Null(), ...errors(401, 403, 404, 409) } },
  }, async (req, reply) => {
    const { name } = req.params as { name: string }
    await deps.store.delete(s.kind, name, req.actor!)
    return reply.code(204).send()
  })
}
