/**
 * The relay (first public proxy): steps C, D, G, H and I of the rendezvous.
 *
 *   client ──CONNECT dev:port──▶ relay ──signal (SMS…)──▶ gateway
 *   gateway ──dial-back hello (session id, proof)──▶ relay ──ack──▶ gateway
 *   relay ──signed descriptor──▶ agent (through the gateway's splice) ──ready──▶ relay
 *   relay ──200──▶ client, then client ⇄ dial-back socket, bytes only
 *
 * The waiting client is found by session id from the dial-back, never by address.
 * Every failure answers the client with the status of its coded error.
 */
import { randomBytes } from 'node:crypto'
import { channel as diagnostics } from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net, { type AddressInfo, type Socket } from 'node:net'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import type { Logger } from '../../core/log.js'
import { readExact, splice } from '../../core/stream.js'
import type { SignalChannel } from '../../channels/channel.js'
import type { Directory, User } from '../../directory/directory.js'
import { errorResponse, parseProxyAuthorization, parseTarget, responseHead, type Target } from '../../proto/connect/connect.js'
import { signDescriptor, readReply, type Descriptor } from '../../proto/descriptor/descriptor.js'
import { DialbackStatus, HELLO_SIZE, decodeHello, encodeAck } from '../../proto/dialback/dialback.js'
import { Tunnel, checkDialbackProof, sealSignal } from '../../proto/signal/token.js'
import type { DeviceConfig, RelayConfig } from './config.js'
import { ipsecGrant } from './ipsec.js'
import { RateLimiter, authorize } from './policy.js'

const HANDSHAKE_TIMEOUT_MS = 5_000

const dcOpen = diagnostics('beckon:relay:session:open')
const dcClose = diagnostics('beckon:relay:session:close')

interface Pending {
  key: Buffer
  deviceName: string
  resolve: (r: { sock: Socket, status: DialbackStatus }) => void
}

export interface RelayDeps {
  config: RelayConfig
  directory: Directory
  channels: ReadonlyMap<string, SignalChannel>
  log: Logger
  now?: () => number
}

export interface RelayStats {
  pending: number
  active: number
  opened: number
  failed: Record<string, number>
  dialbacksRefused: number
}

export class Relay {
  private readonly cfg: RelayConfig
  private readonly log: Logger
  private readonly now: () => number
  private readonly pending = new Map<string, Pending>()
  private readonly limiter: RateLimiter
  private readonly clientServer: http.Server
  private readonly dialbackServer: net.Server
  private readonly sockets = new Set<Socket>()
  /** Put into signals; the bound port when the config says 0 (tests). */
  private dialbackPort: number
  private readonly counters: Omit<RelayStats, 'pending'> = { active: 0, opened: 0, failed: {}, dialbacksRefused: 0 }

  get stats (): RelayStats { return { ...this.counters, pending: this.pending.size } }

  constructor (private readonly deps: RelayDeps) {
    this.cfg = deps.config
    this.log = deps.log
    this.now = deps.now ?? Date.now
    this.limiter = new RateLimiter(this.cfg.perUserPerMinute, this.now)
    this.dialbackPort = this.cfg.dialbackPort
    const handler = (req: http.IncomingMessage, sock: Socket, head: Buffer): void => { void this.onConnect(req, sock, head) }
    this.clientServer = this.cfg.tls === undefined
      ? http.createServer()
      : https.createServer({ cert: readFileSync(this.cfg.tls.cert), key: readFileSync(this.cfg.tls.key) })
    this.clientServer.on('connect', handler)
    // Anything but CONNECT is not for us.
    this.clientServer.on('request', (_req, res: http.ServerResponse) => {
      const body = JSON.stringify(new BeckonError('BECKON_ERR_BAD_REQUEST', 'only CONNECT is served here').toJSON())
      res.writeHead(405, { 'Content-Type': 'application/json', Allow: 'CONNECT', Connection: 'close' }).end(body)
    })
    // Malformed HTTP: answer 400 on that connection only.
    this.clientServer.on('clientError', (err: Error, sock: Socket) => {
      this.log.debug({ err: err.message }, 'relay: malformed request')
      if (sock.writable) sock.end(errorResponse(new BeckonError('BECKON_ERR_BAD_REQUEST', err.message.slice(0, 100))))
      else sock.destroy()
    })
    this.clientServer.headersTimeout = 10_000
    this.clientServer.requestTimeout = 15_000
    this.dialbackServer = net.createServer({ allowHalfOpen: true }, (sock) => { void this.onDialback(sock) })
  }

