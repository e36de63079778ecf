/**
 * Operations: /health (the store and each configured dependency: SMSC bind, SMTP,
 * directory), /metrics (Prometheus text), /openapi.json. None needs a token and none
 * shows a secret.
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import type { Metrics } from '../../core/metrics.js'
import type { ApiDeps, HealthCheck } from '../deps.js'

const Check = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()), ms: Type.Optional(Type.Number()) })

async function timed (fn: () => Promise<HealthCheck>): Promise<HealthCheck> {
  const t0 = performance.now()
  try {
    const r = await fn()
    return { ms: r.ms ?? Math.round((performance.now() - t0) * 100) / 100, ...r }
  } catch (err) {
    return { ok: false, detail: (err as Error).message, ms: Math.round((performance.now() - t0) * 100) / 100 }
  }
}

export function registerOps (app: FastifyInstance, deps: ApiDeps, metrics: Metrics): void {
  app.get('/health', {
    config: { scope: 'none' },
    schema: { tags: ['operations'], summary: 'the store and each dependency; 503 when the store is down', security: [], response: { 200: Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), Check) }), 503: Type.Object({ status: Type.String(), checks: Type.Record(Type.String(), Check) }) } },
  }, async (_req, reply) => {
    const named = Object.entries({ store: async () => { await metrics.timeStore('ping', () => deps.store.ping()); return { ok: true } }, ...deps.health })
    const results = await Promise.all(named.map(async ([n, fn]) => [n, await timed(fn)] as const))
    const checks = Object.fromEntries(results)
    const status = checks.store!.ok ? (results.every(([, r]) => r.ok) ? 'ok' : 'degraded') : 'down'
    return reply.code(status === 'down' ? 503 : 200).send({ status, checks })
  })

  app.get('/metrics', {
    config: { scope: 'none' },
    // The response schema documents the text body; fastify sends a string with a non-JSON
    // content type as it is, without the serializer.
    schema: { tags: ['operations'], summary: 'Prometheus metrics', security: [], produces: ['text/plain'], response: { 200: Type.String({ description: 'Prometheus text exposition format 0.0.4' }) } },
  }, async (_req, reply) => {
    await metrics.timeStore('ping', () => deps.store.ping()).catch(() => {})
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  app.get('/openapi.json', {
    config: { scope: 'none' },
    // Listed in the document it serves, like every other route: clients and the /docs page
    // discover it there, and a test compares the document with the routes fastify has.
    schema: { tags: ['operations'], summary: 'this OpenAPI 3 document', security: [], response: { 200: Type.Object({ openapi: Type.String(), info: Type.Object({}, { additionalProperties: true }), paths: Type.Object({}, { additionalProperties: true }) }, { additionalProperties: true }) } },
  }, async () => app.swagger())
}
