/**
 * The client's half of the rendezvous (steps C and I): CONNECT to the relay with
 * credentials, follow the interim stages, and hand back the spliced stream.
 */
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import { BeckonError, ERRORS, toBeckonError, type ErrorCode } from '../../core/errors.js'
import { basicAuth, readResponse } from '../../proto/connect/connect.js'
import { connectViaProxy, proxyFor, type ProxyUrl } from '../../proto/connect/proxy.js'

export interface ClientOptions {
  relay: { host: string, port: number }
  /** TLS to the relay (required for Basic credentials unless the relay allows plain). */
  tls?: { ca?: string | Buffer, servername?: string } | undefined
  user?: string
  password?: string
  token?: string
  /** Overall deadline for the 200; the relay's wake timeout normally answers first. */
  timeoutMs?: number
  /**
   * Relays to try in this order (from DNS SRV, steps A/B); `relay` is then ignored. A relay
   * that refuses the connection, times out (`connectTimeoutMs`) or fails TLS is skipped for
   * the next; an HTTP answer from a relay is the answer.
   */
  relays?: RelayChoice[]
  /** TCP + TLS connect deadline per relay (default 10 s; 1 s with `relays`). */
  connectTimeoutMs?: number
  /** Reach the relay through this HTTP proxy (CONNECT); absent, HTTPS_PROXY/NO_PROXY decide. */
  proxy?: ProxyUrl | undefined
  /** Extra request headers (a re-join's `Beckon-Resume`). */
  headers?: Record<string, string>
}

export type Stage = 'connecting' | 'relay-failed' | 'requested' | 'signalled' | 'called-back' | 'connected' | 'ipsec-loaded' | 'tunnel-up' | 'path-lost' | 'rejoining' | 'rejoined' | 'closed'

/** One relay from DNS: the address to connect to and its host name (TLS server name). */
export interface RelayChoice { host: string, port: number, name?: string }

export interface Session {
  socket: Socket
  /** The relay that answered, host:port. */
  relay: string
  session: string
  channel: string
  elapsedMs: number
  /** IPsec mode: the signed descriptor frame and this session's PSK (psk auth). */
  descriptor?: Buffer
  psk?: Buffer
  /** IPsec mode: the path may re-join under this session within `windowMs`. */
  resume?: { secret: Buffer, windowMs: number }
}

const STATUS_CODES: Record<number, ErrorCode> = {
  400: 'BECKON_ERR_BAD_REQUEST',
  403: 'BECKON_ERR_FORBIDDEN',
  404: 'BECKON_ERR_UNKNOWN_DEVICE',
  407: 'BECKON_ERR_AUTH_FAILED',
  429: 'BECKON_ERR_RATE_LIMITED',
  502: 'BECKON_ERR_TERMINAL_UNREACHABLE',
  503: 'BECKON_ERR_OVERLOADED',
  504: 'BECKON_ERR_WAKE_TIMEOUT',
}

async function dial (o: ClientOptions, timeoutMs: number): Promise<Socket> {
  const { host, port } = o.relay
  const proxy = proxyFor(host, port, o.proxy)
  // Through a proxy, the TCP stream to the relay is the proxy's tunnel; TLS runs inside it.
  const tunnel = proxy === undefined ? undefined : await connectViaProxy(proxy, host, port, timeoutMs)
  return await new Promise((resolve, reject) => {
    const tcp = (): Socket => tunnel ?? net.connect({ host, port, allowHalfOpen: true })
    const sock: Socket = o.tls === undefined
      ? tcp()
      // TLS over a half-close-capable TCP socket, so a FIN can pass through the tunnel.
      : tls.connect({ socket: tcp(), host, ca: o.tls.ca, servername: o.tls.servername ?? (net.isIP(host) === 0 ? host : undefined) })
    if (tunnel !== undefined && o.tls === undefined) { resolve(sock); return }
    const ready = o.tls === undefined ? 'connect' : 'secureConnect'
    const timer = setTimeout(() => { sock.destroy(); reject(new BeckonError('BECKON_ERR_TIMEOUT', `relay ${host}:${port} did not answer`)) }, timeoutMs)
    sock.once(ready, () => { clearTimeout(timer); resolve(sock) })
    sock.once('error', (err) => { clearTimeout(timer); reject(new BeckonError('BECKON_ERR_PROTOCOL', `relay ${host}:${port}: ${err.message}`, { cause: err })) })
  })
}