  async listen (): Promise<{ client: AddressInfo, dialback: AddressInfo }> {
    const l = (srv: net.Server, hp: { host: string, port: number }): Promise<AddressInfo> => new Promise((resolve, reject) => {
      srv.once('error', reject)
      srv.listen(hp.port, hp.host, () => { srv.off('error', reject); resolve(srv.address() as AddressInfo) })
    })
    const dialback = await l(this.dialbackServer, this.cfg.dialbackListen)
    if (this.dialbackPort === 0) this.dialbackPort = dialback.port
    const client = await l(this.clientServer, this.cfg.clientListen)
    this.log.info({ client: `${client.address}:${client.port}`, dialback: `${dialback.address}:${dialback.port}`, tls: this.cfg.tls !== undefined }, 'relay listening')
    return { client, dialback }
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await Promise.all([
      new Promise((resolve) => this.clientServer.close(resolve)),
      new Promise((resolve) => this.dialbackServer.close(resolve)),
    ])
  }

  private track (sock: Socket): void {
    this.sockets.add(sock)
    sock.once('close', () => this.sockets.delete(sock))
  }

  // ---- step C: the client's CONNECT ------------------------------------------------

  private async onConnect (req: http.IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    this.track(client)
    client.on('error', () => {})
    const started = this.now()
    const progress = req.headers['beckon-progress'] === '1'
    let log = this.log.child({ peer: client.remoteAddress })
    let sessionKeyHex: string | undefined
    try {
      const target = parseTarget(req.url ?? '')
      const user = await this.authenticate(req, client)
      log = log.child({ user: user.name, device: target.device })
      const device = this.cfg.devices.get(target.device)
      if (device === undefined) throw new BeckonError('BECKON_ERR_UNKNOWN_DEVICE', target.device)
      authorize(user, device, target)
      this.limiter.take(user.name)
      if (this.pending.size >= this.cfg.maxPending) throw new BeckonError('BECKON_ERR_OVERLOADED', `${this.pending.size} sessions waiting`)

      const sessionId = randomBytes(12)
      const key = randomBytes(32)
      // IPsec parameters first: a device that cannot do IPsec fails before any SMS.
      const grant = target.mode === 'ipsec' ? ipsecGrant(this.cfg, device, user, sessionId, key) : undefined
      sessionKeyHex = sessionId.toString('hex')
      log = log.child({ session: sessionKeyHex })
      const dialback = this.expectDialback(sessionId, key, device)
      const clientGone = new Promise<never>((_resolve, reject) => {
        client.once('close', () => reject(new BeckonError('BECKON_ERR_PROTOCOL', 'client went away while waiting')))
      })
      clientGone.catch(() => {})

      const signalStart = this.now()
      const { channel, fallback } = await this.signal(device, target, sessionId, key, log)
      const fb = fallback.length > 0 ? `; fallback=${fallback.join(',')}` : ''
      if (progress) client.write(responseHead(102, { 'Beckon-Stage': `signalled; channel=${channel}${fb}` }))
      log = log.child({ channel, ...(fallback.length > 0 ? { fallback } : {}) })
      log.info({ stage: 'signalled', signalStart, sendMs: this.now() - signalStart }, 'relay: signal sent')

      const { sock: dial, status } = await Promise.race([dialback.promise, clientGone])
      if (status === DialbackStatus.UNREACHABLE) {
        dial.destroy()
        throw new BeckonError('BECKON_ERR_TERMINAL_UNREACHABLE', `${device.name} did not answer the gateway`)
      }
      if (progress) client.write(responseHead(102, { 'Beckon-Stage': 'called-back' }))
      log.info({ stage: 'called-back' }, 'relay: dial-back accepted')

      const descriptor: Descriptor = {
        v: 1,
        session: sessionKeyHex,
        device: device.name,
        user: user.name,
        expires: Math.floor(this.now() / 1000) + 60,
        ...(target.mode === 'tcp' ? { mode: 'tcp' as const, port: target.port } : { mode: 'ipsec' as const, ipsec: grant!.params }),
      }
      const frame = signDescriptor(descriptor, this.cfg.ed25519Private)
      dial.write(frame)
      const reply = await Promise.race([readReply(dial, HANDSHAKE_TIMEOUT_MS), clientGone]).catch((err: unknown) => {
        dial.destroy()
        throw toBeckonError(err, 'BECKON_ERR_TERMINAL_REFUSED')
      })
      if (!reply.ready) {
        dial.destroy()
        throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', `${reply.code}: ${reply.message}`)
      }

      const elapsed = this.now() - started
      const ipsecHeaders: Record<string, string> = grant === undefined ? {} : {
        'Beckon-Descriptor': frame.toString('base64url'),
        ...(grant.psk === undefined ? {} : { 'Beckon-Psk': grant.psk.toString('base64url') }),
      }
      client.write(responseHead(200, { 'Beckon-Session': sessionKeyHex, 'Beckon-Channel': channel, ...(fallback.length > 0 ? { 'Beckon-Fallback': fallback.join(',') } : {}), 'Beckon-Elapsed-Ms': elapsed, ...ipsecHeaders }))
      if (head.length > 0) dial.write(head)
      this.counters.opened++
      this.counters.active++
      log.info({ stage: 'connected', elapsedMs: elapsed }, 'relay: session open')
      if (dcOpen.hasSubscribers) dcOpen.publish({ session: sessionKeyHex, device: device.name, user: user.name, elapsedMs: elapsed })
      const moved = await splice(client, dial)
      this.counters.active--
      log.info({ stage: 'closed', ...moved }, 'relay: session closed')
      if (dcClose.hasSubscribers) dcClose.publish({ session: sessionKeyHex, ...moved })
    } catch (err) {
      const e = toBeckonError(err)
      if (sessionKeyHex !== undefined) this.pending.delete(sessionKeyHex)
      this.counters.failed[e.code] = (this.counters.failed[e.code] ?? 0) + 1
      log.warn({ code: e.code, err: e.message, elapsedMs: this.now() - started }, 'relay: session refused')
      if (!client.destroyed && client.writable) client.end(errorResponse(e))
      else client.destroy()
    }
  }

