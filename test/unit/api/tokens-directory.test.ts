// Admin routes: API tokens (secret shown once, stored hashed, revoked not deleted) and the
// LDAP directory (bind password write-only); and no response ever carries a secret.
import t from 'tap'
import { tokenHash } from '../../../src/api/auth.js'
import type { LdapSettings } from '../../../src/store/records.js'
import { deviceBody, gateway, harness, json, secretsIn, session } from './helpers.js'

const BIND_PASSWORD = 'hunter2-very-secret'
const ldap = (extra: Partial<LdapSettings> = {}): Record<string, unknown> => ({
  url: 'ldaps://ldap.example:636',
  bind_dn: 'cn=beckon,dc=example',
  bind_password: BIND_PASSWORD,
  base_dn: 'dc=example',
  ...extra,
})

t.test('tokens: create shows the secret once; list never; revoke keeps the record', async (t) => {
  const h = await harness(t, { now: () => 1_700_000_000_000 })
  const c = await h.req('POST', '/v1/tokens', { body: { name: 'ci', scopes: ['read', 'write'] } })
  t.equal(c.statusCode, 201)
  const made = json(c)
  t.match(made, { id: /^[a-f0-9]{16}$/, name: 'ci', scopes: ['read', 'write'], created_at: 1_700_000_000_000, token: /^bkn_[a-f0-9]{16}_[A-Za-z0-9_-]{43}$/ })
  t.same(Object.keys(made).sort(), ['created_at', 'id', 'name', 'scopes', 'token'])
  t.equal(made.token.split('_')[1], made.id)
  const stored = await h.store.get('token', made.id)
  t.equal(stored!.hash, tokenHash(made.token), 'only the hash is stored')

  // The new token works with its scopes.
  t.equal((await h.req('POST', '/v1/gateways', { header: `Bearer ${made.token as string}`, body: gateway() })).statusCode, 201)
  t.equal((await h.req('GET', '/v1/tokens', { header: `Bearer ${made.token as string}` })).statusCode, 403)

  const list = await h.req('GET', '/v1/tokens')
  t.equal(list.statusCode, 200)
  t.same(json(list).find((x: { id: string }) => x.id === made.id), { id: made.id, name: 'ci', scopes: ['read', 'write'], created_at: 1_700_000_000_000 })
  t.same(secretsIn(list.body), [])
  t.equal(json(list).length, 4)

  t.equal((await h.req('DELETE', `/v1/tokens/${made.id as string}`)).statusCode, 204)
  t.equal((await h.req('DELETE', `/v1/tokens/${made.id as string}`)).statusCode, 204, 'revoking twice is harmless')
  t.match(json(await h.req('GET', '/v1/tokens')).find((x: { id: string }) => x.id === made.id), { revoked_at: 1_700_000_000_000 })
  t.equal((await h.req('GET', '/v1/devices', { header: `Bearer ${made.token as string}` })).statusCode, 401)
  const audit = (await h.store.queryAudit({ target: `token/${made.id as string}` })).entries
  t.same(audit.map((e) => e.action), ['token.revoke', 'token.create'])

  const unknown = await h.req('DELETE', '/v1/tokens/0123456789abcdef')
  t.equal(unknown.statusCode, 404)
  t.same(json(unknown), { code: 'BECKON_ERR_NOT_FOUND', message: 'not found: token 0123456789abcdef' })
  const badId = await h.req('DELETE', '/v1/tokens/xyz')
  t.match(json(badId), { code: 'BECKON_ERR_VALIDATION', message: 'params.id: must match pattern' })

  const bad: Array<[unknown, string]> = [
    [{ name: 'ci', scopes: [] }, 'body.scopes: must NOT have fewer than 1 items'],
    [{ name: 'ci', scopes: ['root'] }, 'body.scopes[0]'],
    [{ name: 'ci', scopes: ['read', 'read'] }, 'body.scopes: must NOT have duplicate items'],
    [{ scopes: ['read'] }, 'body.name: required'],
    [{ name: 'ci', scopes: ['read'], expires: 1 }, 'body.expires: unknown field'],
  ]
  for (const [body, message] of bad) {
    const r = await h.req('POST', '/v1/tokens', { body })
    t.equal(r.statusCode, 400, message)
    t.equal(json(r).code, 'BECKON_ERR_VALIDATION')
    t.match(json(r).message, message)
  }
})

