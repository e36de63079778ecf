// Operations and the edges: /health, /metrics, /openapi.json against the routes fastify
// has, /docs, the rate limit, and bodies that are too large or not JSON (a coded 4xx,
// never a 500, and the app keeps serving).
import t from 'tap'
import { memoryStore } from '../../../src/store/memory.js'
import type { Store } from '../../../src/store/store.js'
import { fastifyRoutes, gateway, harness, json, openapiPath } from './helpers.js'

/** A store whose round trips fail, as a locked or unreachable database's do. */
async function downStore (): Promise<Store> {
  return Object.assign(await memoryStore(), { ping: async (): Promise<void> => { throw new Error('database is locked') } })
}

t.test('/health: ok, degraded when a named check fails, 503 down when the store does', async (t) => {
  const ok = await harness(t, { health: { smsc: async () => ({ ok: true, detail: 'bound' }) } })
  const a = await ok.req('GET', '/health', { as: null })
  t.equal(a.statusCode, 200)
  t.match(json(a), { status: 'ok', checks: { store: { ok: true, ms: Number }, smsc: { ok: true, detail: 'bound' } } })

  const degraded = await harness(t, { health: { smtp: async () => ({ ok: false, detail: 'connection refused' }), ldap: async () => { throw new Error('timeout') } } })
  const b = await degraded.req('GET', '/health', { as: null })
  t.equal(b.statusCode, 200)
  t.match(json(b), { status: 'degraded', checks: { store: { ok: true }, smtp: { ok: false, detail: 'connection refused' }, ldap: { ok: false, detail: 'timeout' } } })

  const store = await downStore()
  t.teardown(() => store.close())
  const down = await harness(t, { store })
  const c = await down.req('GET', '/health', { as: null })
  t.equal(c.statusCode, 503)
  t.match(json(c), { status: 'down', checks: { store: { ok: false, detail: 'database is locked' } } })
  t.equal((await down.req('GET', '/metrics', { as: null })).statusCode, 200, '/metrics still answers')
})

t.test('/metrics is Prometheus text with the API\'s own counters', async (t) => {
  const h = await harness(t)
  await h.req('GET', '/v1/devices', { as: 'read' })
  await h.req('GET', '/v1/devices', { as: null })
  const r = await h.req('GET', '/metrics', { as: null })
  t.equal(r.statusCode, 200)
  t.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(r.body, /^# HELP beckon_api_requests_total /m)
  t.match(r.body, /^# TYPE beckon_api_requests_total counter$/m)
  t.match(r.body, /^beckon_api_requests_total\{route="\/v1\/devices",status="200"\} 1$/m)
  t.match(r.body, /^beckon_api_requests_total\{route="\/v1\/devices",status="401"\} 1$/m)
  t.match(r.body, /^beckon_store_seconds_count\{op="ping"\} \d+$/m)
  // Every non-comment line is `name{labels} value`.
  for (const line of r.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) {
    t.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+Inf-]+$/, line)
  }
})

