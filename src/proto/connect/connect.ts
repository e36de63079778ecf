/**
 * HTTP CONNECT as Beckon speaks it (RFC 9110 §9.3.6).
 *
 *   CONNECT patient-phone:8080 HTTP/1.1        raw TCP to port 8080 of the device
 *   CONNECT patient-phone:ipsec HTTP/1.1       IPsec mode (descriptor in the 200)
 *   Proxy-Authorization: Basic … | Bearer …
 *   Beckon-Progress: 1                          ask for interim 102 responses
 *
 * Answers: `102 Processing` with `Beckon-Stage` while waiting (only when asked, since
 * plain clients such as curl expect a single final response), then `200 Connection
 * Established` or an error status with a JSON body `{code, message}`.
 * The relay parses requests with Node's HTTP parser; this module holds the pieces on
 * both sides of it, including the client's bounded response reader.
 */
import type { Socket } from 'node:net'
import { BeckonError } from '../../core/errors.js'
import { readExact, readUntil } from '../../core/stream.js'

export type Target = { device: string, mode: 'tcp', port: number } | { device: string, mode: 'ipsec' }

const DEVICE_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

export function parseTarget (authority: string): Target {
  const i = authority.lastIndexOf(':')
  if (i <= 0) throw new BeckonError('BECKON_ERR_BAD_REQUEST', `target ${JSON.stringify(authority)} is not <device>:<port> or <device>:ipsec`)
  const device = authority.slice(0, i).toLowerCase()
  const port = authority.slice(i + 1)
  if (!DEVICE_RE.test(device)) throw new BeckonError('BECKON_ERR_BAD_REQUEST', `device name ${JSON.stringify(device)} is not a DNS label`)
  if (port === 'ipsec') return { device, mode: 'ipsec' }
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN
  if (!(n >= 1 && n <= 65535)) throw new BeckonError('BECKON_ERR_BAD_REQUEST', `port ${JSON.stringify(port)} is not 1-65535 or "ipsec"`)
  return { device, mode: 'tcp', port: n }
}

export function isDeviceName (s: string): boolean {
  return DEVICE_RE.test(s)
}

export type Credentials = { scheme: 'basic', user: string, password: string } | { scheme: 'bearer', token: string }

export function parseProxyAuthorization (header: string | undefined): Credentials | undefined {
  if (header === undefined || header === '') return undefined
  const m = /^(\S+)\s+(\S+)$/.exec(header.trim())
  if (m === null) throw new BeckonError('BECKON_ERR_AUTH_FAILED', 'malformed Proxy-Authorization')
  const scheme = m[1]!.toLowerCase()
  if (scheme === 'bearer') return { scheme, token: m[2]! }
  if (scheme !== 'basic') throw new BeckonError('BECKON_ERR_AUTH_FAILED', `unsupported scheme ${m[1]}`)
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8')
  const c = decoded.indexOf(':')
  if (c <= 0) throw new BeckonError('BECKON_ERR_AUTH_FAILED', 'malformed Basic credentials')
  return { scheme, user: decoded.slice(0, c), password: decoded.slice(c + 1) }
}

export function basicAuth (user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

const REASONS: Record<number, string> = {
  102: 'Processing', 200: 'Connection Established', 400: 'Bad Request', 403: 'Forbidden',
  404: 'Not Found', 407: 'Proxy Authentication Required', 429: 'Too Many Requests',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
}

/** Serializes a response head; header values must not contain CR/LF. */
export function responseHead (status: number, headers: Record<string, string | number> = {}): string {
  let s = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\n`
  for (const [k, v] of Object.entries(headers)) {
    const val = String(v)
    if (/[\r\n]/.test(val)) throw new BeckonError('BECKON_ERR_INTERNAL', `header ${k} contains a line break`)
    s += `${k}: ${val}\r\n`
  }
  return s + '\r\n'
}

export function errorResponse (err: BeckonError, extra: Record<string, string> = {}): string {
  const body = JSON.stringify(err.toJSON())
  const auth: Record<string, string> = err.status === 407 ? { 'Proxy-Authenticate': 'Basic realm="beckon", Bearer realm="beckon"' } : {}
  return responseHead(err.status, { ...auth, ...extra, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' }) + body
}

export interface ConnectResponse {
  status: number
  headers: Map<string, string>
  /** For error statuses: the JSON body's code and message, when present. */
  error?: { code: string, message: string }
}

const MAX_HEAD = 16 * 1024

/**
 * Reads one response head from the relay (the client side). Bodies are read only for
 * final error responses with a Content-Length (bounded), since the 200 has none.
 */
export async function readResponse (sock: Socket, timeoutMs: number): Promise<ConnectResponse> {
  const head = (await readUntil(sock, Buffer.from('\r\n\r\n'), MAX_HEAD, 'CONNECT response', timeoutMs)).toString('latin1')
  const lines = head.split('\r\n').slice(0, -2)
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '')
  if (m === null) throw new BeckonError('BECKON_ERR_PROTOCOL', `bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
  const headers = new Map<string, string>()
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':')
    if (c <= 0) throw new BeckonError('BECKON_ERR_PROTOCOL', `bad header line ${JSON.stringify(l.slice(0, 80))}`)
    headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim())
  }
  const status = Number(m[1])
  const res: ConnectResponse = { status, headers }
  // Digits only (RFC 9110 §8.6): Number() takes "0.5", "1e3", " 7", and read(0.5) waits forever.
  const cl = headers.get('content-length') ?? '0'
  if (!/^\d{1,9}$/.test(cl)) throw new BeckonError('BECKON_ERR_PROTOCOL', `bad Content-Length ${JSON.stringify(cl.slice(0, 20))}`)
  const len = Number(cl)
  if (status >= 300 && len > 0 && len <= MAX_HEAD) {
    try {
      const raw = await readExact(sock, len, 'error body', timeoutMs)
      if (raw.length !== len) throw new BeckonError('BECKON_ERR_PROTOCOL', 'stream ended inside the error body')
      const body = JSON.parse(raw.toString('utf8')) as { code?: unknown, message?: unknown } | null
      if (body !== null && typeof body.code === 'string' && typeof body.message === 'string') res.error = { code: body.code, message: body.message }
    } catch { /* a body we cannot read leaves only the status */ }
  }
  return res
}
