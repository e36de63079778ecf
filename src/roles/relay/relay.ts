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
import { readExact, resetSocket, splice, wasReset } from '../../core/stream.js'
import type { SignalChannel } from '../../channels/channel.js'
import type { User } from '../../directory/directory.js'
import type { Metrics } from '../../core/metrics.js'
import type { SessionRecord } from '../../store/records.js'
import type { Store } from '../../store/store.js'
import { errorResponse, parseProxyAuthorization, parseTarget, responseHead, type Target } from '../../proto/connect/connect.js'
import { signDescriptor, readReply, type Descriptor } from '../../proto/descriptor/descriptor.js'
import { DialbackStatus, HELLO_SIZE, decodeHello, encodeAck } from '../../proto/dialback/dialback.js'
import { Tunnel, checkDialbackProof, sealSignal } from '../../proto/signal/token.js'
import { checkResume, parseResumeHeader, resumeKey, resumeSecret } from '../../proto/signal/resume.js'
import type { Catalog, DeviceEntry, Snapshot } from './catalog.js'
import type { RelayConfig } from './config.js'
import { ipsecGrant } from './ipsec.js'
import { RateLimiter, authorize } from './policy.js'

const HANDSHAKE_TIMEOUT_MS = 5_000
/** The agent keeps a detached session this much longer than the relay's window. */
export const RESUME_GRACE_S = 15

const dcOpen = diagnostics('beckon:relay:session:open')
const dcClose = diagnostics('beckon:relay:session:close')

interface Pending {
  key: Buffer
  deviceName: string
  resolve: (r: { sock: Socket, status: DialbackStatus }) => void
}

export interface RelayDeps {
  config: RelayConfig
  /** Devices, policies, users (and the directory) as of the store's current revision. */
  catalog: Catalog
  /** Where sessions and their audit entries are recorded. */
  store: Store
  channels: ReadonlyMap<string, SignalChannel>
  log: Logger
  metrics?: Metrics
  now?: () => number
}

/** A session this relay holds, from authorization to close. */
interface Live {
  record: SessionRecord
  /** The client's current stream; none yet for a session taken over from another relay. */
  client: Socket | undefined
  dial: Socket | undefined
  /** bytesWritten of each socket when the splice began. */
  base: { up: number, down: number } | undefined
  /** Set when an operator or a policy change ends the session. */
  ended: { reason: string, actor: string } | undefined
  /** The user's groups when authorized: policy changes are re-checked against them. */
  groups: string[]
  /**
   * The session's store writes, chained: they run in order, off the CONNECT's critical
   * path (a CONNECT never waits on the database), and the end waits for the open.
   */
  writes: Promise<void>
  /** IPsec: the path broke; the session ends (PATH_LOST) when this fires unless re-joined. */
  detached: { timer: NodeJS.Timeout, at: number, middle: boolean } | undefined
  /** The re-join CONNECT in progress; a newer one replaces it. */
  rejoining: Socket | undefined
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
  private readonly live = new Map<string, Live>()
  private revisionSeen = -1
  /** Take-overs in progress, so two re-joins of one session share one. */
  private readonly takeovers = new Map<string, Promise<Live>>()
  /** Derives each session's resume secret (see proto/signal/resume.ts). */
  private readonly resumeKey: Buffer

  get stats (): RelayStats { return { ...this.counters, pending: this.pending.size } }

