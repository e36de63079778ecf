// Devices, users, groups and gateways share one set of CRUD routes: 201/200/204 with the
// record's shape, 400 naming the field (PATCH merges included), 404 and 409.
import t from 'tap'
import { deviceBody, gateway, harness, json, KEY, type Harness } from './helpers.js'

interface KindSpec {
  path: string
  /** A valid create body for the name. */
  body: (name: string) => Record<string, unknown>
  /** A valid PATCH and a field of the answer it changes. */
  patch: Record<string, unknown>
  changed: Record<string, unknown>
  /** What the answer to the create looks like (tap's t.match). */
  shape: Record<string, unknown>
  /** Bodies refused by their schema, and the message that names the field. */
  bad: Array<[Record<string, unknown>, string]>
  /** Records the kind needs first. */
  setup?: (h: Harness) => Promise<void>
}

const KINDS: Record<string, KindSpec> = {
  gateway: {
    path: '/v1/gateways',
    body: (name) => ({ ...gateway(name) }),
    patch: { description: 'carrier A' },
    changed: { description: 'carrier A' },
    shape: { name: 'gw1', public_key: KEY('g') },
    bad: [
      [{ name: 'gw1', public_key: 'short' }, 'body.public_key: must match pattern'],
      [{ name: 'gw1' }, 'body.public_key: required'],
      [{ ...gateway('gw1'), descripton: 'x' }, 'body.descripton: unknown field'],
    ],
  },
  group: {
    path: '/v1/groups',
    body: (name) => ({ name }),
    patch: { description: 'doctors' },
    changed: { description: 'doctors' },
    shape: { name: 'gw1' },
    bad: [
      [{ name: 'ops', description: 'x'.repeat(201) }, 'body.description: must NOT have more than 200 characters'],
      [{ name: '-ops' }, 'body.name: must match pattern'],
    ],
  },
  user: {
    path: '/v1/users',
    body: (name) => ({ name, password: 'correct horse', groups: ['ops'] }),
    patch: { groups: [] },
    changed: { groups: [] },
    shape: { name: 'gw1', groups: ['ops'], has_password: true, tokens: 0, address: /^fd00:beca:/ },
    setup: async (h) => { await h.req('POST', '/v1/groups', { body: { name: 'ops' } }) },
    bad: [
      [{ name: 'alice', password: 'short' }, 'body.password: must NOT have fewer than 8 characters'],
      [{ name: 'alice', groups: ['nobody'] }, 'body.groups[0]: unknown group nobody'],
      [{ name: 'alice', pasword: 'correct horse' }, 'body.pasword: unknown field'],
    ],
  },
  device: {
    path: '/v1/devices',
    body: (name) => deviceBody(name),
    patch: { wake_timeout_ms: 600_000 },
    changed: { wake_timeout_ms: 600_000 },
    shape: { name: 'gw1', gateway: 'gw1', port: 7400, channels: ['sms'], wake_timeout_ms: 15_000, services: [{ name: 'glucose', protocol: 'tcp', port: 8080, address: /^fd00:beca:/ }], address: /^fd00:beca:/ },
    setup: async (h) => { await h.req('POST', '/v1/gateways', { body: gateway('gw1') }) },
    bad: [
      [deviceBody('p2', 'gw1', { wake_timeout_ms: 5 }), 'body.wake_timeout_ms: must be >= 100'],
      [deviceBody('p2', 'gw1', { services: [{ name: 'glucose', port: 70000 }] }), 'body.services[0].port: must be <= 65535'],
      [deviceBody('p2', 'gw1', { wake_timout: 5 }), 'body.wake_timout: unknown field'],
      [deviceBody('p2', 'nowhere'), 'body.gateway: unknown gateway nowhere'],
      [deviceBody('p2', 'gw1', { msisdn: undefined }), 'body.msisdn: required by channel sms'],
      [deviceBody('p2', 'gw1', { channels: ['email'], msisdn: undefined }), 'body.email: required by channel email'],
      [deviceBody('p2', 'gw1', { services: [{ name: 'a', port: 1 }, { name: 'a', port: 2 }] }), 'body.services[1].name: a appears twice'],
      [deviceBody('p2', 'gw1', { address: 'not-an-ip' }), 'body.address: must match format "ipv6"'],
    ],
  },
}