t.test('directory: the bind password is write-only', async (t) => {
  let tested: LdapSettings | undefined
  let verdict = { ok: true, ms: 4 }
  const h = await harness(t, { testLdap: async (s) => { tested = s; return verdict } })
  const none = await h.req('GET', '/v1/directory/ldap', { as: 'read' })
  t.equal(none.statusCode, 404)
  t.same(json(none), { code: 'BECKON_ERR_NOT_FOUND', message: 'not found: no LDAP directory is configured' })
  t.equal((await h.req('POST', '/v1/directory/ldap/test')).statusCode, 404, 'nothing to test')

  const put = await h.req('PUT', '/v1/directory/ldap', { body: ldap() })
  t.equal(put.statusCode, 200)
  t.same(json(put), { ...ldap(), bind_password: '[redacted]', starttls: false, user_filter: '(uid={user})', group_attribute: 'memberOf', timeout_ms: 3000 })
  t.same(json(await h.req('GET', '/v1/directory/ldap', { as: 'read' })), json(put))
  t.equal((await h.store.get('setting', 'ldap'))!.bind_password, BIND_PASSWORD)

  // Omitting the password keeps the stored one.
  const again = await h.req('PUT', '/v1/directory/ldap', { body: { ...ldap(), bind_password: undefined, timeout_ms: 5000 } })
  t.equal(again.statusCode, 200)
  t.match(await h.store.get('setting', 'ldap'), { bind_password: BIND_PASSWORD, timeout_ms: 5000 })

  const test = await h.req('POST', '/v1/directory/ldap/test')
  t.equal(test.statusCode, 200)
  t.same(json(test), { ok: true, ms: 4 })
  t.equal(tested?.bind_password, BIND_PASSWORD, 'the test binds with the real password')
  verdict = { ok: false, detail: 'invalid credentials' } as unknown as typeof verdict
  const down = await h.req('POST', '/v1/directory/ldap/test')
  t.equal(down.statusCode, 503)
  t.same(json(down), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE', message: 'user directory unavailable: invalid credentials' })

  for (const [body, message] of [
    [ldap({ url: 'http://ldap.example' }), 'body.url: must match pattern'],
    [{ ...ldap(), bind_passwd: 'x' }, 'body.bind_passwd: unknown field'],
    [ldap({ timeout_ms: 10 }), 'body.timeout_ms: must be >= 100'],
    [{ ...ldap(), group_search: { filter: '(member={dn})' } }, 'body.group_search.base_dn: required'],
  ] as Array<[unknown, string]>) {
    const r = await h.req('PUT', '/v1/directory/ldap', { body })
    t.equal(r.statusCode, 400, message)
    t.equal(json(r).code, 'BECKON_ERR_VALIDATION')
    t.match(json(r).message, message)
  }

  const del = await h.req('DELETE', '/v1/directory/ldap')
  t.equal(del.statusCode, 204)
  t.equal((await h.req('DELETE', '/v1/directory/ldap')).statusCode, 404)
  t.same((await h.store.queryAudit({ target: 'setting/ldap' })).entries.map((e) => [e.action, e.actor]), [
    ['directory.delete', h.tokens.admin.actor], ['directory.update', h.tokens.admin.actor], ['directory.update', h.tokens.admin.actor],
  ])
})

t.test('directory test without an LDAP client: 503', async (t) => {
  const h = await harness(t)
  await h.req('PUT', '/v1/directory/ldap', { body: ldap() })
  const r = await h.req('POST', '/v1/directory/ldap/test')
  t.equal(r.statusCode, 503)
  t.equal(json(r).code, 'BECKON_ERR_DIRECTORY_UNAVAILABLE')
})

t.test('no response carries a password hash, a token hash or secret, or the bind password', async (t) => {
  const h = await harness(t, { checkPolicy: async () => ({ connection: {} }) })
  const bodies: Array<[string, string]> = []
  const call = async (method: string, url: string, body?: unknown): Promise<string> => {
    const r = await h.req(method, url, body === undefined ? {} : { body })
    bodies.push([`${method} ${url}`, r.body])
    return r.body
  }
  const created = JSON.parse(await call('POST', '/v1/tokens', { name: 'ci', scopes: ['read'] }))
  bodies.pop() // the one response that shows a secret
  await call('POST', '/v1/groups', { name: 'ops' })
  await call('POST', '/v1/users', { name: 'alice', password: 'correct horse', groups: ['ops'] })
  await call('POST', '/v1/users', { name: 'bob', password_hash: 'scrypt$16384$8$1$c2FsdA$aGFzaA', token_sha256: ['b'.repeat(64)] })
  await call('PATCH', '/v1/users/alice', { password: 'battery staple' })
  await call('PUT', '/v1/directory/ldap', ldap())
  await call('POST', '/v1/gateways', gateway())
  await call('POST', '/v1/devices', deviceBody())
  await call('PUT', '/v1/devices/phone1/policy', { rules: [{ users: ['alice'], ports: [8080] }] })
  await call('POST', '/v1/devices/phone1/policy/check')
  await h.store.sessionOpen(session())
  await call('DELETE', `/v1/tokens/${created.id as string}`)
  for (const url of ['/v1/tokens', '/v1/users', '/v1/users/alice', '/v1/users/bob', '/v1/directory/ldap', '/v1/devices', '/v1/sessions', '/v1/audit', '/v1/audit?target=user/alice', '/health', '/metrics', '/openapi.json']) {
    await call('GET', url)
  }
  const secrets = [
    BIND_PASSWORD, 'correct horse', 'battery staple', 'b'.repeat(64), created.token,
    ...(await h.store.list('token')).map((x) => x.hash),
    ...(await h.store.list('user')).map((u) => u.password_hash!),
    ...Object.values(h.tokens).map((x) => x.token),
  ]
  for (const [what, body] of bodies) {
    t.same(secretsIn(body), [], what)
    for (const s of secrets) t.notOk(body.includes(s), `${what} does not carry ${s.slice(0, 12)}…`)
  }
  // The audit still shows that the password changed hands, without showing it.
  const patch = (await h.req('GET', '/v1/audit?action=user.update')).body
  t.match(JSON.parse(patch).entries[0], { before: { password_hash: '[redacted]' }, after: { password_hash: '[redacted]' } })
})
