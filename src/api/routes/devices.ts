/**
 * Devices and their IPsec policies. A device names its gateway, how it is signalled
 * (channels with MSISDN / mailbox), its agent's predetermined port and wake timeout;
 * its permanent addresses are derived from the deployment prefix unless set. The
 * policy is validated as a whole before it is stored (proposal grammar, ports,
 * overlapping selectors, known principals) and can be tried in charon first.
 */
import type { FastifyInstance } from 'fastify'
import { Type, type TSchema } from 'typebox'
import { checkSchema } from '../../core/schema.js'
import { BeckonError } from '../../core/errors.js'
import { permanentAddress } from '../../ipsec/addresses.js'
import { validatePolicy } from '../../ipsec/policy.js'
import { Device, Policy } from '../../store/records.js'
import type { Store } from '../../store/store.js'
import { crudRoutes, errors, NameParam } from '../crud.js'
import type { ApiDeps } from '../deps.js'

/** The record as stored, with every permanent address filled in. */
export function deviceView (prefix: string, d: Device): Device {
  return {
    ...d,
    address: d.address ?? permanentAddress(prefix, 'device', d.name),
    services: d.services.map((s) => ({ ...s, address: s.address ?? permanentAddress(prefix, 'device', `${d.name}/${s.name}`) })),
  }
}

async function checkDevice (d: Device, deps: ApiDeps): Promise<void> {
  if (await deps.store.get('gateway', d.gateway) === undefined) throw new BeckonError('BECKON_ERR_VALIDATION', `body.gateway: unknown gateway ${d.gateway} (create it under /v1/gateways)`)
  if (d.channels.includes('sms') && d.msisdn === undefined) throw new BeckonError('BECKON_ERR_VALIDATION', 'body.msisdn: required by channel sms')
  if (d.channels.includes('email') && d.email === undefined) throw new BeckonError('BECKON_ERR_VALIDATION', 'body.email: required by channel email')
  const names = new Set<string>()
  d.services.forEach((s, i) => {
    if (names.has(s.name)) throw new BeckonError('BECKON_ERR_VALIDATION', `body.services[${i}].name: ${s.name} appears twice`)
    names.add(s.name)
  })
}

/** Who a policy may name: local users and groups, unless a directory supplies others. */
export async function policyContext (store: Store, device: Device): Promise<Parameters<typeof validatePolicy>[1]> {
  const ldap = await store.get('setting', 'ldap')
  if (ldap !== undefined) return { device }
  const [users, groups] = await Promise.all([store.list('user'), store.list('group')])
  return { device, knownUsers: new Set(users.map((u) => u.name)), knownGroups: new Set(groups.map((g) => g.name)) }
}

async function deviceOr404 (store: Store, name: string): Promise<Device> {
  const d = await store.get('device', name)
  if (d === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `device ${name}`)
  return d
}

export function registerDevices (app: FastifyInstance, deps: ApiDeps): void {
  crudRoutes(app, deps, {
    kind: 'device',
    path: '/devices',
    tag: 'devices',
    record: Device,
    view: (d) => deviceView(deps.ipsecPrefix, d),
    check: checkDevice,
  })

  const path = '/devices/:name/policy'
  app.get(path, {
    config: { scope: 'read' },
    schema: { tags: ['policies'], summary: 'the device\'s IPsec policy', params: NameParam, response: { 200: Policy, ...errors(401, 403, 404) } },
  }, async (req) => {
    const { name } = req.params as { name: string }
    await deviceOr404(deps.store, name)
    const p = await deps.store.get('policy', name)
    if (p === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `device ${name} has no policy`)
    return p
  })

  app.put(path, {
    config: { scope: 'write' },
    schema: { tags: ['policies'], summary: 'set the device\'s IPsec policy (validated first; applies to the next CONNECT and ends live sessions it no longer admits)', params: NameParam, body: Policy, response: { 200: Policy, ...errors(400, 401, 403, 404) } },
  }, async (req) => {
    const { name } = req.params as { name: string }
    const device = await deviceOr404(deps.store, name)
    const p = req.body as Policy
    validatePolicy(p, await policyContext(deps.store, device))
    await deps.store.put('policy', name, p, req.actor!)
    return p
  })

  app.delete(path, {
    config: { scope: 'write' },
    schema: { tags: ['policies'], summary: 'remove the policy: nobody may reach the device', params: NameParam, response: { 204: Type.Null(), ...errors(401, 403, 404) } },
  }, async (req, reply) => {
    const { name } = req.params as { name: string }
    await deps.store.delete('policy', name, req.actor!)
    return reply.code(204).send()
  })

  app.post(`${path}/check`, {
    config: { scope: 'write' },
    schema: {
      tags: ['policies'],
      summary: 'validate a policy (the body, or the stored one) and load its generated connection into charon; answers with charon\'s verdict',
      params: NameParam,
      body: Policy,
      response: { 200: Type.Object({ ok: Type.Boolean(), verdict: Type.String(), connection: Type.Unknown() }), ...errors(400, 401, 403, 404, 422, 503) },
    },
    // The body is optional (absent = check the stored policy), which fastify's validator
    // cannot express: it validates a missing body as `null` and refuses it. This route checks
    // with the same schema through TypeBox instead (defaults filled, unknown keys named) and
    // lets an absent body through.
    validatorCompiler: ({ schema, httpPart }) => (data: unknown) => {
      if (httpPart === 'body' && (data === null || data === undefined)) return { value: undefined }
      try {
        return { value: checkSchema(schema as TSchema, data, httpPart ?? 'body') }
      } catch (err) {
        return { error: err as Error }
      }
    },
  }, async (req) => {
    const { name } = req.params as { name: string }
    const device = await deviceOr404(deps.store, name)
    const p = (req.body as Policy | undefined) ?? await deps.store.get('policy', name)
    if (p === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `device ${name} has no policy; send one in the body`)
    validatePolicy(p, await policyContext(deps.store, device))
    if (deps.checkPolicy === undefined) throw new BeckonError('BECKON_ERR_VICI_CONNECT', 'no charon is configured for policy checks (relay.yaml api.vici)')
    const r = await deps.checkPolicy(p, deviceView(deps.ipsecPrefix, device))
    await deps.store.audit({ actor: req.actor!, action: 'policy.check', target: `policy/${name}`, outcome: 'ok' })
    return { ok: true, verdict: 'charon loaded and unloaded the generated connection', connection: r.connection }
  })
}
