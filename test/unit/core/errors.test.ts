// The error table in code and docs/errors.md must list the same codes, statuses, messages.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { BeckonError, ERRORS, isBeckonError, toBeckonError, type ErrorCode } from '../../../src/core/errors.js'

const doc = readFileSync(fileURLToPath(new URL('../../../docs/errors.md', import.meta.url)), 'utf8')
const rows = new Map<string, { status: number, message: string }>()
for (const m of doc.matchAll(/^\| (BECKON_ERR_[A-Z0-9_]+) \| (\d{3}) \| ([^|]+?) \|/gm)) {
  rows.set(m[1]!, { status: Number(m[2]), message: m[3]! })
}

t.test('every code is documented with its status and message', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.same(rows.get(code), { status: spec.status, message: spec.message }, code)
  }
})

t.test('every documented code exists', async (t) => {
  for (const code of rows.keys()) t.ok(code in ERRORS, `${code} is in src/core/errors.ts`)
  t.equal(rows.size, Object.keys(ERRORS).length)
})

t.test('BeckonError carries code, status, detail; wraps others', async (t) => {
  const e = new BeckonError('BECKON_ERR_VICI_TIMEOUT', 'version got no answer')
  t.equal(e.message, 'VICI request timed out: version got no answer')
  t.equal(e.status, 504)
  t.same(e.toJSON(), { code: 'BECKON_ERR_VICI_TIMEOUT', message: e.message })
  t.ok(isBeckonError(e, 'BECKON_ERR_VICI_TIMEOUT'))
  t.notOk(isBeckonError(e, 'BECKON_ERR_CONFIG' as ErrorCode))
  t.equal(toBeckonError(e), e)
  const w = toBeckonError(new Error('boom'))
  t.equal(w.code, 'BECKON_ERR_INTERNAL')
  t.equal(w.message, 'internal error: boom')
  t.equal(toBeckonError('str', 'BECKON_ERR_LAB').detail, 'str')
})
