// A device's IPsec policy: read, set (validated as a whole, errors naming the field),
// removed, and tried in charon through the `checkPolicy` dependency (faked here).
import t from 'tap'
import { BeckonError } from '../../../src/core/errors.js'
import type { Device, Policy } from '../../../src/store/records.js'
import { harness, json, policy, seedDevice } from './helpers.js'

t.test('GET, PUT, DELETE the policy', async (t) => {
  const h = await harness(t)
  await seedDevice(h.store)
  await h.store.delete('policy', 'phone1', 'test:setup')
  const none = await h.req('GET', '/v1/devices/phone1/policy', { as: 'read' })
  t.equal(none.statusCode, 404)
  t.same(json(none), { code: 'BECKON_ERR_NOT_FOUND', message: 'not found: device phone1 has no policy' })

  // Defaults come from the schema: only the rules are required in practice.
  const put = await h.req('PUT', '/v1/devices/phone1/policy', { as: 'write', body: { rules: [{ users: ['alice'], ports: [8080] }] } })
  t.equal(put.statusCode, 200)
  t.same(json(put), policy())
  t.same(json(await h.req('GET', '/v1/devices/phone1/policy', { as: 'read' })), policy())
  t.same(await h.store.get('policy', 'phone1'), policy())

  const del = await h.req('DELETE', '/v1/devices/phone1/policy', { as: 'write' })
  t.equal(del.statusCode, 204)
  t.equal(del.body, '')
  t.equal((await h.req('DELETE', '/v1/devices/phone1/policy')).statusCode, 404)

  for (const [method, body] of [['GET', undefined], ['PUT', policy()], ['DELETE', undefined]] as const) {
    const r = await h.req(method, '/v1/devices/ghost/policy', body === undefined ? {} : { body })
    t.equal(r.statusCode, 404, `${method} for an unknown device`)
    t.equal(json(r).code, 'BECKON_ERR_NOT_FOUND')
  }
})

t.test('an invalid policy is refused naming the field; nothing is stored', async (t) => {
  const h = await harness(t)
  await seedDevice(h.store)
  const cases: Array<[unknown, string, string]> = [
    [policy({ esp_proposals: ['aes256gcm16', 'aes257gcm16'] }), 'BECKON_ERR_POLICY_INVALID', 'policy.esp_proposals[1]: unknown algorithm "aes257gcm16"'],
    [policy({ rules: [{ users: ['mallory'], groups: [], protocol: 'tcp', ports: [8080], ipsec: true, raw_tcp: false }] }), 'BECKON_ERR_POLICY_INVALID', 'policy.rules[0].users[0]: unknown user mallory'],
    [policy({ rules: [{ users: ['alice'], groups: [], protocol: 'tcp', ports: [22], ipsec: true, raw_tcp: false }] }), 'BECKON_ERR_POLICY_INVALID', 'policy.rules[0].ports[0]: tcp/22 is not a service of device phone1'],
    [policy({ child_rekey_s: 20_000 }), 'BECKON_ERR_POLICY_INVALID', 'policy.child_rekey_s: 20000 s exceeds policy.ike_rekey_s'],
    [{ ...policy(), rules: [{ users: ['alice'], ports: [0] }] }, 'BECKON_ERR_VALIDATION', 'body.rules[0].ports[0]: must be >= 1'],
    [{ ...policy(), rules: [{ users: ['alice'], ports: [] }] }, 'BECKON_ERR_VALIDATION', 'body.rules[0].ports: must NOT have fewer than 1 items'],
    [{ ...policy(), dpd: 5 }, 'BECKON_ERR_VALIDATION', 'body.dpd: unknown field'],
    [{ ...policy(), auth: 'cert' }, 'BECKON_ERR_VALIDATION', 'body.auth'],
  ]
  for (const [body, code, message] of cases) {
    const r = await h.req('PUT', '/v1/devices/phone1/policy', { as: 'write', body })
    t.equal(r.statusCode, 400, message)
    t.equal(json(r).code, code)
    t.match(json(r).message, message)
  }
  t.same(await h.store.get('policy', 'phone1'), policy(), 'the stored policy is untouched')
})