t.test('/openapi.json lists every route with its schemas and bearer security', async (t) => {
  const h = await harness(t)
  const r = await h.req('GET', '/openapi.json', { as: null })
  t.equal(r.statusCode, 200)
  const doc = json(r)
  t.equal(doc.openapi, '3.0.3')
  t.same(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes.bearer.description })
  t.same(doc.security, [{ bearer: [] }])

  const documented = new Set<string>()
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`)
  }
  const routes = [...fastifyRoutes(h.app)]
  t.ok(routes.length >= 36, `${routes.length} routes`)
  t.same([...documented].sort(), routes.map((r) => { const [m, p] = r.split(' '); return `${m!} ${openapiPath(p!)}` }).sort(), 'the document and the router agree')

  for (const route of routes) {
    const [method, path] = route.split(' ') as [string, string]
    const op = doc.paths[openapiPath(path)][method.toLowerCase()]
    const open = ['/health', '/metrics', '/openapi.json'].includes(path)
    t.same(op.security, open ? [] : undefined, `${route}: ${open ? 'open' : 'bearer (the default)'}`)
    // Responses: a 2xx with a schema (204 has no content), and the error body on failures.
    const ok = Object.keys(op.responses).filter((c) => c.startsWith('2'))
    t.ok(ok.length > 0, `${route} documents a 2xx`)
    for (const code of ok.filter((c) => c !== '204')) t.ok(Object.values(op.responses[code].content ?? {}).some((m: any) => m.schema !== undefined), `${route} ${code} has a schema`)
    if (!open) t.match(op.responses['401'], { content: { 'application/json': { schema: { required: ['code', 'message'] } } } }, `${route} documents 401`)
    // Requests: path parameters, and a body schema for what takes one.
    for (const name of [...path.matchAll(/:(\w+)/g)].map((m) => m[1])) {
      t.ok(op.parameters?.some((p: any) => p.in === 'path' && p.name === name && p.schema !== undefined), `${route} documents :${name}`)
    }
    if (['POST', 'PUT', 'PATCH'].includes(method) && path !== '/v1/directory/ldap/test') {
      t.ok(op.requestBody?.content?.['application/json']?.schema !== undefined, `${route} documents its body`)
    }
  }
  t.ok(doc.paths['/v1/audit'].get.parameters.some((p: any) => p.in === 'query' && p.name === 'action'), 'query parameters too')
})

t.test('/docs answers HTML', async (t) => {
  const h = await harness(t)
  const r = await h.req('GET', '/docs', { as: null })
  t.equal(r.statusCode, 200)
  t.match(r.headers['content-type'], /^text\/html/)
  t.match(r.body, /<html/i)
})

t.test('rate limit: the 4th request in the window answers 429, per client address', async (t) => {
  const h = await harness(t, { rateLimit: { max: 3, windowMs: 60_000 } })
  for (let i = 0; i < 3; i++) t.equal((await h.req('GET', '/v1/devices', { as: 'read' })).statusCode, 200)
  const r = await h.req('GET', '/v1/devices', { as: 'read' })
  t.equal(r.statusCode, 429)
  t.same(json(r), { code: 'BECKON_ERR_RATE_LIMITED', message: 'too many requests: more than 3 requests in 1 minute' })
  t.ok(r.headers['retry-after'] !== undefined)
  // Per address, not per token: inventing token ids buys no fresh budget.
  t.equal((await h.req('GET', '/v1/devices', { as: 'write' })).statusCode, 429, 'another token from the same address shares the budget')
})

t.test('bad bodies answer a coded 4xx, never a 500, and the app keeps serving', async (t) => {
  const h = await harness(t)
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    ['too large', { 'content-type': 'application/json' }, JSON.stringify({ ...gateway(), description: 'x'.repeat(300 * 1024) }), /too large/],
    ['malformed JSON', { 'content-type': 'application/json' }, '{"name": "gw1", ', /not valid JSON/],
    ['JSON null', { 'content-type': 'application/json' }, 'null', /body/],
    ['a JSON array', { 'content-type': 'application/json' }, '[1,2]', /body: must be object/],
    ['not JSON', { 'content-type': 'text/plain' }, 'name=gw1', /body/],
    ['unsupported type', { 'content-type': 'application/xml' }, '<gateway/>', /content-type|Unsupported Media Type/i],
    ['empty with a JSON type', { 'content-type': 'application/json' }, '', /empty|body/i],
  ]
  for (const [label, headers, payload, message] of cases) {
    const r = await h.req('POST', '/v1/gateways', { headers, payload })
    t.ok(r.statusCode >= 400 && r.statusCode < 500, `${label}: ${r.statusCode}`)
    t.match(r.headers['content-type'], /^application\/json/)
    t.match(json(r), { code: /^BECKON_ERR_/, message }, label)
  }
  t.equal((await h.req('POST', '/v1/gateways', { body: gateway() })).statusCode, 201, 'still serving')
  t.equal((await h.req('GET', '/health', { as: null })).statusCode, 200)
  t.same((await h.store.list('gateway')).map((g) => g.name), ['gw1'])
})

t.test('unknown routes: 404 with a coded body', async (t) => {
  const h = await harness(t)
  const r = await h.req('GET', '/v1/nothing', { as: 'read' })
  t.equal(r.statusCode, 404)
  t.same(json(r), { code: 'BECKON_ERR_NOT_FOUND', message: 'not found: no route GET /v1/nothing' })
})
