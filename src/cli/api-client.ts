/**
 * A small typed client for the management API (src/api/), used by `beckon device …`,
 * `beckon policy …` and the other management commands (src/cli/manage.ts).
 *
 * Where it connects, and with what, is resolved per value in this order:
 *
 *   flag            environment        config file (--api-config, BECKON_API_CONFIG,
 *                                                    default ~/.config/beckon/api.yaml)
 *   --api <url>     BECKON_API         url:    https://relay.example:8444
 *   --token <tok>   BECKON_TOKEN       token:  bkn_<id>_<secret>
 *   --ca <file>     BECKON_API_CA      ca:     a PEM file (relative to the config file)
 *
 * The URL defaults to https://127.0.0.1:8444 (the relay's own API listener); the CA to
 * the system store. Only https:// is accepted: the API refuses tokens on a plain
 * listener, and by then the token would already have crossed the wire.
 *
 * The token is a secret: it is sent in the Authorization header and never appears in
 * an error message or in output. An error answer `{ code, message }` becomes a
 * BeckonError with the API's code, so `exitWithError` prints that code and exits 1.
 */
import { existsSync, readFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import type { IncomingMessage } from 'node:http'
import { homedir } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { readYamlFile } from '../core/config.js'
import { BeckonError, ERRORS, type ErrorCode } from '../core/errors.js'

export const DEFAULT_API_URL = 'https://127.0.0.1:8444'
export const DEFAULT_TIMEOUT_MS = 10_000
/** The shape of `bkn_<id>_<secret>` (src/api/auth.ts), checked before anything is sent. */
const TOKEN_RE = /^bkn_[a-f0-9]{16}_[A-Za-z0-9_-]{43}$/
/** Answers above this are refused: no management answer comes near it. */
const MAX_BODY = 32 * 1024 * 1024
const CONFIG_KEYS = new Set(['url', 'token', 'ca'])

/** The connection flags every management command takes. */
export interface ApiFlags {
  api?: string
  token?: string
  /** The API's CA (PEM file). */
  ca?: string
  apiConfig?: string
  /** Milliseconds for the whole request, answer included. */
  timeoutMs?: number
}

export interface ApiTarget {
  url: URL
  token: string
  /** PEM text of the CA that signs the API's certificate; undefined = system store. */
  ca?: string
  timeoutMs: number
}

const set = (v: string | undefined): v is string => v !== undefined && v !== ''

function defaultConfigPath (env: NodeJS.ProcessEnv): string {
  return join(set(env.HOME) ? env.HOME : homedir(), '.config', 'beckon', 'api.yaml')
}

interface FileConfig { path: string, url?: string, token?: string, ca?: string }

function readConfig (flags: ApiFlags, env: NodeJS.ProcessEnv): FileConfig {
  const explicit = set(flags.apiConfig) ? flags.apiConfig : set(env.BECKON_API_CONFIG) ? env.BECKON_API_CONFIG : undefined
  const path = explicit ?? defaultConfigPath(env)
  // The default file is optional; one that was named must exist.
  if (explicit === undefined && !existsSync(path)) return { path }
  const obj = readYamlFile(path)
  const out: FileConfig = { path }
  for (const [k, v] of Object.entries(obj)) {
    if (!CONFIG_KEYS.has(k)) throw new BeckonError('BECKON_ERR_CONFIG', `${path}.${k}: unknown key (known: url, token, ca)`)
    if (v === null || v === undefined) continue
    if (typeof v !== 'string' || v === '') throw new BeckonError('BECKON_ERR_CONFIG', `${path}.${k}: must be a non-empty string`)
    out[k as 'url' | 'token' | 'ca'] = v
  }
  if (out.ca !== undefined && !out.ca.startsWith('-----BEGIN') && !isAbsolute(out.ca)) out.ca = resolve(dirname(path), out.ca)
  return out
}

function readCa (where: string, value: string): string {
  if (value.startsWith('-----BEGIN')) return value
  try {
    return readFileSync(value, 'utf8')
  } catch (err) {
    throw new BeckonError('BECKON_ERR_CONFIG', `${where}: cannot read the API's CA: ${(err as Error).message}`)
  }
}

/** Resolves URL, token and CA from flags, then the environment, then the config file. */
export function resolveApiTarget (flags: ApiFlags, env: NodeJS.ProcessEnv = process.env): ApiTarget {
  let file: FileConfig | undefined
  const cfg = (): FileConfig => (file ??= readConfig(flags, env))
  const pick = (flag: string | undefined, flagName: string, envName: string, key: 'url' | 'token' | 'ca'): { value: string, from: string } | undefined => {
    if (set(flag)) return { value: flag, from: flagName }
    const e = env[envName]
    if (set(e)) return { value: e, from: envName }
    const c = cfg()[key]
    return c === undefined ? undefined : { value: c, from: `${cfg().path}.${key}` }
  }

  const token = pick(flags.token, '--token', 'BECKON_TOKEN', 'token')
  if (token === undefined) {
    throw new BeckonError('BECKON_ERR_USAGE', `no API token: pass --token <token>, set BECKON_TOKEN, or put "token: <token>" in ${cfg().path} (or the file named by --api-config / BECKON_API_CONFIG); create one with "beckon token create"`)
  }
  // Never echo the value: a password pasted by mistake must not end up in a log.
  if (!TOKEN_RE.test(token.value)) throw new BeckonError('BECKON_ERR_USAGE', `the API token from ${token.from} is malformed (expected bkn_<16 hex digits>_<43 base64url characters>)`)

  const u = pick(flags.api, '--api', 'BECKON_API', 'url') ?? { value: DEFAULT_API_URL, from: 'the default' }
  let url: URL
  try {
    url = new URL(u.value)
  } catch {
    throw new BeckonError('BECKON_ERR_USAGE', `the API URL from ${u.from} is not a URL: ${u.value}`)
  }
  if (url.protocol !== 'https:') throw new BeckonError('BECKON_ERR_USAGE', `the API URL from ${u.from} must be https:// (tokens are never sent in clear): ${u.value}`)
  if (url.username !== '' || url.password !== '') throw new BeckonError('BECKON_ERR_USAGE', `the API URL from ${u.from} must not carry credentials; use the token`)

  const c = pick(flags.ca, '--ca', 'BECKON_API_CA', 'ca')
  const timeoutMs = flags.timeoutMs ?? DEFAULT_TIMEOUT_MS
  return { url, token: token.value, timeoutMs, ...(c === undefined ? {} : { ca: readCa(c.from, c.value) }) }
}

export type Query = Record<string, string | number | boolean | undefined>

export interface ApiResponse<T> {
  status: number
  /** Undefined for 204. */
  body: T | undefined
}

/** The API's `{ code, message }` as a BeckonError carrying the same code and message. */
export function apiError (status: number, body: unknown): BeckonError {
  const b = body as { code?: unknown, message?: unknown } | undefined
  if (typeof b?.code === 'string' && Object.hasOwn(ERRORS, b.code)) {
    const code = b.code as ErrorCode
    const msg = typeof b.message === 'string' ? b.message : undefined
    // The API's message already starts with the table's text; keep it once.
    const generic = ERRORS[code].message
    const detail = msg === undefined || msg === generic ? undefined : msg.startsWith(`${generic}: `) ? msg.slice(generic.length + 2) : msg
    return new BeckonError(code, detail)
  }
  const text = typeof body === 'string' ? body.slice(0, 200) : JSON.stringify(body)?.slice(0, 200)
  return new BeckonError('BECKON_ERR_PROTOCOL', `the API answered HTTP ${status} without a known error code: ${text ?? '(empty)'}`)
}

const TLS_TRUST = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED'])

function transportError (url: URL, err: NodeJS.ErrnoException): BeckonError {
  if (err instanceof BeckonError) return err
  const where = `the management API at ${url.origin}`
  if (err.code !== undefined && TLS_TRUST.has(err.code)) {
    return new BeckonError('BECKON_ERR_CONFIG', `${where} presented a certificate this client does not trust (${err.code}); pass its CA with --ca, BECKON_API_CA or ca: in the API config`, { cause: err })
  }
  return new BeckonError('BECKON_ERR_CONFIG', `cannot reach ${where} (${err.code ?? err.message}); check --api, BECKON_API or url: in the API config`, { cause: err })
}

export class ApiClient {
  private readonly agent: Agent

  constructor (readonly target: ApiTarget) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 4, ...(target.ca === undefined ? {} : { ca: target.ca }) })
  }

  /** One request; resolves with the parsed answer, rejects with a coded error. */
  async request<T = unknown> (method: string, path: string, opts: { query?: Query, body?: unknown } = {}): Promise<ApiResponse<T>> {
    const base = this.target.url
    const url = new URL(base.pathname.replace(/\/+$/, '') + path, base)
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body))
    const headers: Record<string, string> = { authorization: `Bearer ${this.target.token}`, accept: 'application/json' }
    // No content-type without a body: Fastify refuses an empty JSON body.
    if (payload !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = String(payload.length) }

    const res = await new Promise<{ status: number, type: string, data: Buffer }>((resolve, reject) => {
      const req = httpsRequest(url, { method, headers, agent: this.agent }, (r: IncomingMessage) => {
        const chunks: Buffer[] = []
        let size = 0
        r.on('data', (c: Buffer) => {
          size += c.length
          if (size > MAX_BODY) req.destroy(new BeckonError('BECKON_ERR_PROTOCOL', `answer to ${method} ${url.pathname} exceeds ${MAX_BODY} bytes`))
          else chunks.push(c)
        })
        r.on('end', () => resolve({ status: r.statusCode ?? 0, type: String(r.headers['content-type'] ?? ''), data: Buffer.concat(chunks) }))
        r.on('error', (err) => reject(transportError(url, err)))
      })
      const timer = setTimeout(() => req.destroy(new BeckonError('BECKON_ERR_TIMEOUT', `${method} ${url.pathname}: no answer from ${url.origin} within ${this.target.timeoutMs} ms`)), this.target.timeoutMs)
      req.on('close', () => clearTimeout(timer))
      req.on('error', (err) => { clearTimeout(timer); reject(transportError(url, err)) })
      req.end(payload)
    })

    let body: unknown
    if (res.data.length > 0) {
      if (/\bjson\b/.test(res.type)) {
        try {
          body = JSON.parse(res.data.toString('utf8'))
        } catch {
          throw new BeckonError('BECKON_ERR_PROTOCOL', `${method} ${url.pathname}: the API answered HTTP ${res.status} with invalid JSON`)
        }
      } else {
        body = res.data.toString('utf8')
      }
    }
    if (res.status >= 400) throw apiError(res.status, body)
    if (res.status < 200 || res.status >= 300) throw new BeckonError('BECKON_ERR_PROTOCOL', `${method} ${url.pathname}: unexpected HTTP ${res.status}`)
    return { status: res.status, body: body as T | undefined }
  }

  async get<T = unknown> (path: string, query?: Query): Promise<T> {
    return (await this.request<T>('GET', path, { query })).body as T
  }

  /** Closes idle keep-alive connections so the process can exit. */
  close (): void {
    this.agent.destroy()
  }
}

/** `encodeURIComponent` for one path segment (names are validated by the API). */
export const seg = (s: string): string => encodeURIComponent(s)
