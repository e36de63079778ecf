/**
 * The gateway (second, private proxy inside the carrier network): steps D–H.
 *
 *   signal in (SMS deliver_sm) → open + authenticate + freshness + replay check
 *   → E/F: connect the terminal's predetermined port (outbound, inside the carrier)
 *   → G: connect the relay named in the signal (outbound through the NAT)
 *   → H: hello with the session id and proof; on the relay's ack, splice.
 *
 * A signal that fails any check is logged with its code and nothing is dialled. When the
 * terminal does not answer, the gateway still dials back, saying so, so the client
 * gets a prompt 502 instead of waiting out the wake timeout.
 */
import type { KeyObject } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { Fields, type Obj } from '../../core/config.js'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../core/keys.js'
import type { Logger } from '../../core/log.js'
import { connectTcp, readExact, resetSocket, splice } from '../../core/stream.js'
import { ACK_SIZE, DialbackStatus, decodeAck, encodeHello } from '../../proto/dialback/dialback.js'
import { connectViaProxy, parseProxyUrl, proxyFor, type ProxyUrl } from '../../proto/connect/proxy.js'
import { dialbackProof, openSignal, type Signal } from '../../proto/signal/token.js'
import { PersistentReplayCache, REPLAY_FILE } from './replay.js'

export interface TerminalRoute { host: string, port: number }

export interface GatewayConfig {
  smpp: { url: string, systemId: string, password: string, addressRange: string } | undefined
  imap: { host: string, port: number, user: string, password: string, ca: string | undefined } | undefined
  x25519Private: KeyObject
  trustedRelays: KeyObject[]
  /** MSISDN or e-mail reference → the terminal's agent address. */
  terminals: Map<string, TerminalRoute>
  connectTimeoutMs: number
  maxSignalLifetimeSec: number
  /** Holds the replay cache (replay.json), so a restart does not reopen the replay window. */
  stateDir: string
  /**
   * Dial-backs go through this HTTP proxy (CONNECT) when the carrier has no direct way
   * out; absent, HTTPS_PROXY/NO_PROXY from the environment decide.
   */
  egressProxy: ProxyUrl | undefined
  /**
   * Traffic on every connection through the carrier NAT at least this often (TCP
   * keepalive on dial-backs, SMPP enquire_link), below the NAT's idle timeout.
   */
  natKeepaliveMs: number
}

/** Longest signal lifetime a gateway accepts: replay entries live that long. */
export const MAX_SIGNAL_LIFETIME_S = 86_400