/** CONNECT through `o.relay`, or through the first of `o.relays` that answers. */
export async function openSession (o: ClientOptions, target: string, onStage?: (stage: Stage, detail: Record<string, unknown>) => void): Promise<Session> {
  if (o.relays === undefined) return await openSessionAt(o, target, onStage)
  const failed: string[] = []
  for (const [i, r] of o.relays.entries()) {
    const at = `${net.isIPv6(r.host) ? `[${r.host}]` : r.host}:${r.port}`
    const opts: ClientOptions = {
      ...o,
      relay: { host: r.host, port: r.port },
      connectTimeoutMs: o.connectTimeoutMs ?? 1_000,
      tls: o.tls === undefined ? undefined : { ...o.tls, servername: o.tls.servername ?? r.name },
    }
    // Once the CONNECT is written the relay has it: what follows is its answer, not a reason to
    // try another relay (which would signal the device a second time).
    let requested = false
    try {
      return await openSessionAt(opts, target, (stage, d) => {
        if (stage === 'requested') requested = true
        onStage?.(stage, stage === 'connecting' ? { ...d, ...(r.name === undefined ? {} : { name: r.name }) } : d)
      })
    } catch (err) {
      if (requested || (err as { httpStatus?: number }).httpStatus !== undefined) throw err
      const e = toBeckonError(err)
      failed.push(`${r.name ?? at} (${at}): ${e.message}`)
      const next = o.relays[i + 1]
      onStage?.('relay-failed', { relay: at, ...(r.name === undefined ? {} : { name: r.name }), code: e.code, reason: e.message, ...(next === undefined ? {} : { next: next.name ?? `${next.host}:${next.port}` }) })
    }
  }
  throw new BeckonError('BECKON_ERR_RELAYS_UNREACHABLE', failed.length === 0 ? 'no relay to try' : failed.join('; '))
}

async function openSessionAt (o: ClientOptions, target: string, onStage?: (stage: Stage, detail: Record<string, unknown>) => void): Promise<Session> {
  const started = Date.now()
  const timeoutMs = o.timeoutMs ?? 15 * 60_000
  const elapsed = (): number => Date.now() - started
  onStage?.('connecting', { relay: `${o.relay.host}:${o.relay.port}` })
  const sock = await dial(o, Math.min(timeoutMs, o.connectTimeoutMs ?? 10_000))
  sock.on('error', () => {})
  try {
    const auth = o.token !== undefined ? `Bearer ${o.token}` : o.user !== undefined ? basicAuth(o.user, o.password ?? '') : undefined
    const extra = Object.entries(o.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth === undefined ? '' : `Proxy-Authorization: ${auth}\r\n`}Beckon-Progress: 1\r\n${extra}\r\n`)
    onStage?.('requested', { elapsedMs: elapsed() })
    for (;;) {
      const res = await readResponse(sock, Math.max(1, timeoutMs - elapsed()))
      if (res.status === 102) {
        const stage = res.headers.get('beckon-stage') ?? ''
        const [name, ...params] = stage.split(';').map((s) => s.trim())
        const detail: Record<string, unknown> = { elapsedMs: elapsed() }
        for (const p of params) { const [k, v] = p.split('='); if (k !== undefined && v !== undefined) detail[k] = v }
        if (name === 'signalled' || name === 'called-back') onStage?.(name, detail)
        continue
      }
      if (res.status === 200) {
        const s: Session = { socket: sock, relay: `${net.isIPv6(o.relay.host) ? `[${o.relay.host}]` : o.relay.host}:${o.relay.port}`, session: res.headers.get('beckon-session') ?? '', channel: res.headers.get('beckon-channel') ?? '', elapsedMs: elapsed() }
        const desc = res.headers.get('beckon-descriptor')
        const psk = res.headers.get('beckon-psk')
        if (desc !== undefined) s.descriptor = Buffer.from(desc, 'base64url')
        if (psk !== undefined) s.psk = Buffer.from(psk, 'base64url')
        const rs = /^window=(\d{1,10}); secret=([A-Za-z0-9_-]{43})$/.exec(res.headers.get('beckon-resume') ?? '')
        if (rs !== null) s.resume = { windowMs: Number(rs[1]), secret: Buffer.from(rs[2]!, 'base64url') }
        onStage?.('connected', { elapsedMs: s.elapsedMs, session: s.session, channel: s.channel })
        return s
      }
      const code = res.error !== undefined && res.error.code in ERRORS ? res.error.code as ErrorCode : STATUS_CODES[res.status] ?? 'BECKON_ERR_PROTOCOL'
      const detail = res.error?.message ?? `relay answered ${res.status}`
      // Keep the relay's own wording: it already starts with the table's message.
      const err = new BeckonError(code, detail.startsWith(ERRORS[code].message) ? detail.slice(ERRORS[code].message.length).replace(/^: /, '') || undefined : detail)
      throw Object.assign(err, { httpStatus: res.status })
    }
  } catch (err) {
    sock.destroy()
    throw err
  }
}
