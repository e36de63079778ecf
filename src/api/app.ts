/**
 * The management API (Fastify 5): devices, per-device IPsec policies, users and groups,
 * gateways, the LDAP directory, API tokens, live sessions and the audit log.
 *
 * `buildApi(deps)` returns a ready-to-`inject()` instance and never listens (cli/ does,
 * on its own TLS listener). Every route has TypeBox schemas; the OpenAPI 3 document is
 * served at /openapi.json and a docs page at /docs. This module is the one place that
 * maps coded domain errors to HTTP statuses: `{ code, message }` bodies, the code from
 * src/core/errors.ts, validation failures naming the field.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { BeckonError, toBeckonError } from '../core/errors.js'
import type { Store } from '../store/store.js'
import { authHook } from './auth.js'
import { schemaError, type SchemaIssue } from '../core/schema.js'
import type { ApiDeps } from './deps.js'
import { Metrics } from '../core/metrics.js'
import { registerAudit } from './routes/audit.js'
import { registerDevices } from './routes/devices.js'
import { registerDirectory } from './routes/directory.js'
import { registerOps } from './routes/ops.js'
import { registerPrincipals } from './routes/principals.js'
import { registerSessions } from './routes/sessions.js'
import { registerTokens } from './routes/tokens.js'

export type { ApiDeps } from './deps.js'
export type Api = FastifyInstance

export async function buildApi (deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as unknown as FastifyBaseLogger,
    ...(deps.quiet === true ? { disableRequestLogging: true } : {}),
    bodyLimit: 256 * 1024,
    // Unknown keys are refused, not silently dropped (a typo must not pass unnoticed).
    ajv: { customOptions: { removeAdditional: false, useDefaults: true, coerceTypes: 'array', allErrors: false } },
    return503OnClosing: true,
    // The router refuses a malformed %-escape or a path parameter over 100 characters
    // before any handler or hook runs; without this those answer fastify's own uncoded
    // body (`FST_ERR_BAD_URL`, `FST_ERR_MAX_PARAM_LENGTH`) instead of `{ code, message }`.
    frameworkErrors: (err, _req, reply) => {
      const e = err.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new BeckonError('BECKON_ERR_VALIDATION', 'params: a path parameter is longer than 100 characters')
        : err.code === 'FST_ERR_BAD_URL'
          ? new BeckonError('BECKON_ERR_VALIDATION', `url: ${err.message}`)
          : toBeckonError(err)
      void (reply as FastifyReply).code(e.status).send(e.toJSON())
    },
  })

  app.decorate('deps', deps)
  app.setErrorHandler((err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
    const e = err.validation !== undefined
      ? schemaError(err.validationContext ?? 'body', err.validation[0] as SchemaIssue | undefined, err.message)
      : err instanceof BeckonError
        ? err
        : err.statusCode === 429
          ? new BeckonError('BECKON_ERR_RATE_LIMITED', err.message)
          : err.statusCode !== undefined && err.statusCode < 500
            ? new BeckonError('BECKON_ERR_VALIDATION', err.message)
            : toBeckonError(err)
    if (e.status >= 500) deps.log.error({ code: e.code, err: e.message }, 'api: request failed')
    void reply.code(e.status).send(e.toJSON())
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(new BeckonError('BECKON_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`).toJSON())
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Beckon management API', version: '1', description: 'Devices, per-device IPsec policies, users, gateways, sessions and the audit log of a Beckon relay.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token (`beckon token create`); scopes read < write < admin.' } } },
      security: [{ bearer: [] }],
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  await app.register(rateLimit, {
    max: deps.rateLimit?.max ?? 1200,
    timeWindow: deps.rateLimit?.windowMs ?? 60_000,
    // Per client address: a key taken from the (not yet checked) token would let a
    // client mint fresh budgets by inventing token ids.
    keyGenerator: (req) => req.ip,
    errorResponseBuilder: (_req, ctx) => Object.assign(new BeckonError('BECKON_ERR_RATE_LIMITED', `more than ${ctx.max} requests in ${ctx.after}`), { statusCode: 429 }),
  })

  const metrics = deps.metrics ?? new Metrics()
  app.addHook('onRequest', authHook(deps))
  app.addHook('onResponse', async (req, reply) => {
    metrics.apiRequests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) })
  })

  await app.register(async (v1) => {
    registerDevices(v1, deps)
    registerPrincipals(v1, deps)
    registerDirectory(v1, deps)
    registerTokens(v1, deps)
    registerSessions(v1, deps)
    registerAudit(v1, deps)
  }, { prefix: '/v1' })
  registerOps(app, deps, metrics)
  return app
}

declare module 'fastify' {
  interface FastifyInstance { deps: ApiDeps }
  interface FastifyContextConfig { scope?: 'read' | 'write' | 'admin' | 'none' }
}

export type { Store }