for (const [kind, s] of Object.entries(KINDS)) {
  t.test(`${kind}: create, list, read, replace, patch, delete`, async (t) => {
    const h = await harness(t)
    await s.setup?.(h)
    const name = kind === 'device' ? 'phone1' : 'gw1'
    const shape = { ...s.shape, name }
    const c = await h.req('POST', s.path, { body: s.body(name) })
    t.equal(c.statusCode, 201)
    t.match(json(c), shape)
    t.equal((await h.req('POST', s.path, { body: s.body('second') })).statusCode, 201)

    const list = await h.req('GET', s.path, { as: 'read' })
    t.equal(list.statusCode, 200)
    t.same(json(list).map((r: { name: string }) => r.name), [name, 'second'].sort())
    const one = await h.req('GET', `${s.path}/${name}`, { as: 'read' })
    t.equal(one.statusCode, 200)
    t.same(json(one), json(c))

    const put = await h.req('PUT', `${s.path}/${name}`, { as: 'write', body: { ...s.body(name), ...s.patch } })
    t.equal(put.statusCode, 200)
    t.match(json(put), { ...shape, ...s.changed })
    const putNoName = await h.req('PUT', `${s.path}/${name}`, { as: 'write', body: (({ name: _n, ...rest }) => rest)(s.body(name)) })
    t.equal(putNoName.statusCode, 400, 'a PUT body is a whole record, name included')
    t.match(json(putNoName), { code: 'BECKON_ERR_VALIDATION', message: 'body.name: required' })
    const patch = await h.req('PATCH', `${s.path}/${name}`, { as: 'write', body: s.patch })
    t.equal(patch.statusCode, 200)
    t.match(json(patch), { ...shape, ...s.changed })
    t.same(json(await h.req('GET', `${s.path}/${name}`)), json(patch), 'the patch is stored')

    const del = await h.req('DELETE', `${s.path}/${name}`, { as: 'write' })
    t.equal(del.statusCode, 204)
    t.equal(del.body, '')
    t.equal((await h.req('GET', `${s.path}/${name}`)).statusCode, 404)
  })

  t.test(`${kind}: 400 naming the field, 404, 409`, async (t) => {
    const h = await harness(t)
    await s.setup?.(h)
    for (const [body, message] of s.bad) {
      const r = await h.req('POST', s.path, { body })
      t.equal(r.statusCode, 400, message)
      t.equal(json(r).code, 'BECKON_ERR_VALIDATION')
      t.match(json(r).message, message)
    }
    const name = kind === 'device' ? 'phone1' : 'gw1'
    t.equal((await h.req('POST', s.path, { body: s.body(name) })).statusCode, 201)
    const dup = await h.req('POST', s.path, { body: s.body(name) })
    t.equal(dup.statusCode, 409)
    t.same(json(dup), { code: 'BECKON_ERR_CONFLICT', message: `already exists: ${kind} ${name}` })

    const mismatch = await h.req('PUT', `${s.path}/${name}`, { body: s.body('other') })
    t.equal(mismatch.statusCode, 400)
    t.match(json(mismatch), { code: 'BECKON_ERR_VALIDATION', message: 'body.name: other does not match the path' })
    const rename = await h.req('PATCH', `${s.path}/${name}`, { body: { name: 'other' } })
    t.match(json(rename), { code: 'BECKON_ERR_VALIDATION', message: 'body.name: other does not match the path' })

    for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) {
      const r = await h.req(method, `${s.path}/nothere`, method === 'GET' || method === 'DELETE' ? {} : { body: method === 'PUT' ? s.body('nothere') : s.patch })
      t.equal(r.statusCode, 404, `${method} unknown`)
      t.match(json(r), { code: 'BECKON_ERR_NOT_FOUND', message: `${kind} nothere` })
    }
    // Every refused request left the stored record as it was.
    t.same((await h.store.queryAudit({ target: `${kind}/${name}` })).entries.length, 1)
  })
}