export function parseGatewayConfig (obj: Obj, source = 'gateway.yaml', env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const f = new Fields(obj, source).only(['smpp', 'imap', 'keys', 'trusted_relays', 'terminals', 'connect_timeout', 'max_signal_lifetime_s', 'state_dir', 'egress_proxy', 'nat_keepalive'])
  const s = f.sub('smpp').only(['url', 'system_id', 'password', 'address_range'])
  const terminals = new Map<string, TerminalRoute>()
  for (const [ref, t] of f.entries('terminals')) terminals.set(ref, t.only(['address']).hostPort('address'))
  const relays = f.strList('trusted_relays')
  if (relays.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${source}.trusted_relays must name at least one relay key`)
  const im = f.sub('imap').only(['address', 'user', 'password', 'ca'])
  const imapAt = f.has('imap') ? im.hostPort('address') : undefined
  const keys = f.sub('keys').only(['x25519_private'])
  return {
    imap: imapAt === undefined ? undefined : { ...imapAt, user: im.str('user'), password: im.str('password'), ca: im.optStr('ca') },
    smpp: f.has('smpp') ? { url: s.str('url'), systemId: s.str('system_id'), password: s.str('password'), addressRange: s.str('address_range', '') } : undefined,
    x25519Private: privateKeyFromRaw('x25519', keys.str('x25519_private'), `${source}.keys.x25519_private`),
    trustedRelays: relays.map((k, i) => publicKeyFromRaw('x25519', k, `${source}.trusted_relays[${i}]`)),
    terminals,
    connectTimeoutMs: f.ms('connect_timeout', 5_000),
    maxSignalLifetimeSec: f.num('max_signal_lifetime_s', 3600, 1, MAX_SIGNAL_LIFETIME_S),
    stateDir: f.str('state_dir', env.STATE_DIRECTORY?.split(':')[0] ?? '/var/lib/beckon'),
    egressProxy: f.has('egress_proxy') ? parseProxyUrl(f.str('egress_proxy'), `${source}.egress_proxy`) : undefined,
    natKeepaliveMs: Math.max(1_000, f.ms('nat_keepalive', 25_000)),
  }
}

export interface GatewayStats {
  signals: number
  refused: Record<string, number>
  dialbacks: number
  unreachable: number
  active: number
}

export class Gateway {
  readonly stats: GatewayStats = { signals: 0, refused: {}, dialbacks: 0, unreachable: 0, active: 0 }
  private readonly replay: PersistentReplayCache
  private readonly sockets = new Set<Socket>()

  constructor (private readonly cfg: GatewayConfig, private readonly log: Logger, private readonly now: () => number = Date.now, private readonly env: NodeJS.ProcessEnv = process.env) {
    this.replay = new PersistentReplayCache(join(cfg.stateDir, REPLAY_FILE), Math.floor(now() / 1000))
    if (this.replay.size > 0) log.info({ entries: this.replay.size, file: this.replay.path }, 'gateway: replay cache loaded')
  }

  /** Wires an inbox that emits `signal` ({ token, from, to }) and `invalid` (err, meta). */
  attach (inbox: EventEmitter, channel: string): void {
    inbox.on('signal', (m: { token: Buffer, from: string, to: string }) => { void this.handle(m.token, { channel, from: m.from, to: m.to }) })
    inbox.on('invalid', (err: unknown, meta: Record<string, unknown>) => this.refuse(toBeckonError(err, 'BECKON_ERR_SMS_MALFORMED'), { channel, ...meta }))
  }

  /** Logs and counts a refused message from any channel; nothing is dialled. */
  refuse (e: BeckonError, meta: Record<string, unknown>): void {
    this.stats.refused[e.code] = (this.stats.refused[e.code] ?? 0) + 1
    this.log.warn({ code: e.code, err: e.message, ...meta }, 'gateway: signal refused; nothing dialled')
  }

  /** Handles one token from any channel: accept, then dial. Never throws. */
  async handle (token: Buffer, meta: Record<string, unknown>): Promise<void> {
    const s = this.accept(token, meta)
    if (!(s instanceof BeckonError)) await this.dial(s)
  }

  /**
   * Verifies a token (authenticity, freshness, replay, known terminal) without side
   * effects beyond the replay cache. Refusals are logged and counted here.
   */
  accept (token: Buffer, meta: Record<string, unknown>): Signal | BeckonError {
    this.stats.signals++
    const nowSec = Math.floor(this.now() / 1000)
    let s: Signal
    try {
      s = openSignal(token, { gatewayPrivate: this.cfg.x25519Private, relays: this.cfg.trustedRelays, now: nowSec, maxLifetimeSec: this.cfg.maxSignalLifetimeSec })
      this.replay.admit(s.sessionId, s.expiry, nowSec)
    } catch (err) {
      const e = toBeckonError(err, 'BECKON_ERR_SIGNAL_MALFORMED')
      this.refuse(e, meta)
      return e
    }
    if (!this.cfg.terminals.has(s.reference)) {
      const e = new BeckonError('BECKON_ERR_UNKNOWN_DEVICE', `no terminal for reference ${s.reference}`)
      this.refuse(e, { ...meta, session: s.sessionId.toString('hex') })
      return e
    }
    this.log.info({ session: s.sessionId.toString('hex'), reference: s.reference, stage: 'signalled', ...(s.resume === true ? { resume: true } : {}), ...meta }, 'gateway: signal accepted')
    return s
  }

  /** Steps E–H for an accepted signal. Never throws. */
  async dial (s: Signal): Promise<void> {
    const session = s.sessionId.toString('hex')
    const log = this.log.child({ session, reference: s.reference })
    const route = this.cfg.terminals.get(s.reference)!

    let terminal: Socket | undefined
    let status = DialbackStatus.CONNECTED
    try {
      terminal = await connectTcp(route.host, route.port, this.cfg.connectTimeoutMs)
      this.track(terminal)
      log.info({ stage: 'terminal-connected', terminal: `${route.host}:${route.port}` }, 'gateway: terminal answered')
    } catch (err) {
      status = DialbackStatus.UNREACHABLE
      this.stats.unreachable++
      log.warn({ err: toBeckonError(err).message, terminal: `${route.host}:${route.port}` }, 'gateway: terminal unreachable; telling the relay')
    }

    let relay: Socket | undefined
    try {
      relay = await this.dialRelay(s.relayAddress, s.dialbackPort, log)
      this.track(relay)
      this.stats.dialbacks++
      relay.write(encodeHello({ status, sessionId: s.sessionId, proof: dialbackProof(s.sessionKey, s.sessionId) }))
      const accepted = decodeAck(await readExact(relay, ACK_SIZE, 'dial-back ack', this.cfg.connectTimeoutMs))
      if (!accepted) throw new BeckonError('BECKON_ERR_DIALBACK_REFUSED', 'the relay refused the dial-back')
      if (terminal === undefined) { relay.end(); return }
      log.info({ stage: 'spliced' }, 'gateway: splicing relay and terminal')
      this.stats.active++
      const moving = splice(relay, terminal)
      // The one connection through the carrier NAT: probe it before the NAT forgets it.
      relay.setKeepAlive(true, this.cfg.natKeepaliveMs)
      const moved = await moving
      this.stats.active--
      log.info({ stage: 'closed', ...moved }, 'gateway: session closed')
    } catch (err) {
      const e = toBeckonError(err)
      log.warn({ code: e.code, err: e.message }, 'gateway: dial-back failed')
      relay?.destroy()
      terminal?.destroy()
    }
  }

  /** Step G: straight out, or through the egress proxy when one applies. */
  private async dialRelay (host: string, port: number, log: Logger): Promise<Socket> {
    const proxy = proxyFor(host, port, this.cfg.egressProxy, this.env)
    if (proxy === undefined) return await connectTcp(host, port, this.cfg.connectTimeoutMs)
    log.info({ proxy: `${proxy.host}:${proxy.port}` }, 'gateway: dialling back through the egress proxy')
    return await connectViaProxy(proxy, host, port, this.cfg.connectTimeoutMs)
  }

  private track (sock: Socket): void {
    sock.on('error', () => {})
    this.sockets.add(sock)
    sock.once('close', () => this.sockets.delete(sock))
  }

  close (): void {
    // A reset, not a FIN: the ends must see a broken path (an IPsec session re-joins, a
    // raw TCP one ends with BECKON_ERR_PATH_LOST), never a clean end of stream.
    for (const s of [...this.sockets]) resetSocket(s)
  }
}
