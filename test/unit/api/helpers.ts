/**
 * Fixtures for the management API's inject() tests: a fresh app over an in-memory SQLite store,
 * one token per scope, and small record builders. Nothing here listens.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApi, type ApiDeps } from '../../../src/api/app.js'
import { newToken } from '../../../src/api/auth.js'
import { silentLogger } from '../../../src/core/log.js'
import { memoryStore } from '../../../src/store/memory.js'
import type { Store } from '../../../src/store/store.js'
import type { Device, Gateway, Policy, Scope, SessionRecord } from '../../../src/store/records.js'

export interface Harness {
  app: FastifyInstance
  store: Store
  /** One token per scope, as `Authorization` header values. */
  auth: Record<Scope, string>
  /** The raw tokens. */
  tokens: Record<Scope, { token: string, id: string, actor: string }>
  /** inject() with a bearer token of the given scope (or none / a raw header). */
  req: (method: string, url: string, opts?: { as?: Scope | null, header?: string, body?: unknown, payload?: string, headers?: Record<string, string> }) => Promise<LightMyRequestResponse>
}

export const KEY = (c: string): string => c.repeat(43)

export async function harness (t: { teardown: (fn: () => unknown) => void }, extra: Partial<ApiDeps> = {}): Promise<Harness> {
  const store = extra.store ?? await memoryStore()
  if (extra.store === undefined) t.teardown(async () => await store.close())
  const tokens = {} as Harness['tokens']
  const auth = {} as Record<Scope, string>
  for (const scope of ['read', 'write', 'admin'] as const) {
    const { token, record } = newToken(`${scope}-token`, [scope])
    await store.put('token', record.id, record, 'test:setup', { create: true })
    tokens[scope] = { token, id: record.id, actor: `token:${record.id}:${scope}-token` }
    auth[scope] = `Bearer ${token}`
  }
  const app = await buildApi({ store, log: silentLogger, secure: true, ipsecPrefix: 'fd00:beca::/48', quiet: true, ...extra })
  t.teardown(async () => await app.close())
  const req: Harness['req'] = async (method, url, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.header !== undefined) headers.authorization = opts.header
    else if (opts.as !== null) headers.authorization = auth[opts.as ?? 'admin']
    return await app.inject({
      method: method as 'GET',
      url,
      headers,
      ...(opts.payload !== undefined ? { payload: opts.payload } : opts.body !== undefined ? { payload: opts.body as object } : {}),
    })
  }
  return { app, store, auth, tokens, req }
}

export const gateway = (name = 'gw1', extra: Partial<Gateway> = {}): Gateway => ({ name, public_key: KEY('g'), ...extra })

/** A device body as a client sends it (defaults left to the schema). */
export const deviceBody = (name = 'phone1', gw = 'gw1', extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name,
  gateway: gw,
  msisdn: '+4915112345678',
  agent_public_key: KEY('A'),
  services: [{ name: 'glucose', port: 8080 }],
  ...extra,
})

export const device = (name = 'phone1', gw = 'gw1', extra: Partial<Device> = {}): Device => ({
  name,
  gateway: gw,
  msisdn: '+4915112345678',
  port: 7400,
  channels: ['sms'],
  wake_timeout_ms: 15_000,
  agent_public_key: KEY('A'),
  services: [{ name: 'glucose', protocol: 'tcp', port: 8080 }],
  ...extra,
})

export const policy = (extra: Partial<Policy> = {}): Policy => ({
  auth: 'psk',
  rules: [{ users: ['alice'], groups: [], protocol: 'tcp', ports: [8080], ipsec: true, raw_tcp: false }],
  ike_proposals: ['aes256gcm16-prfsha256-x25519'],
  esp_proposals: ['aes256gcm16'],
  ike_rekey_s: 14_400,
  child_rekey_s: 3600,
  dpd_s: 30,
  raw_tcp: false,
  ...extra,
})

let seq = 0
export const session = (extra: Partial<SessionRecord> = {}): SessionRecord => ({
  id: (++seq).toString(16).padStart(24, '0'),
  relay: 'relay-a',
  user: 'alice',
  device: 'phone1',
  mode: 'ipsec',
  stage: 'connected',
  fallback: [],
  bytes_up: 0,
  bytes_down: 0,
  started_at: 1_700_000_000_000 + seq,
  ...extra,
})

/** Seeds a gateway, a user and a device with a policy straight into the store. */
export async function seedDevice (store: Store, name = 'phone1'): Promise<void> {
  if (await store.get('gateway', 'gw1') === undefined) await store.put('gateway', 'gw1', gateway(), 'test:setup')
  if (await store.get('user', 'alice') === undefined) await store.put('user', 'alice', { name: 'alice', groups: [] }, 'test:setup')
  await store.put('device', name, device(name), 'test:setup')
  await store.put('policy', name, policy(), 'test:setup')
}

/** Every secret-looking value a response must never carry. */
export function secretsIn (body: string): string[] {
  const found: string[] = []
  if (/scrypt\$/.test(body)) found.push('password hash')
  // A field that holds a value (a schema in /openapi.json is an object, a redacted one says so).
  const valued = (field: string): boolean => new RegExp(`"${field}"\\s*:\\s*(?:"(?!\\[redacted\\])|\\[)`).test(body)
  if (valued('hash')) found.push('token hash')
  if (valued('password_hash')) found.push('password_hash field')
  if (valued('token_sha256')) found.push('token_sha256 field')
  if (valued('bind_password')) found.push('bind_password field')
  if (/bkn_[a-f0-9]{16}_[A-Za-z0-9_-]{43}/.test(body)) found.push('token secret')
  return found
}

/**
 * The routes fastify has, as `METHOD /path` (fastify's `:param` syntax), from
 * `printRoutes()`'s tree: HEAD twins and the /docs UI's own routes left out.
 */
export function fastifyRoutes (app: FastifyInstance): Set<string> {
  const out = new Set<string>()
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (m === null) continue
    const depth = [...m[1]!].length / 4
    stack.length = depth
    const full = (depth === 0 ? '' : stack[depth - 1]!) + m[2]!
    stack.push(full)
    for (const method of (m[3] ?? '').split(', ').filter(Boolean)) {
      if (method === 'HEAD' || full.startsWith('/docs')) continue
      out.add(`${method} ${full}`)
    }
  }
  return out
}

/** `/v1/devices/:name` → `/v1/devices/{name}` */
export const openapiPath = (p: string): string => p.replace(/:(\w+)/g, '{$1}')

export const json = (r: LightMyRequestResponse): any => JSON.parse(r.body)
