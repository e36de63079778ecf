/**
 * Reaching a host through an HTTP proxy with CONNECT (RFC 9110 §9.3.6), as carriers and
 * enterprises require when their networks have no direct route out.
 *
 *   → CONNECT 198.51.100.20:7001 HTTP/1.1\r\n
 *     Host: 198.51.100.20:7001\r\n
 *     Proxy-Authorization: Basic base64(user:pass)\r\n       (RFC 9110 §11.7.2, §11.6.2)
 *     \r\n
 *   ← HTTP/1.1 200 Connection established\r\n\r\n            then the raw byte stream
 *
 * Which connections use a proxy follows the curl/Go conventions for `HTTPS_PROXY`
 * (`https_proxy`) and `NO_PROXY` (`no_proxy`): a comma-separated list of host names,
 * domain suffixes (`.example.org` or `example.org`), IP addresses, CIDR prefixes, each
 * optionally with `:port`, or `*` for everything. An explicit setting (a role's
 * `egress_proxy`) replaces the environment's proxy but NO_PROXY still applies.
 */
import net, { type Socket } from 'node:net'
import { BeckonError } from '../../core/errors.js'
import { connectTcp } from '../../core/stream.js'
import { basicAuth, readResponse } from './connect.js'

export interface ProxyUrl {
  host: string
  port: number
  user?: string
  password?: string
}

/** `http://[user:pass@]host:port` (IPv6 in brackets). Only http:// proxies are supported. */
export function parseProxyUrl (s: string, what = 'proxy'): ProxyUrl {
  let u: URL
  try { u = new URL(s.includes('://') ? s : `http://${s}`) } catch {
    throw new BeckonError('BECKON_ERR_CONFIG', `${what}: ${JSON.stringify(s)} is not a URL like http://user:pass@host:port`)
  }
  if (u.protocol !== 'http:') throw new BeckonError('BECKON_ERR_CONFIG', `${what}: only http:// proxies are supported, not ${u.protocol}`)
  if (u.pathname !== '/' && u.pathname !== '') throw new BeckonError('BECKON_ERR_CONFIG', `${what}: a proxy URL has no path`)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  if (host === '') throw new BeckonError('BECKON_ERR_CONFIG', `${what}: no host`)
  const p: ProxyUrl = { host, port: u.port === '' ? 80 : Number(u.port) }
  if (u.username !== '') p.user = decodeURIComponent(u.username)
  if (u.password !== '') p.password = decodeURIComponent(u.password)
  return p
}

/** True when NO_PROXY (`noProxy`) exempts host:port from the proxy. */
export function bypassesProxy (host: string, port: number, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  for (let entry of noProxy.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean)) {
    if (entry === '*') return true
    let entryPort: number | undefined
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry)
    if (m !== null && net.isIP(entry) === 0) { entry = m[1]!; entryPort = Number(m[2]) }
    entry = entry.replace(/^\[(.*)\]$/, '$1')
    if (entryPort !== undefined && entryPort !== port) continue
    const fam = net.isIP(h) === 6 ? 'ipv6' : 'ipv4'
    const slash = entry.indexOf('/')
    if (slash > 0 || net.isIP(entry) !== 0) {
      // Addresses and prefixes compare as addresses (node's BlockList), never as text.
      const addr = slash > 0 ? entry.slice(0, slash) : entry
      const efam = net.isIP(addr) === 6 ? 'ipv6' : 'ipv4'
      const len = slash > 0 ? Number(entry.slice(slash + 1)) : (efam === 'ipv6' ? 128 : 32)
      if (net.isIP(addr) === 0 || net.isIP(h) === 0 || efam !== fam || !Number.isInteger(len) || len < 0 || len > (efam === 'ipv6' ? 128 : 32)) continue
      const list = new net.BlockList()
      list.addSubnet(addr, len, efam)
      if (list.check(h, fam)) return true
      continue
    }
    const suffix = entry.startsWith('.') ? entry.slice(1) : entry
    if (h === suffix || h.endsWith(`.${suffix}`)) return true
  }
  return false
}

/**
 * The proxy to use for host:port: `explicit` if given, else HTTPS_PROXY/https_proxy
 * from `env`; none when NO_PROXY/no_proxy exempts the destination.
 */
export function proxyFor (host: string, port: number, explicit: ProxyUrl | undefined, env: NodeJS.ProcessEnv = process.env): ProxyUrl | undefined {
  const fromEnv = env.HTTPS_PROXY ?? env.https_proxy
  const p = explicit ?? (fromEnv === undefined || fromEnv === '' ? undefined : parseProxyUrl(fromEnv, 'HTTPS_PROXY'))
  if (p === undefined) return undefined
  return bypassesProxy(host, port, env.NO_PROXY ?? env.no_proxy) ? undefined : p
}

/** The CONNECT request head for host:port, with Basic credentials when the URL has them. */
export function connectRequest (host: string, port: number, proxy: ProxyUrl): string {
  const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
  const auth = proxy.user === undefined ? '' : `Proxy-Authorization: ${basicAuth(proxy.user, proxy.password ?? '')}\r\n`
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`
}

/**
 * Connects to host:port through the proxy; resolves with the tunnelled socket, paused
 * and positioned at the first byte after the proxy's response (nothing lost). Refusals
 * (407 credentials, 403 not allowed, 5xx cannot reach) are BECKON_ERR_PROXY_REFUSED.
 */
export async function connectViaProxy (proxy: ProxyUrl, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const started = Date.now()
  const sock = await connectTcp(proxy.host, proxy.port, timeoutMs)
  try {
    sock.write(connectRequest(host, port, proxy))
    const res = await readResponse(sock, Math.max(1, timeoutMs - (Date.now() - started)))
    if (res.status < 200 || res.status > 299) {
      throw new BeckonError('BECKON_ERR_PROXY_REFUSED', `${proxy.host}:${proxy.port} answered ${res.status} to CONNECT ${host}:${port}${res.status === 407 ? ' (proxy credentials missing or wrong)' : ''}`)
    }
    sock.pause()
    return sock
  } catch (err) {
    sock.destroy()
    throw err
  }
}
