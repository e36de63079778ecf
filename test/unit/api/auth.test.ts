// Tokens and scopes on every route fastify has: 401 without or with a bad token, 403 with
// too small a scope, and a plain listener that refuses any request carrying a token.
import t from 'tap'
import { newToken } from '../../../src/api/auth.js'
import { memoryStore } from '../../../src/store/memory.js'
import { fastifyRoutes, harness, json } from './helpers.js'

type Need = 'none' | 'read' | 'write' | 'admin'
/** Every route and the scope it needs; the first test keeps this equal to what fastify has. */
const ROUTES: Array<[string, Need]> = [
  ...['devices', 'users', 'groups', 'gateways'].flatMap((k): Array<[string, Need]> => [
    [`GET /v1/${k}`, 'read'], [`POST /v1/${k}`, 'write'],
    [`GET /v1/${k}/:name`, 'read'], [`PUT /v1/${k}/:name`, 'write'], [`PATCH /v1/${k}/:name`, 'write'], [`DELETE /v1/${k}/:name`, 'write'],
  ]),
  ['GET /v1/devices/:name/policy', 'read'], ['PUT /v1/devices/:name/policy', 'write'], ['DELETE /v1/devices/:name/policy', 'write'],
  ['POST /v1/devices/:name/policy/check', 'write'],
  ['GET /v1/directory/ldap', 'read'], ['PUT /v1/directory/ldap', 'admin'], ['DELETE /v1/directory/ldap', 'admin'], ['POST /v1/directory/ldap/test', 'admin'],
  ['GET /v1/tokens', 'admin'], ['POST /v1/tokens', 'admin'], ['DELETE /v1/tokens/:id', 'admin'],
  ['GET /v1/sessions', 'read'], ['GET /v1/sessions/:id', 'read'], ['DELETE /v1/sessions/:id', 'write'],
  ['GET /v1/audit', 'read'],
  ['GET /health', 'none'], ['GET /metrics', 'none'], ['GET /openapi.json', 'none'],
]
const concrete = (route: string): [string, string] => {
  const [method, path] = route.split(' ') as [string, string]
  return [method, path.replace(':name', 'phone1').replace(':id', path.startsWith('/v1/tokens') ? '0123456789abcdef' : 'a'.repeat(24))]
}
const scoped = ROUTES.filter(([, need]) => need !== 'none')

t.test('the table covers every route fastify has', async (t) => {
  const h = await harness(t)
  t.same([...fastifyRoutes(h.app)].sort(), ROUTES.map(([r]) => r).sort())
})

t.test('no token, a malformed one, an unknown one: 401 on every scoped route', async (t) => {
  const h = await harness(t)
  const unknown = newToken('nobody', ['admin']).token
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no header', undefined, /send Authorization: Bearer/],
    ['Basic', 'Basic YWxpY2U6c2VjcmV0', /send Authorization: Bearer/],
    ['malformed', 'Bearer bkn_nothex_short', /malformed token/],
    ['unknown', `Bearer ${unknown}`, /unknown token/],
    ['right id, wrong secret', `${h.auth.admin.slice(0, -6)}AAAAAA`, /unknown token/],
  ]
  for (const route of scoped) {
    const [method, url] = concrete(route[0])
    for (const [label, header, msg] of cases) {
      const r = await h.app.inject({ method: method as 'GET', url, headers: header === undefined ? {} : { authorization: header } })
      t.equal(r.statusCode, 401, `${route[0]} ${label}`)
      t.equal(json(r).code, 'BECKON_ERR_API_UNAUTHORIZED')
      t.match(json(r).message, msg)
    }
  }
})

t.test('a revoked token is refused with 401', async (t) => {
  const h = await harness(t)
  const c = json(await h.req('POST', '/v1/tokens', { body: { name: 'ci', scopes: ['read'] } }))
  t.equal((await h.req('GET', '/v1/devices', { header: `Bearer ${c.token as string}` })).statusCode, 200)
  t.equal((await h.req('DELETE', `/v1/tokens/${c.id as string}`)).statusCode, 204)
  const r = await h.req('GET', '/v1/devices', { header: `Bearer ${c.token as string}` })
  t.equal(r.statusCode, 401)
  t.same(json(r), { code: 'BECKON_ERR_API_UNAUTHORIZED', message: `missing or invalid API token: token ${c.id as string} was revoked` })
})

t.test('too small a scope: 403; enough: past the gate', async (t) => {
  const h = await harness(t)
  const rank = { read: 1, write: 2, admin: 3 } as const
  for (const [route, need] of scoped) {
    const [method, url] = concrete(route)
    for (const as of ['read', 'write', 'admin'] as const) {
      const r = await h.req(method, url, { as })
      if (rank[as] < rank[need as 'read']) {
        t.equal(r.statusCode, 403, `${route} with ${as}`)
        t.equal(json(r).code, 'BECKON_ERR_API_FORBIDDEN')
        t.match(json(r).message, `needs scope ${need}; token ${h.tokens[as].id} has ${as}`)
      } else {
        t.notOk([401, 403].includes(r.statusCode), `${route} with ${as} answers ${r.statusCode}`)
      }
    }
  }
})

t.test('the Bearer scheme is case-insensitive', async (t) => {
  const h = await harness(t)
  t.equal((await h.req('GET', '/v1/devices', { header: h.auth.read.replace('Bearer', 'bearer') })).statusCode, 200)
})

t.test('open routes need no token', async (t) => {
  const h = await harness(t)
  for (const [route] of ROUTES.filter(([, need]) => need === 'none')) {
    const [method, url] = concrete(route)
    t.equal((await h.req(method, url, { as: null })).statusCode, 200, route)
  }
  t.equal((await h.req('GET', '/docs', { as: null })).statusCode, 200)
})

t.test('a plain listener refuses every request that carries a token', async (t) => {
  const store = await memoryStore()
  const h = await harness(t, { store, secure: false })
  const urls = [...ROUTES.map(([r]) => concrete(r)), ['GET', '/docs'], ['GET', '/no/such/route']] as Array<[string, string]>
  for (const [method, url] of urls) {
    for (const header of [h.auth.admin, 'Bearer garbage', 'Basic YWxpY2U6c2VjcmV0']) {
      const r = await h.req(method, url, { header })
      t.equal(r.statusCode, 403, `${method} ${url}`)
      t.same(json(r), { code: 'BECKON_ERR_API_INSECURE', message: 'secrets are refused on an unencrypted listener: this listener has no TLS; configure api.tls' })
    }
  }
  // Without a token the open routes still answer and the scoped ones ask for one.
  t.equal((await h.req('GET', '/health', { as: null })).statusCode, 200)
  t.equal((await h.req('GET', '/v1/devices', { as: null })).statusCode, 401)
  // Nothing was changed through the refused requests.
  t.same((await store.queryAudit({ action: 'token.' })).entries.map((e) => e.actor), ['test:setup', 'test:setup', 'test:setup'])
})