t.test('PATCH: a merge that becomes invalid is refused naming the field', async (t) => {
  const h = await harness(t)
  await h.req('POST', '/v1/gateways', { body: gateway('gw1') })
  t.equal((await h.req('POST', '/v1/devices', { body: deviceBody('phone1') })).statusCode, 201)
  const before = await h.store.get('device', 'phone1')
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ wake_timeout_ms: 50 }, 'body.wake_timeout_ms: must be >= 100'],
    [{ wake_timout: 50 }, 'body.wake_timout: unknown field'],
    [{ services: [{ name: 'glucose', port: 0 }] }, 'body.services[0].port: must be >= 1'],
    [{ services: [{ name: 'glucose', port: 80, colour: 'red' }] }, 'body.services[0].colour: unknown field'],
    // Each valid on its own, invalid together with the stored fields:
    [{ msisdn: null }, 'body.msisdn: required by channel sms'],
    [{ channels: ['sms', 'email'] }, 'body.email: required by channel email'],
    [{ gateway: 'gw-elsewhere' }, 'body.gateway: unknown gateway gw-elsewhere'],
    [{ gateway: null }, 'body.gateway: required'],
  ]
  for (const [body, message] of cases) {
    const r = await h.req('PATCH', '/v1/devices/phone1', { as: 'write', body })
    t.equal(r.statusCode, 400, JSON.stringify(body))
    t.equal(json(r).code, 'BECKON_ERR_VALIDATION')
    t.match(json(r).message, message)
  }
  for (const body of [[1, 2], 'text', 7]) {
    const r = await h.req('PATCH', '/v1/devices/phone1', { body })
    t.equal(r.statusCode, 400, `PATCH ${JSON.stringify(body)}`)
    t.equal(json(r).code, 'BECKON_ERR_VALIDATION')
  }
  t.same(await h.store.get('device', 'phone1'), before, 'nothing was stored')
  // null removes an optional field; the defaults of the schema fill what was removed.
  const r = await h.req('PATCH', '/v1/devices/phone1', { body: { wake_timeout_ms: null, email: 'phone1@gw.example', channels: ['email'], msisdn: null } })
  t.equal(r.statusCode, 200)
  t.match(json(r), { wake_timeout_ms: 15_000, channels: ['email'], email: 'phone1@gw.example' })
  t.notOk('msisdn' in json(r))
})

t.test('users: passwords are hashed, kept on replace, changed by PATCH, never shown', async (t) => {
  const h = await harness(t)
  t.equal((await h.req('POST', '/v1/users', { body: { name: 'alice', password: 'correct horse' } })).statusCode, 201)
  const h1 = (await h.store.get('user', 'alice'))!.password_hash
  t.match(h1, /^scrypt\$/)
  const put = await h.req('PUT', '/v1/users/alice', { body: { name: 'alice', groups: [] } })
  t.equal(put.statusCode, 200)
  t.equal((await h.store.get('user', 'alice'))!.password_hash, h1, 'a PUT without password keeps the hash')
  // A PATCH merges the stored hash with the new password: that is a change, not a conflict.
  const patch = await h.req('PATCH', '/v1/users/alice', { body: { password: 'battery staple' } })
  t.equal(patch.statusCode, 200)
  t.same(json(patch), { name: 'alice', groups: [], address: json(put).address, has_password: true, tokens: 0 })
  const h2 = (await h.store.get('user', 'alice'))!.password_hash
  t.not(h2, h1, 'the PATCH stored a new hash')
  const both = await h.req('PUT', '/v1/users/alice', { body: { name: 'alice', password: 'battery staple', password_hash: 'scrypt$16384$8$1$abc$def' } })
  t.equal(both.statusCode, 400)
  t.match(json(both).message, 'body.password: give password or password_hash, not both')
  t.equal((await h.req('POST', '/v1/users', { body: { name: 'bob', token_sha256: ['a'.repeat(64)] } })).statusCode, 201)
  t.match(json(await h.req('GET', '/v1/users/bob')), { has_password: false, tokens: 1 })
  t.notMatch((await h.req('GET', '/v1/users')).body, /scrypt|password_hash|aaaaaaaa/)
})

t.test('gateways: deleting one a device uses is a conflict', async (t) => {
  const h = await harness(t)
  await h.req('POST', '/v1/gateways', { body: gateway('gw1') })
  await h.req('POST', '/v1/devices', { body: deviceBody('phone1') })
  const r = await h.req('DELETE', '/v1/gateways/gw1')
  t.equal(r.statusCode, 409)
  t.same(json(r), { code: 'BECKON_ERR_CONFLICT', message: 'already exists: gateway gw1 serves device phone1' })
  t.equal((await h.req('DELETE', '/v1/devices/phone1')).statusCode, 204)
  t.equal((await h.req('DELETE', '/v1/gateways/gw1')).statusCode, 204)
})

t.test('path parameters are validated', async (t) => {
  const h = await harness(t)
  const r = await h.req('GET', `/v1/devices/${'x'.repeat(101)}`)
  t.equal(r.statusCode, 400)
  t.same(json(r), { code: 'BECKON_ERR_VALIDATION', message: 'invalid request body: params: a path parameter is longer than 100 characters' })
  const bad = await h.req('GET', '/v1/devices/%E0%A4%A')
  t.equal(bad.statusCode, 400)
  t.match(json(bad), { code: 'BECKON_ERR_VALIDATION', message: /url: .* is not a valid url component/ })
  const pattern = await h.req('GET', '/v1/sessions/not-an-id')
  t.equal(pattern.statusCode, 400)
  t.match(json(pattern), { code: 'BECKON_ERR_VALIDATION', message: 'params.id: must match pattern' })
  t.equal((await h.req('GET', '/health', { as: null })).statusCode, 200, 'the app keeps serving')
})
