/**
 * Schema failures as coded errors that name the field — `body.ike_proposals[1]: must
 * match pattern …`, `body.wake_timout: unknown field` — for the API's request schemas
 * (Fastify's ajv) and for records checked outside a request (`beckon import`, PATCH
 * merges) with TypeBox's compiled checker. Both report ajv-shaped issues.
 */
import type { TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { Value } from 'typebox/value'
import { BeckonError, type ErrorCode } from './errors.js'

export interface SchemaIssue {
  keyword: string
  instancePath: string
  message?: string
  params: Record<string, unknown>
}

/** `/ike_proposals/1` → `ike_proposals[1]`, prefixed by where it was (body, querystring…). */
export function fieldPath (where: string, instancePath: string, child?: string): string {
  const parts = instancePath.split('/').filter(Boolean).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('')
  return `${where}${parts}${child === undefined ? '' : `.${child}`}`
}

export function schemaError (where: string, issue: SchemaIssue | undefined, fallback = 'invalid', code: ErrorCode = 'BECKON_ERR_VALIDATION'): BeckonError {
  if (issue === undefined) return new BeckonError(code, fallback)
  const p = issue.params
  if (issue.keyword === 'required') return new BeckonError(code, `${fieldPath(where, issue.instancePath, String(p.missingProperty ?? (p.requiredProperties as string[] | undefined)?.[0]))}: required`)
  if (issue.keyword === 'additionalProperties' && p.additionalProperty !== undefined) return new BeckonError(code, `${fieldPath(where, issue.instancePath, String(p.additionalProperty))}: unknown field`)
  // TypeBox reports an unknown key as `schema is false` at the key's own path.
  if (issue.keyword === 'boolean') return new BeckonError(code, `${fieldPath(where, issue.instancePath)}: unknown field`)
  return new BeckonError(code, `${fieldPath(where, issue.instancePath)}: ${issue.message ?? 'invalid'}`)
}

const compiled = new WeakMap<TSchema, ReturnType<typeof Compile>>()

/** Returns `value` with the schema's defaults filled in, or throws naming the first bad field. */
export function checkSchema<T> (schema: TSchema, value: unknown, where: string, code: ErrorCode = 'BECKON_ERR_VALIDATION'): T {
  let c = compiled.get(schema)
  if (c === undefined) { c = Compile(schema); compiled.set(schema, c) }
  const v = Value.Default(schema, structuredClone(value))
  if (c.Check(v)) return v as T
  const issues = [...c.Errors(v)] as unknown as SchemaIssue[]
  // Prefer the precise report: an unknown key's own path over the object-level summary.
  const best = issues.find((i) => i.keyword === 'boolean') ?? issues[0]
  throw schemaError(where, best, 'invalid', code)
}