  private async authenticate (req: http.IncomingMessage, client: Socket): Promise<User> {
    const creds = parseProxyAuthorization(req.headers['proxy-authorization'])
    if (creds === undefined) throw new BeckonError('BECKON_ERR_AUTH_REQUIRED')
    const encrypted = 'encrypted' in client && (client as { encrypted?: boolean }).encrypted === true
    if (creds.scheme === 'basic' && !encrypted && !this.cfg.allowPlainBasic) throw new BeckonError('BECKON_ERR_INSECURE_CREDENTIALS')
    return await this.deps.directory.authenticate(creds)
  }

  // ---- step D: the signal, over the device's channels in order ---------------------

  /** Tries the device's channels in order; returns the one that took it and those that failed. */
  private async signal (device: DeviceConfig, target: Target, sessionId: Buffer, key: Buffer, log: Logger): Promise<{ channel: string, fallback: string[] }> {
    const errors: string[] = []
    const failed: string[] = []
    for (const name of device.channels) {
      const ch = this.deps.channels.get(name)
      if (ch === undefined) { errors.push(`${name}: not configured`); failed.push(name); continue }
      const reference = name === 'sms' ? device.msisdn : device.emailReference
      try {
        const token = sealSignal({
          tunnel: target.mode === 'ipsec' ? Tunnel.IPSEC : Tunnel.TCP,
          relayAddress: this.cfg.publicAddress,
          dialbackPort: this.dialbackPort,
          sessionId,
          expiry: Math.floor((this.now() + this.cfg.signalTtlMs) / 1000),
          sessionKey: key,
          refKind: name === 'sms' ? 'msisdn' : 'email',
          reference: reference ?? '',
        }, this.cfg.x25519Private, device.gatewayKey)
        await ch.send({ msisdn: device.msisdn, email: device.email }, token, sessionId)
        return { channel: name, fallback: failed }
      } catch (err) {
        const e = toBeckonError(err, 'BECKON_ERR_CHANNEL_UNAVAILABLE')
        log.warn({ channel: name, code: e.code, err: e.message }, 'relay: channel failed, trying the next')
        errors.push(`${name}: ${e.message}`)
        failed.push(name)
      }
    }
    throw new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', errors.join('; '))
  }

  // ---- steps G/H: the gateway's dial-back --------------------------------------------

  private expectDialback (sessionId: Buffer, key: Buffer, device: DeviceConfig): { promise: Promise<{ sock: Socket, status: DialbackStatus }> } {
    const id = sessionId.toString('hex')
    const promise = new Promise<{ sock: Socket, status: DialbackStatus }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new BeckonError('BECKON_ERR_WAKE_TIMEOUT', `no call-back from ${device.name} within ${device.wakeTimeoutMs} ms`))
      }, device.wakeTimeoutMs)
      this.pending.set(id, {
        key,
        deviceName: device.name,
        resolve: (r) => { clearTimeout(timer); resolve(r) },
      })
    })
    promise.catch(() => {})
    return { promise }
  }

  private async onDialback (sock: Socket): Promise<void> {
    this.track(sock)
    sock.on('error', () => {})
    sock.pause()
    try {
      const hello = decodeHello(await readExact(sock, HELLO_SIZE, 'dial-back hello', HANDSHAKE_TIMEOUT_MS))
      const id = hello.sessionId.toString('hex')
      const p = this.pending.get(id)
      if (p === undefined) throw new BeckonError('BECKON_ERR_DIALBACK_REFUSED', `no session ${id} is waiting`)
      if (!checkDialbackProof(p.key, hello.sessionId, hello.proof)) throw new BeckonError('BECKON_ERR_DIALBACK_REFUSED', `wrong proof for session ${id}`)
      // One dial-back per session: a replayed hello finds nothing waiting.
      this.pending.delete(id)
      sock.write(encodeAck(true))
      p.resolve({ sock, status: hello.status })
    } catch (err) {
      const e = toBeckonError(err, 'BECKON_ERR_PROTOCOL')
      this.counters.dialbacksRefused++
      this.log.warn({ code: e.code, err: e.message, peer: sock.remoteAddress }, 'relay: dial-back refused')
      if (sock.writable) sock.end(encodeAck(false))
      else sock.destroy()
    }
  }
}