  constructor (private readonly deps: RelayDeps) {
    this.cfg = deps.config
    this.log = deps.log
    this.now = deps.now ?? Date.now
    this.limiter = new RateLimiter(this.cfg.perUserPerMinute, this.now)
    this.resumeKey = resumeKey(this.cfg.ed25519Private)
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
    let live: Live | undefined
    let who: { user?: string, device?: string } = {}
    const resume = req.headers['beckon-resume']
    if (typeof resume === 'string') { await this.onResume(req, client, head, resume, progress, log); return }
    try {
      const target = parseTarget(req.url ?? '')
      who.device = target.device
      const snap = await this.catalog()
      const user = await this.authenticate(req, client, snap)
      who.user = user.name
      log = log.child({ user: user.name, device: target.device })
      const entry = snap.devices.get(target.device)
      if (entry === undefined) throw new BeckonError('BECKON_ERR_UNKNOWN_DEVICE', target.device)
      const device = entry.device
      const selectors = authorize(user, device, entry.policy, target)
      this.limiter.take(user.name)
      if (this.pending.size >= this.cfg.maxPending) throw new BeckonError('BECKON_ERR_OVERLOADED', `${this.pending.size} sessions waiting`)

      const sessionId = randomBytes(12)
      const key = randomBytes(32)
      // IPsec parameters first: a device that cannot do IPsec fails before any SMS.
      const grant = target.mode === 'ipsec' ? ipsecGrant(this.cfg.ipsec, entry, user, snap.userAddress(user.name), selectors!, sessionId, key) : undefined
      const id = sessionId.toString('hex')
      live = this.open(id, user, device.name, target, client)
      log = log.child({ session: id })
      const dialback = this.expectDialback(sessionId, key, device.name, device.wake_timeout_ms)
      const clientGone = new Promise<never>((_resolve, reject) => {
        client.once('close', () => reject(this.endedError(live!) ?? new BeckonError('BECKON_ERR_PROTOCOL', 'client went away while waiting')))
      })
      clientGone.catch(() => {})

      const signalStart = this.now()
      const { channel, fallback } = await this.signal(entry, target, sessionId, key, log)
      const fb = fallback.length > 0 ? `; fallback=${fallback.join(',')}` : ''
      if (progress) client.write(responseHead(102, { 'Beckon-Stage': `signalled; channel=${channel}${fb}` }))
      log = log.child({ channel, ...(fallback.length > 0 ? { fallback } : {}) })
      log.info({ stage: 'signalled', signalStart, sendMs: this.now() - signalStart }, 'relay: signal sent')
      this.stage(live, 'signalled', { channel, fallback })

      const { sock: dial, status } = await Promise.race([dialback.promise, clientGone])
      live.dial = dial
      if (status === DialbackStatus.UNREACHABLE) {
        dial.destroy()
        throw new BeckonError('BECKON_ERR_TERMINAL_UNREACHABLE', `${device.name} did not answer the gateway`)
      }
      if (progress) client.write(responseHead(102, { 'Beckon-Stage': 'called-back' }))
      log.info({ stage: 'called-back' }, 'relay: dial-back accepted')
      this.stage(live, 'called-back')

      const descriptor: Descriptor = {
        v: 1,
        session: id,
        device: device.name,
        user: user.name,
        expires: Math.floor(this.now() / 1000) + 60,
        ...(target.mode === 'tcp' ? { mode: 'tcp' as const, port: target.port } : { mode: 'ipsec' as const, ipsec: grant!.params }),
        ...(target.mode === 'ipsec' && this.cfg.resumeWindowMs > 0 ? { resumeS: Math.ceil(this.cfg.resumeWindowMs / 1000) + RESUME_GRACE_S } : {}),
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
      // A kill or a policy change that landed while we waited wins over the 200.
      const ended = this.endedError(live)
      if (ended !== undefined) throw ended

      const elapsed = this.now() - started
      // The PSK goes back only inside TLS (or on a plain listener an operator opened
      // explicitly for tests with allow_plain_basic): never in clear by default.
      const ipsecHeaders: Record<string, string> = grant === undefined ? {} : {
        'Beckon-Descriptor': frame.toString('base64url'),
        ...(grant.psk === undefined ? {} : { 'Beckon-Psk': grant.psk.toString('base64url') }),
        // The path may break and re-join under this session (proto/signal/resume.ts).
        ...(this.cfg.resumeWindowMs > 0 ? { 'Beckon-Resume': `window=${this.cfg.resumeWindowMs}; secret=${resumeSecret(this.resumeKey, sessionId).toString('base64url')}` } : {}),
      }
      client.write(responseHead(200, { 'Beckon-Session': id, 'Beckon-Channel': channel, ...(fallback.length > 0 ? { 'Beckon-Fallback': fallback.join(',') } : {}), 'Beckon-Elapsed-Ms': elapsed, ...ipsecHeaders }))
      if (head.length > 0) dial.write(head)
      this.counters.opened++
      this.deps.metrics?.connectSeconds.observe(elapsed / 1000)
      log.info({ stage: 'connected', elapsedMs: elapsed }, 'relay: session open')
      if (dcOpen.hasSubscribers) dcOpen.publish({ session: id, device: device.name, user: user.name, elapsedMs: elapsed })
      this.stage(live, 'connected')
      await this.carry(live, client, dial, log)
    } catch (err) {
      const e = toBeckonError(err)
      if (live !== undefined) {
        this.pending.delete(live.record.id)
        await this.close1(live, e.code, e.detail, 0, 0)
      } else if (e.code !== 'BECKON_ERR_BAD_REQUEST' && e.code !== 'BECKON_ERR_AUTH_REQUIRED') {
        // Refusals before a session exists are audited too (who tried what, and why not).
        this.deps.metrics?.outcomes.inc({ outcome: e.code })
        void this.deps.store.audit({ actor: who.user === undefined ? `peer:${client.remoteAddress ?? '?'}` : `user:${who.user}`, action: 'session.refused', target: `device/${who.device ?? '?'}`, outcome: e.code, detail: { message: e.message } }).catch((er: unknown) => this.log.warn({ err: (er as Error).message }, 'relay: audit failed'))
      }
      this.counters.failed[e.code] = (this.counters.failed[e.code] ?? 0) + 1
      log.warn({ code: e.code, err: e.message, elapsedMs: this.now() - started }, 'relay: session refused')
      if (!client.destroyed && client.writable) client.end(errorResponse(e))
      else client.destroy()
    }
  }

  /**
   * Splices a session's current path until it ends. An IPsec session whose path ends by
   * itself is detached, not ended: both bridges keep charon's SAs and the client re-joins
   * (onResume) within the window. A raw TCP session cannot: its TCP state died with the
   * path, so a path that broke (an error on the gateway's side, not a FIN) ends it with
   * BECKON_ERR_PATH_LOST, passed to the client as a reset, never as a clean end of stream.
   */
  private async carry (l: Live, client: Socket, dial: Socket, log: Logger): Promise<void> {
    const id = l.record.id
    l.client = client
    l.dial = dial
    l.base = { up: dial.bytesWritten, down: client.bytesWritten }
    let broke: Error | undefined
    let dialFirst = false
    dial.once('error', (e) => { broke ??= e })
    // A reset Node reported as a clean end (see wasReset) is a break all the same.
    dial.once('end', () => { if (wasReset(dial)) broke ??= new Error('reset by the gateway') })
    dial.once('close', () => { if (!client.destroyed) dialFirst = true })
    this.counters.active++
    const moved = await splice(client, dial)
    this.counters.active--
    this.deps.metrics?.bytes.inc({ direction: 'up' }, moved.aToB)
    this.deps.metrics?.bytes.inc({ direction: 'down' }, moved.bToA)
    // A re-join replaced this path: the session goes on elsewhere.
    if (l.client !== client) return
    const end = this.endedError(l)
    if (end === undefined && l.record.mode === 'ipsec' && this.cfg.resumeWindowMs > 0 && this.live.has(id)) {
      this.detach(l, log, dialFirst || broke !== undefined, moved)
      return
    }
    const lost = end === undefined && l.record.mode === 'tcp' && broke !== undefined
    if (lost) resetSocket(client)
    const code = end?.code ?? (lost ? 'BECKON_ERR_PATH_LOST' : 'ok')
    const reason = end?.detail ?? (lost ? `the path broke (${broke!.message}); a raw TCP session cannot resume` : undefined)
    log.info({ stage: 'closed', ...moved, ...(code === 'ok' ? {} : { code, reason }) }, 'relay: session closed')
    if (dcClose.hasSubscribers) dcClose.publish({ session: id, ...moved })
    await this.close1(l, code, reason, moved.aToB, moved.bToA)
  }

  /** The path under an IPsec session ended: wait for a re-join until the window closes. */
  private detach (l: Live, log: Logger, middle: boolean, moved: { aToB: number, bToA: number }): void {
    const id = l.record.id
    if (l.detached !== undefined) clearTimeout(l.detached.timer)
    const timer = setTimeout(() => {
      if (l.detached?.timer !== timer) return
      l.rejoining?.destroy()
      const code = middle ? 'BECKON_ERR_PATH_LOST' : 'ok'
      log.info({ stage: 'closed', code }, 'relay: no re-join within the window; session ended')
      void this.close1(l, code, middle ? `no re-join within ${this.cfg.resumeWindowMs} ms` : undefined, 0, 0)
    }, this.cfg.resumeWindowMs)
    timer.unref()
    l.detached = { timer, at: this.now(), middle }
    log.info({ stage: 'path-lost', middle, ...moved, windowMs: this.cfg.resumeWindowMs }, 'relay: path lost; waiting for a re-join')
  }

  /**
   * A re-join (`Beckon-Resume`): the same user, with proof of the session's resume secret,
   * for a session this relay holds and no one ended. The gateway gets a resume signal (a
   * fresh attempt id, so replays are refused as usual), dials the terminal and back; the
   * agent re-attaches its bridge; the relay answers 200 and splices the new path.
   */
  private async onResume (req: http.IncomingMessage, client: Socket, head: Buffer, header: string, progress: boolean, log: Logger): Promise<void> {
    const started = this.now()
    let who: { user?: string, device?: string, session?: string } = {}
    let l: Live | undefined
    let dial: Socket | undefined
    try {
      const target = parseTarget(req.url ?? '')
      who.device = target.device
      if (target.mode !== 'ipsec') throw new BeckonError('BECKON_ERR_PATH_LOST', 'a raw TCP session cannot resume (its TCP state is gone)')
      const r = parseResumeHeader(header)
      who.session = r.session
      const snap = await this.catalog()
      const user = await this.authenticate(req, client, snap)
      who.user = user.name
      checkResume(this.resumeKey, r, this.now())
      l = this.live.get(r.session) ?? await this.takeOver(r.session, user, target, log)
      const ended = this.endedError(l)
      if (ended !== undefined) throw ended
      if (l.record.user !== user.name || l.record.device !== target.device || l.record.mode !== 'ipsec') throw new BeckonError('BECKON_ERR_RESUME_REFUSED', `session ${r.session} is not ${user.name}'s to ${target.device}`)
      const entry = snap.devices.get(target.device)
      if (entry === undefined) throw new BeckonError('BECKON_ERR_UNKNOWN_DEVICE', target.device)
      authorize(user, entry.device, entry.policy, target)
      const live = l
      log = log.child({ session: r.session, user: user.name, device: target.device })
      // The newest re-join wins; an old path that still looks alive is given up.
      live.rejoining?.destroy()
      live.rejoining = client
      if (live.detached === undefined) {
        const [c, d] = [live.client, live.dial]
        live.client = client // carry() of the old path now sees it was replaced
        live.dial = undefined
        c?.destroy()
        d?.destroy()
        this.detach(live, log, false, { aToB: 0, bToA: 0 })
      }
      const attemptId = randomBytes(12)
      const key = randomBytes(32)
      const attempt = attemptId.toString('hex')
      const dialback = this.expectDialback(attemptId, key, target.device, Math.min(entry.device.wake_timeout_ms, this.cfg.resumeAttemptTimeoutMs))
      const clientGone = new Promise<never>((_resolve, reject) => {
        client.once('close', () => { this.pending.delete(attempt); reject(new BeckonError('BECKON_ERR_PROTOCOL', 'client went away while re-joining')) })
      })
      clientGone.catch(() => {})
      const { channel } = await this.signal(entry, target, attemptId, key, log, true)
      if (progress) client.write(responseHead(102, { 'Beckon-Stage': `signalled; channel=${channel}` }))
      const got = await Promise.race([dialback.promise, clientGone])
      dial = got.sock
      if (got.status === DialbackStatus.UNREACHABLE) throw new BeckonError('BECKON_ERR_TERMINAL_UNREACHABLE', `${target.device} did not answer the gateway`)
      const frame = signDescriptor({ v: 1, session: attempt, resume: r.session, device: target.device, user: user.name, expires: Math.floor(this.now() / 1000) + 60, mode: 'ipsec' }, this.cfg.ed25519Private)
      dial.write(frame)
      const reply = await Promise.race([readReply(dial, HANDSHAKE_TIMEOUT_MS), clientGone])
      if (!reply.ready) {
        const code = reply.code === 'BECKON_ERR_PATH_LOST' || reply.code === 'BECKON_ERR_SESSION_ENDED' ? reply.code : 'BECKON_ERR_TERMINAL_REFUSED'
        throw new BeckonError(code, `${reply.code}: ${reply.message}`)
      }
      // Ended (kill, window) while we waited: that wins.
      const end = this.endedError(live) ?? (this.live.has(r.session) ? undefined : new BeckonError('BECKON_ERR_PATH_LOST', 'the re-join window closed'))
      if (end !== undefined) throw end
      if (live.rejoining !== client) throw new BeckonError('BECKON_ERR_RESUME_REFUSED', 'a newer re-join replaced this one')
      clearTimeout(live.detached!.timer)
      const outageMs = this.now() - live.detached!.at
      live.detached = undefined
      live.rejoining = undefined
      const elapsed = this.now() - started
      client.write(responseHead(200, { 'Beckon-Session': r.session, 'Beckon-Channel': channel, 'Beckon-Elapsed-Ms': elapsed }))
      if (head.length > 0) dial.write(head)
      log.info({ stage: 'rejoined', attempt, elapsedMs: elapsed, outageMs }, 'relay: session re-joined')
      this.rejoinAudit(who, 'ok', { attempt, elapsedMs: elapsed, outageMs })
      await this.carry(live, client, dial, log)
    } catch (err) {
      const e = toBeckonError(err)
      dial?.destroy()
      if (l !== undefined && l.rejoining === client) l.rejoining = undefined
      this.counters.failed[e.code] = (this.counters.failed[e.code] ?? 0) + 1
      log.warn({ code: e.code, err: e.message, session: who.session, elapsedMs: this.now() - started }, 'relay: re-join refused')
      if (e.code !== 'BECKON_ERR_BAD_REQUEST' && e.code !== 'BECKON_ERR_AUTH_REQUIRED') this.rejoinAudit(who, e.code, { message: e.message })
      if (!client.destroyed && client.writable) client.end(errorResponse(e))
      else client.destroy()
    }
  }

  /**
   * A re-join for a session another relay holds in the shared store: that relay died or
   * this client cannot reach it. The proof already showed the client holds the session's
   * secret (relays that take over share the signing key it derives from); the store moves
   * the session here in one guarded UPDATE, so of two relays racing one wins, and the old
   * holder can no longer end it. The session then waits detached for this re-join.
   */
  private async takeOver (id: string, user: User, target: Target, log: Logger): Promise<Live> {
    let p = this.takeovers.get(id)
    if (p === undefined) {
      p = this.takeOver1(id, user, target, log).finally(() => this.takeovers.delete(id))
      this.takeovers.set(id, p)
    }
    return await p
  }

  private async takeOver1 (id: string, user: User, target: Target, log: Logger): Promise<Live> {
    const rec = await this.deps.store.getSession(id)
    if (rec === undefined) throw new BeckonError('BECKON_ERR_RESUME_REFUSED', `no session ${id}`)
    if (rec.outcome === 'BECKON_ERR_SESSION_ENDED') throw new BeckonError('BECKON_ERR_SESSION_ENDED', rec.reason ?? 'ended')
    if (rec.ended_at !== undefined) throw new BeckonError('BECKON_ERR_PATH_LOST', `session ${id} ended (${rec.outcome ?? '?'})`)
    if (rec.relay === this.cfg.relayId) throw new BeckonError('BECKON_ERR_RESUME_REFUSED', `session ${id} belonged to an earlier run of this relay`)
    if (rec.user !== user.name || rec.device !== target.device || rec.mode !== 'ipsec' || rec.stage !== 'connected') throw new BeckonError('BECKON_ERR_RESUME_REFUSED', `session ${id} is not ${user.name}'s IPsec session to ${target.device}`)
    const taken = await this.deps.store.sessionTakeover(id, rec.relay, this.cfg.relayId, this.now()).catch((err: unknown) => {
      const e = toBeckonError(err)
      throw e.code === 'BECKON_ERR_CONFLICT' ? new BeckonError('BECKON_ERR_RESUME_REFUSED', e.detail) : e
    })
    log.info({ session: id, from: rec.relay }, 'relay: took the session over from another relay')
    // A kill asked while its old holder was gone: end it now, here and at the agent.
    if (taken.kill_requested !== undefined) {
      await this.deps.store.sessionEnd(id, { outcome: 'BECKON_ERR_SESSION_ENDED', reason: 'ended by an operator', bytes_up: taken.bytes_up, bytes_down: taken.bytes_down, relay: this.cfg.relayId, at: this.now() })
      void this.endAtAgent(taken)
      throw new BeckonError('BECKON_ERR_SESSION_ENDED', 'ended by an operator')
    }
    const l: Live = { record: taken, client: undefined, dial: undefined, base: undefined, ended: undefined, groups: user.groups, writes: Promise.resolve(), detached: undefined, rejoining: undefined }
    this.live.set(id, l)
    this.deps.metrics?.sessions.inc({ stage: taken.stage })
    this.detach(l, log.child({ session: id }), true, { aToB: 0, bToA: 0 })
    return l
  }

  private rejoinAudit (who: { user?: string, device?: string, session?: string }, outcome: string, detail: Record<string, unknown>): void {
    void this.deps.store.audit({ actor: who.user === undefined ? 'peer' : `user:${who.user}`, action: 'session.rejoin', target: `session/${who.session ?? '?'}`, outcome, detail: { device: who.device, ...detail } })
      .catch((er: unknown) => this.log.warn({ err: (er as Error).message }, 'relay: audit failed'))
  }

  /**
   * Tells the agent to end an IPsec session now (operator kill, policy change): a resume
   * signal whose descriptor says `end`. The client learns it from the refused re-join.
   */
  private async endAtAgent (r: SessionRecord): Promise<void> {
    const log = this.log.child({ session: r.id, device: r.device })
    try {
      const snap = await this.deps.catalog.current()
      const entry = snap.devices.get(r.device)
      if (entry === undefined) return
      const attemptId = randomBytes(12)
      const key = randomBytes(32)
      const dialback = this.expectDialback(attemptId, key, r.device, Math.min(entry.device.wake_timeout_ms, 10_000))
      await this.signal(entry, { device: r.device, mode: 'ipsec' }, attemptId, key, log, true)
      const { sock } = await dialback.promise
      this.track(sock)
      try {
        sock.write(signDescriptor({ v: 1, session: attemptId.toString('hex'), resume: r.id, end: true, device: r.device, user: r.user, expires: Math.floor(this.now() / 1000) + 60, mode: 'ipsec' }, this.cfg.ed25519Private))
        const reply = await readReply(sock, HANDSHAKE_TIMEOUT_MS)
        log.info({ ready: reply.ready }, 'relay: agent told to end the session')
      } finally { sock.destroy() }
    } catch (err) {
      log.warn({ err: toBeckonError(err).message }, 'relay: could not tell the agent to end the session; it ends when its re-join window closes')
    }
  }

  // ---- sessions: records, live registry, operator kills, policy re-checks ------------

  /** The catalog as of now; a new revision re-checks every live session against it. */
  private async catalog (): Promise<Snapshot> {
    const snap = await this.deps.catalog.current()
    if (snap.revision !== this.revisionSeen) {
      const first = this.revisionSeen === -1
      this.revisionSeen = snap.revision
      if (!first) this.recheck(snap)
    }
    return snap
  }

  /** Ends live sessions the current policies no longer admit. */
  private recheck (snap: Snapshot): void {
    for (const l of this.live.values()) {
      const r = l.record
      const entry = snap.devices.get(r.device)
      const user = { name: r.user, groups: l.groups }
      try {
        if (entry === undefined) throw new BeckonError('BECKON_ERR_UNKNOWN_DEVICE', `${r.device} was removed`)
        authorize(user, entry.device, entry.policy, r.mode === 'ipsec' ? { device: r.device, mode: 'ipsec' } : { device: r.device, mode: 'tcp', port: r.port ?? 0 })
      } catch (err) {
        this.kill(r.id, `policy change: ${(err as Error).message}`, 'policy')
      }
    }
  }

  private open (id: string, user: User, device: string, target: Target, client: Socket): Live {
    const record: SessionRecord = {
      id, relay: this.cfg.relayId, user: user.name, device, mode: target.mode, ...(target.mode === 'tcp' ? { port: target.port } : {}),
      stage: 'authorized', fallback: [], bytes_up: 0, bytes_down: 0, started_at: this.now(),
    }
    const l: Live = { record, client, dial: undefined, base: undefined, ended: undefined, groups: user.groups, writes: Promise.resolve(), detached: undefined, rejoining: undefined }
    this.live.set(id, l)
    this.deps.metrics?.sessions.inc({ stage: 'authorized' })
    this.write(l, 'open', () => this.deps.store.sessionOpen({ ...record }))
    return l
  }

  /** Queues one store write of a session behind its earlier ones; failures are logged. */
  private write (l: Live, what: string, fn: () => Promise<void>): Promise<void> {
    l.writes = l.writes.then(fn).catch((err: unknown) => { this.log.warn({ session: l.record.id, err: (err as Error).message }, `relay: session ${what} not recorded`) })
    return l.writes
  }

  private stage (l: Live, stage: SessionRecord['stage'], extra: { channel?: string, fallback?: string[] } = {}): void {
    this.deps.metrics?.sessions.dec({ stage: l.record.stage })
    this.deps.metrics?.sessions.inc({ stage })
    Object.assign(l.record, { stage }, extra)
    void this.write(l, 'update', () => this.deps.store.sessionUpdate(l.record.id, { stage, ...extra }))
  }

  /** Removes a session from the live registry; false when it was gone already. */
  private drop (l: Live): boolean {
    if (!this.live.delete(l.record.id)) return false
    if (l.detached !== undefined) clearTimeout(l.detached.timer)
    this.deps.metrics?.sessions.dec({ stage: l.record.stage })
    return true
  }

  private async close1 (l: Live, outcome: string, reason: string | undefined, up: number, down: number): Promise<void> {
    if (!this.drop(l)) return
    this.deps.metrics?.outcomes.inc({ outcome })
    const at = this.now()
    // Guarded by relay id: a session another relay took over is not this relay's to end.
    await this.write(l, 'end', () => this.deps.store.sessionEnd(l.record.id, { outcome, ...(reason === undefined ? {} : { reason }), bytes_up: up, bytes_down: down, at, relay: this.cfg.relayId }))
  }

  private endedError (l: Live): BeckonError | undefined {
    return l.ended === undefined ? undefined : new BeckonError('BECKON_ERR_SESSION_ENDED', l.ended.reason)
  }

  /**
   * Ends a live session: the splice closes, so both bridges close and both ends unload
   * the connection and its secret from charon. False when this relay does not hold it.
   */
  kill (id: string, reason: string, actor: string): boolean {
    const l = this.live.get(id)
    if (l === undefined) return false
    if (l.ended !== undefined) return true
    l.ended = { reason, actor }
    this.log.info({ session: id, reason, actor }, 'relay: ending session')
    l.client?.destroy()
    l.dial?.destroy()
    l.rejoining?.destroy()
    const p = this.pending.get(id)
    if (p !== undefined) this.pending.delete(id)
    // An IPsec session: the client's re-join is refused (SESSION_ENDED); the agent is told.
    if (l.record.mode === 'ipsec' && l.record.stage === 'connected') {
      void this.endAtAgent(l.record)
      if (l.detached !== undefined) void this.close1(l, 'BECKON_ERR_SESSION_ENDED', reason, 0, 0)
    }
    return true
  }

  /** The live record with current byte counters, when this relay holds the session. */
  session (id: string): SessionRecord | undefined {
    const l = this.live.get(id)
    if (l === undefined) return undefined
    const up = l.base === undefined || l.dial === undefined ? 0 : l.dial.bytesWritten - l.base.up
    const down = l.base === undefined || l.client === undefined ? 0 : l.client.bytesWritten - l.base.down
    return { ...l.record, bytes_up: up, bytes_down: down }
  }

  /**
   * Run each second while sessions are live: ends sessions another relay's API flagged in
   * the shared store, and re-checks live sessions against a policy changed since the last
   * CONNECT (a quiet relay would otherwise learn of it only at its next CONNECT).
   */
  async pollKills (): Promise<void> {
    if (this.live.size === 0) return
    await this.catalog()
    const flagged = await this.deps.store.listSessions({ live: true, relay: this.cfg.relayId, limit: 500 })
    for (const s of flagged) if (s.kill_requested !== undefined) this.kill(s.id, 'ended by an operator', s.kill_requested)
    // A detached session another relay took over (the client could not reach this one):
    // it goes on there, so this relay forgets it without ending it.
    for (const l of [...this.live.values()]) {
      if (l.detached === undefined) continue
      const rec = await this.deps.store.getSession(l.record.id).catch(() => undefined)
      if (rec === undefined || rec.ended_at !== undefined || rec.relay === this.cfg.relayId) continue
      if (!this.drop(l)) continue
      l.rejoining?.destroy()
      this.log.info({ session: l.record.id, to: rec.relay }, 'relay: session taken over by another relay')
    }
  }

  /**
   * Sessions the store still shows live for this relay id belong to a previous run of
   * this relay (it crashed or was killed): their sockets are gone. Ends them on record.
   */
  async reapStale (): Promise<number> {
    const stale = (await this.deps.store.listSessions({ live: true, relay: this.cfg.relayId, limit: 500 })).filter((s) => !this.live.has(s.id))
    for (const s of stale) {
      await this.deps.store.sessionEnd(s.id, { outcome: 'BECKON_ERR_INTERNAL', reason: 'the relay restarted', bytes_up: s.bytes_up, bytes_down: s.bytes_down, at: this.now() })
        .catch((err: unknown) => this.log.warn({ session: s.id, err: (err as Error).message }, 'relay: stale session not ended'))
    }
    if (stale.length > 0) this.log.warn({ sessions: stale.length }, 'relay: ended sessions left open by a previous run')
    return stale.length
  }

  private async authenticate (req: http.IncomingMessage, client: Socket, snap: Snapshot): Promise<User> {
    const creds = parseProxyAuthorization(req.headers['proxy-authorization'])
    if (creds === undefined) throw new BeckonError('BECKON_ERR_AUTH_REQUIRED')
    const encrypted = 'encrypted' in client && (client as { encrypted?: boolean }).encrypted === true
    // No secret crosses a plain listener: Basic passwords and bearer tokens alike (and
    // the PSK would travel back in clear) unless an operator opened it for tests.
    if (!encrypted && !this.cfg.allowPlainBasic) throw new BeckonError('BECKON_ERR_INSECURE_CREDENTIALS', `${creds.scheme} credentials on a listener without TLS`)
    return await snap.directory.authenticate(creds)
  }

  // ---- step D: the signal, over the device's channels in order ---------------------

  /** Tries the device's channels in order; returns the one that took it and those that failed. */
  private async signal (entry: DeviceEntry, target: Target, sessionId: Buffer, key: Buffer, log: Logger, resume = false): Promise<{ channel: string, fallback: string[] }> {
    const device = entry.device
    const errors: string[] = []
    const failed: string[] = []
    for (const name of device.channels) {
      const ch = this.deps.channels.get(name)
      if (ch === undefined) { errors.push(`${name}: not configured`); failed.push(name); continue }
      const reference = name === 'sms' ? device.msisdn : device.email_reference ?? device.name
      try {
        const token = sealSignal({
          tunnel: target.mode === 'ipsec' ? Tunnel.IPSEC : Tunnel.TCP,
          relayAddress: this.cfg.publicAddress,
          dialbackPort: this.dialbackPort,
          sessionId,
          // A sleeping device's signal must stay valid as long as the relay waits for it.
          expiry: Math.floor((this.now() + Math.max(this.cfg.signalTtlMs, device.wake_timeout_ms)) / 1000),
          sessionKey: key,
          refKind: name === 'sms' ? 'msisdn' : 'email',
          reference: reference ?? '',
          ...(resume ? { resume } : {}),
        }, this.cfg.x25519Private, entry.gatewayKey)
        await ch.send({ msisdn: device.msisdn, email: device.email }, token, sessionId)
        this.deps.metrics?.signals.inc({ channel: name, result: 'sent' })
        return { channel: name, fallback: failed }
      } catch (err) {
        const e = toBeckonError(err, 'BECKON_ERR_CHANNEL_UNAVAILABLE')
        this.deps.metrics?.signals.inc({ channel: name, result: e.code })
        log.warn({ channel: name, code: e.code, err: e.message }, 'relay: channel failed, trying the next')
        errors.push(`${name}: ${e.message}`)
        failed.push(name)
      }
    }
    throw new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', errors.join('; '))
  }

  // ---- steps G/H: the gateway's dial-back --------------------------------------------

  private expectDialback (sessionId: Buffer, key: Buffer, device: string, wakeTimeoutMs: number): { promise: Promise<{ sock: Socket, status: DialbackStatus }> } {
    const id = sessionId.toString('hex')
    const promise = new Promise<{ sock: Socket, status: DialbackStatus }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new BeckonError('BECKON_ERR_WAKE_TIMEOUT', `no call-back from ${device} within ${wakeTimeoutMs} ms`))
      }, wakeTimeoutMs)
      this.pending.set(id, {
        key,
        deviceName: device,
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

