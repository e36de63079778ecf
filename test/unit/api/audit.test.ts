// Every change made through the API appears in GET /v1/audit with the token as actor and
// the record before and after; filters (actor, action prefix, target) and paging work.
import t from 'tap'
import type { AuditEntry } from '../../../src/store/records.js'
import { deviceBody, gateway, harness, json } from './helpers.js'

t.test('each change is audited with the token, before and after', async (t) => {
  const h = await harness(t)
  const steps: Array<[string, string, unknown, string, string]> = [
    ['POST', '/v1/gateways', gateway(), 'gateway.create', 'gateway/gw1'],
    ['POST', '/v1/groups', { name: 'ops' }, 'group.create', 'group/ops'],
    ['POST', '/v1/users', { name: 'alice', groups: ['ops'] }, 'user.create', 'user/alice'],
    ['POST', '/v1/devices', deviceBody(), 'device.create', 'device/phone1'],
    ['PUT', '/v1/devices/phone1', deviceBody('phone1', 'gw1', { port: 7500 }), 'device.update', 'device/phone1'],
    ['PATCH', '/v1/devices/phone1', { wake_timeout_ms: 60_000 }, 'device.update', 'device/phone1'],
    ['PUT', '/v1/devices/phone1/policy', { rules: [{ users: ['alice'], ports: [8080] }] }, 'policy.create', 'policy/phone1'],
    ['PATCH', '/v1/groups/ops', { description: 'operators' }, 'group.update', 'group/ops'],
    ['DELETE', '/v1/devices/phone1/policy', undefined, 'policy.delete', 'policy/phone1'],
    ['DELETE', '/v1/devices/phone1', undefined, 'device.delete', 'device/phone1'],
    ['PUT', '/v1/directory/ldap', { url: 'ldap://ldap.example', base_dn: 'dc=example' }, 'directory.update', 'setting/ldap'],
    ['POST', '/v1/tokens', { name: 'ci', scopes: ['read'] }, 'token.create', ''],
  ]
  for (const [method, url, body, action, target] of steps) {
    const r = await h.req(method, url, body === undefined ? { as: 'admin' } : { as: 'admin', body })
    t.ok(r.statusCode < 300, `${method} ${url} → ${r.statusCode}`)
    const e: AuditEntry = json(await h.req('GET', '/v1/audit?limit=1', { as: 'read' })).entries[0]
    t.equal(e.action, action, `${method} ${url} is audited as ${action}`)
    t.equal(e.actor, h.tokens.admin.actor)
    if (target !== '') t.equal(e.target, target)
    // The directory has one record, set by PUT: the first one has nothing before it.
    const created = action.endsWith('.create') || url === '/v1/directory/ldap'
    t.equal(e.before === undefined, created, 'before is there for changes and removals')
    t.equal(e.after === undefined, action.endsWith('.delete'), 'after is there for creations and changes')
  }
  const patch = json(await h.req('GET', '/v1/audit?target=device/phone1&action=device.update')).entries[0]
  t.match(patch, { before: { wake_timeout_ms: 15_000, port: 7500 }, after: { wake_timeout_ms: 60_000, port: 7500 } })

  // Refused requests change nothing and leave no entry.
  const n = json(await h.req('GET', '/v1/audit?limit=500')).entries.length
  await h.req('POST', '/v1/gateways', { body: gateway() })
  await h.req('POST', '/v1/devices', { body: { ...deviceBody(), wake_timout: 1 } })
  await h.req('POST', '/v1/gateways', { as: 'read', body: gateway('gw2') })
  t.equal(json(await h.req('GET', '/v1/audit?limit=500')).entries.length, n)
})

t.test('filters and paging', async (t) => {
  const h = await harness(t)
  await h.req('POST', '/v1/gateways', { as: 'write', body: gateway() })
  for (let i = 0; i < 5; i++) await h.req('POST', '/v1/devices', { as: 'write', body: deviceBody(`phone${i}`) })
  await h.req('PATCH', '/v1/devices/phone3', { as: 'admin', body: { port: 7401 } })
  await h.req('POST', '/v1/groups', { as: 'admin', body: { name: 'ops' } })

  const byActor = json(await h.req('GET', `/v1/audit?actor=${encodeURIComponent(h.tokens.admin.actor)}`)).entries as AuditEntry[]
  t.same(byActor.map((e) => e.action), ['group.create', 'device.update'])
  const devices = json(await h.req('GET', '/v1/audit?action=device.')).entries as AuditEntry[]
  t.same(devices.map((e) => e.target), ['device/phone3', 'device/phone4', 'device/phone3', 'device/phone2', 'device/phone1', 'device/phone0'])
  t.ok(devices.every((e) => e.action.startsWith('device.')))
  t.same((json(await h.req('GET', '/v1/audit?action=device.update')).entries as AuditEntry[]).length, 1)
  t.same((json(await h.req('GET', '/v1/audit?action=device')).entries as AuditEntry[]).length, 0, 'no prefix without the dot')
  t.same((json(await h.req('GET', '/v1/audit?target=device/phone3')).entries as AuditEntry[]).map((e) => e.action), ['device.update', 'device.create'])

  // Pages of 2 over the device entries: `next` is the `before` of the following page.
  const seen: number[] = []
  let url = '/v1/audit?action=device.&limit=2'
  let pages = 0
  for (;;) {
    const page = json(await h.req('GET', url, { as: 'read' }))
    pages++
    t.ok(page.entries.length <= 2)
    seen.push(...page.entries.map((e: AuditEntry) => e.id))
    if (page.next === undefined) break
    t.equal(page.next, page.entries.at(-1).id)
    url = `/v1/audit?action=device.&limit=2&before=${page.next as number}`
  }
  t.equal(pages, 3)
  t.same(seen, devices.map((e) => e.id), 'the pages together are the whole list, newest first')

  for (const [q, message] of [['limit=0', 'querystring.limit: must be >= 1'], ['limit=501', 'querystring.limit: must be <= 500'], ['before=x', 'querystring.before: must be integer'], ['colour=red', 'querystring.colour: unknown field']]) {
    const r = await h.req('GET', `/v1/audit?${q!}`)
    t.equal(r.statusCode, 400, q)
    t.match(json(r), { code: 'BECKON_ERR_VALIDATION', message: message! })
  }
})
