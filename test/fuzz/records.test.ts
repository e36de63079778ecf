// Fuzz: the control plane's record schemas through checkSchema.
import t from 'tap'
import fc from 'fast-check'
import { checkSchema } from '../../src/core/schema.js'
import * as records from '../../src/store/records.js'
import { RUNS, check, contract } from './helpers.js'
import type { TSchema } from 'typebox'

const schemas = Object.entries(records).filter(([, v]) => v !== null && typeof v === 'object' && ('type' in v || 'anyOf' in v)) as Array<[string, TSchema]>

t.test('checkSchema: any value gives a record or a coded error naming the field', async (t) => {
  t.ok(schemas.length >= 5, `${schemas.length} schemas: ${schemas.map(([n]) => n).join(', ')}`)
  const shaped = fc.dictionary(fc.constantFrom('name', 'msisdn', 'email', 'gateway', 'port', 'channels', 'wake_timeout_ms', 'address', 'services', 'rules', 'groups', 'users', 'auth', 'protocol', 'ports', 'public_key', 'password_hash'), fc.anything({ maxDepth: 3 }), { maxKeys: 6 })
  for (const [name, schema] of schemas) {
    check(t, name, fc.property(fc.oneof(fc.anything({ maxDepth: 3 }), shaped), (v) => {
      contract(() => checkSchema(schema, v, 'body'), { codes: /^BECKON_ERR_VALIDATION$/ })
    }), { numRuns: Math.max(500, Math.ceil(RUNS / 4)) })
  }
})