t.test('policy check: 503 without a charon, the verdict with one, 422 when charon refuses', async (t) => {
  const calls: Array<[Policy, Device]> = []
  let answer: () => Promise<{ connection: unknown }> = async () => ({ connection: { 'beckon-phone1': { version: 2 } } })
  const checkPolicy = async (p: Policy, d: Device): Promise<{ connection: unknown }> => { calls.push([p, d]); return await answer() }

  t.test('no checkPolicy dependency: 503', async (t) => {
    const h = await harness(t)
    await seedDevice(h.store)
    const r = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write', body: policy() })
    t.equal(r.statusCode, 503)
    t.match(json(r), { code: 'BECKON_ERR_VICI_CONNECT', message: /no charon is configured/ })
  })

  t.test('with one', async (t) => {
    const h = await harness(t, { checkPolicy })
    await seedDevice(h.store)
    const ok = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write', body: policy({ dpd_s: 10 }) })
    t.equal(ok.statusCode, 200)
    t.same(json(ok), { ok: true, verdict: 'charon loaded and unloaded the generated connection', connection: { 'beckon-phone1': { version: 2 } } })
    t.equal(calls.length, 1)
    t.equal(calls[0]![0].dpd_s, 10, 'the body was checked')
    t.match(calls[0]![1], { name: 'phone1', address: /^fd00:beca:/ }, 'with the device and its derived address')
    t.equal((await h.store.get('policy', 'phone1'))!.dpd_s, 30, 'a check stores nothing')

    const stored = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write' })
    t.equal(stored.statusCode, 200, 'no body: the stored policy is checked')
    t.same(calls[1]![0], policy())

    const audit = (await h.store.queryAudit({ action: 'policy.check' })).entries
    t.same(audit.map((e) => [e.actor, e.target, e.outcome]), [[h.tokens.write.actor, 'policy/phone1', 'ok'], [h.tokens.write.actor, 'policy/phone1', 'ok']])

    answer = async () => { throw new BeckonError('BECKON_ERR_POLICY_REJECTED', 'loading connection beckon-phone1 failed: invalid ESP proposal') }
    const no = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write', body: policy() })
    t.equal(no.statusCode, 422)
    t.same(json(no), { code: 'BECKON_ERR_POLICY_REJECTED', message: 'charon rejected the generated connection: loading connection beckon-phone1 failed: invalid ESP proposal' })

    const n = calls.length
    const bad = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write', body: policy({ esp_proposals: ['aes256gcm16', 'aes257gcm16'] }) })
    t.equal(bad.statusCode, 400)
    t.same(json(bad), { code: 'BECKON_ERR_POLICY_INVALID', message: 'invalid IPsec policy: policy.esp_proposals[1]: unknown algorithm "aes257gcm16"' })
    const unknownField = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write', body: { ...policy(), esp: [] } })
    t.equal(unknownField.statusCode, 400)
    t.same(json(unknownField), { code: 'BECKON_ERR_VALIDATION', message: 'invalid request body: body.esp: unknown field' })
    t.equal(calls.length, n, 'charon was not asked about an invalid policy')

    const ghost = await h.req('POST', '/v1/devices/ghost/policy/check', { as: 'write', body: policy() })
    t.equal(ghost.statusCode, 404)
    await h.store.delete('policy', 'phone1', 'test:setup')
    const none = await h.req('POST', '/v1/devices/phone1/policy/check', { as: 'write' })
    t.equal(none.statusCode, 404)
    t.match(json(none).message, 'device phone1 has no policy; send one in the body')
  })
})

t.test('deleting a device removes its policy', async (t) => {
  const h = await harness(t)
  await seedDevice(h.store)
  t.equal((await h.req('DELETE', '/v1/devices/phone1')).statusCode, 204)
  t.equal(await h.store.get('policy', 'phone1'), undefined)
})
