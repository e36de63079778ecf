/**
 * Serves the management API on its own TLS listener (default 127.0.0.1:8444) beside
 * the relay. With no certificate configured, a self-signed one is made in the state
 * directory at first start; with no token in the store, a bootstrap admin token is
 * written to `<state_dir>/admin.token` (0600) — its path is logged, never the token.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildApi, type ApiDeps } from '../api/app.js'
import { newToken } from '../api/auth.js'
import { run } from '../core/exec.js'
import type { Logger } from '../core/log.js'
import type { Store } from '../store/store.js'
import type { ApiListen } from '../roles/relay/config.js'
import type { FastifyInstance } from 'fastify'

async function selfSigned (dir: string, host: string): Promise<{ cert: string, key: string }> {
  const cert = join(dir, 'api.crt')
  const key = join(dir, 'api.key')
  if (existsSync(cert) && existsSync(key)) return { cert, key }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const san = /^[\d.]+$|:/.test(host) ? `IP:${host}` : `DNS:${host}`
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-days', '825', '-subj', '/CN=beckon-api', '-addext', `subjectAltName=${san},IP:127.0.0.1,DNS:localhost`])
  return { cert, key }
}

/** Creates the first admin token when the store has none. Returns its file, if made. */
export async function bootstrapToken (store: Store, stateDir: string, log: Logger): Promise<string | undefined> {
  if ((await store.list('token')).length > 0) return undefined
  const { token, record } = newToken('bootstrap-admin', ['admin'])
  await store.put('token', record.id, record, 'relay:bootstrap', { create: true })
  mkdirSync(stateDir, { recursive: true })
  const file = join(stateDir, 'admin.token')
  writeFileSync(file, token + '\n', { mode: 0o600 })
  log.info({ file, id: record.id }, 'api: bootstrap admin token written')
  return file
}

export async function serveApi (o: ApiListen, stateDir: string, deps: Omit<ApiDeps, 'secure'>): Promise<FastifyInstance> {
  const tls = o.tls ?? await selfSigned(stateDir, o.listen.host)
  const app = await buildApi({ ...deps, secure: true, rateLimit: o.rateLimit })
  // buildApi never listens; here the same routes get an HTTPS server.
  const https = await import('node:https')
  const server = https.createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, (req, res) => { app.routing(req, res) })
  app.addHook('onClose', async () => { await new Promise((resolve) => server.close(resolve)) })
  await app.ready()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.listen.port, o.listen.host, () => { server.off('error', reject); resolve() })
  })
  deps.log.info({ api: `https://${o.listen.host}:${o.listen.port}`, cert: tls.cert }, 'api listening')
  return app
}
