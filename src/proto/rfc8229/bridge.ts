/**
 * The RFC 8229 bridge: charon speaks UDP (IKE + ESP-in-UDP) to a loopback socket that
 * it takes for its peer; every datagram becomes one frame on the TCP path and back.
 *
 *   charon :4500 ⇄ udp 127.0.0.1:<bridge port> ⇄ frames on the spliced TCP stream ⇄ peer
 *
 * strongSwan has no IKE/ESP over TCP of its own (strongswan#2186); this is ours.
 * The UDP socket is connect()ed to charon's NAT-T address (`charon`, its local_port):
 * the kernel then delivers only charon's datagrams, so another local process cannot
 * inject packets into the tunnel or steer its replies elsewhere by writing first.
 * Nothing is buffered without bound: datagrams for a stream whose write queue is full
 * are dropped (as a router would) and counted; datagrams not yet handed to the kernel
 * are counted and, past the limit, the TCP stream stops being read until they drain
 * (TCP backpressure towards the peer).
 *
 * Mobility: the UDP socket, and so charon's view of its peer (127.0.0.1:<port>), outlives
 * any one TCP stream. A `resumable` bridge whose stream ends, fails or stalls emits
 * `detached` and drops charon's datagrams (IKE retransmits, TCP inside the tunnel
 * retransmits) until `attach()` hands it the stream of a re-joined path; the SAs never
 * notice beyond the outage. Each stream is a fresh RFC 8229 connection: the originator
 * sends "IKETCP" again. With `liveness`, the bridge sends a ping control frame once the
 * stream has been silent for `pingMs` and declares the path stalled after `stallMs`
 * without any inbound byte (a moved terminal or a lost NAT binding sends no FIN).
 */
import dgram from 'node:dgram'
import { EventEmitter } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/log.js'
import { Control, FrameDecoder, PREFIX, controlFrame, controlType, frameHeader } from './framing.js'

export interface BridgeOptions {
  /** The TCP path, already past every handshake; absent: attach() one later. */
  stream?: Socket
  /** The TCP originator sends "IKETCP"; the other side expects it. */
  originator: boolean
  /** Where charon listens (its NAT-T port) for the first datagram from our side. */
  charon: { host: string, port: number }
  /** Drop datagrams once this many bytes wait to be written to the stream. */
  maxQueueBytes?: number
  /** Keep the UDP socket when the stream goes (emit `detached`) instead of closing. */
  resumable?: boolean
  /** Path liveness: ping after `pingMs` of inbound silence, stalled after `stallMs`. */
  liveness?: { pingMs: number, stallMs: number }
  log?: Logger
}

export interface BridgeStats {
  toStream: number
  fromStream: number
  dropped: number
  keepalives: number
  /** Times the stream was paused because charon's UDP side had not drained. */
  paused: number
  /** Streams attached, and streams lost (ended, failed, stalled). */
  attaches: number
  detaches: number
}

export type DetachReason = 'end' | 'error' | 'stall' | 'malformed'

const PING = controlFrame(Control.PING)
const PONG = controlFrame(Control.PONG)

/**
 * Emits `close` (error | undefined) once, when the bridge ends; a resumable bridge emits
 * `detached` (reason, error) each time its stream goes and `attached` on each attach().
 */
export class Rfc8229Bridge extends EventEmitter {
  readonly stats: BridgeStats = { toStream: 0, fromStream: 0, dropped: 0, keepalives: 0, paused: 0, attaches: 0, detaches: 0 }
  private closed = false
  /** Bytes handed to udp.send() whose callbacks have not run yet. */
  private udpPending = 0
  private readPaused = false
  private readonly maxQueue: number
  private readonly log: Logger
  private stream: Socket | undefined
  private unhook: (() => void) | undefined
  private corked: Socket | undefined
  private lastRx = 0
  private lastPing = 0
  private timer: NodeJS.Timeout | undefined
  private finishing = false

  private constructor (private readonly o: BridgeOptions, private readonly udp: dgram.Socket) {
    super()
    this.maxQueue = o.maxQueueBytes ?? 1 << 20
    this.log = o.log ?? silentLogger
  }

  /** Binds the loopback UDP socket and starts moving datagrams. */
  static async open (o: BridgeOptions): Promise<Rfc8229Bridge> {
    // Room for bursts: a datagram the kernel drops here is a loss inside the tunnel.
    const udp = dgram.createSocket({ type: o.charon.host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind(0, o.charon.host, () => { udp.off('error', reject); resolve() })
    })
    // Pinned: only charon's NAT-T socket may speak to this bridge.
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.connect(o.charon.port, o.charon.host, () => { udp.off('error', reject); resolve() })
    })
    const b = new Rfc8229Bridge(o, udp)
    b.startUdp()
    if (o.stream !== undefined) b.attach(o.stream)
    return b
  }

  /** The UDP port charon must use as its peer's port (`remote_port`). */
  get port (): number { return (this.udp.address() as AddressInfo).port }

  get attached (): boolean { return this.stream !== undefined }

  get isClosed (): boolean { return this.closed }

  private startUdp (): void {
    const flush = (): void => { const s = this.corked; this.corked = undefined; s?.uncork() }
    this.udp.on('message', (msg) => {
      const stream = this.stream
      // Detached: dropped, as a router without a route would; the ends retransmit.
      if (stream === undefined || stream.writableLength > this.maxQueue) { this.stats.dropped++; return }
      if (msg.length === 1 && msg[0] === 0xff) this.stats.keepalives++
      // Datagrams read in one event-loop turn leave in one writev.
      if (this.corked === undefined) { this.corked = stream; stream.cork(); setImmediate(flush) }
      stream.write(frameHeader(msg))
      stream.write(msg)
      this.stats.toStream++
    })
    this.udp.on('error', (err: NodeJS.ErrnoException) => {
      // A connected UDP socket hears ICMP port-unreachable as ECONNREFUSED: charon is
      // restarting; the datagram is lost, as it would be on the wire. Not fatal.
      if (err.code === 'ECONNREFUSED') { this.stats.dropped++; return }
      this.close(toBeckonError(err, 'BECKON_ERR_PROTOCOL'))
    })
  }

  /**
   * Carries charon's datagrams on `stream` from now on (a fresh RFC 8229 connection). A
   * stream already attached is dropped first: the newest path wins.
   */
  attach (stream: Socket): void {
    if (this.closed) { stream.destroy(); return }
    if (this.stream !== undefined) this.release()
    const decoder = new FrameDecoder(!this.o.originator)
    this.stream = stream
    this.stats.attaches++
    // Each frame is a whole packet already: Nagle would only hold small ones back.
    stream.setNoDelay(true)
    if (this.o.originator) stream.write(PREFIX)
    const onData = (chunk: Buffer): void => {
      this.lastRx = Date.now()
      let frames: Buffer[]
      try {
        frames = decoder.push(chunk)
      } catch (err) {
        this.lost(stream, 'malformed', toBeckonError(err, 'BECKON_ERR_RFC8229_MALFORMED'))
        return
      }
      for (const f of frames) {
        const c = controlType(f)
        if (c === undefined) this.toCharon(f)
        else if (c === Control.PING) stream.write(PONG)
        else if (c === Control.CLOSE) { this.close(undefined); return }
      }
      this.stats.fromStream += frames.length
    }
    const onEnd = (): void => this.lost(stream, 'end', undefined)
    const onError = (err: Error): void => this.lost(stream, 'error', toBeckonError(err, 'BECKON_ERR_PROTOCOL'))
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('close', onEnd)
    stream.on('error', onError)
    this.unhook = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('close', onEnd)
      stream.off('error', onError)
      stream.on('error', () => {})
    }
    this.lastRx = Date.now()
    this.lastPing = 0
    if (this.o.liveness !== undefined) {
      const { pingMs, stallMs } = this.o.liveness
      this.timer = setInterval(() => {
        const now = Date.now()
        const idle = now - this.lastRx
        if (idle >= stallMs) this.lost(stream, 'stall', new BeckonError('BECKON_ERR_PATH_LOST', `nothing received for ${idle} ms`))
        else if (idle >= pingMs && now - this.lastPing >= pingMs) { this.lastPing = now; stream.write(PING) }
      }, Math.max(50, Math.min(pingMs, stallMs) / 4))
      this.timer.unref()
    }
    if (this.readPaused) stream.pause()
    else stream.resume()
    this.emit('attached')
  }

  /** Stops using the current stream and destroys it; emits nothing. */
  private release (): void {
    const s = this.stream
    if (s === undefined) return
    if (this.timer !== undefined) { clearInterval(this.timer); this.timer = undefined }
    this.unhook?.()
    this.unhook = undefined
    this.stream = undefined
    // After finish(): let the close frame and the FIN go out, then make sure.
    if (this.finishing) setTimeout(() => s.destroy(), 2_000).unref()
    else s.destroy()
  }

  private lost (stream: Socket, reason: DetachReason, err: BeckonError | undefined): void {
    if (this.stream !== stream || this.closed) return
    this.release()
    this.stats.detaches++
    if (this.o.resumable !== true) { this.close(reason === 'end' ? undefined : err); return }
    this.log.info({ reason, err: err?.message }, 'rfc8229 bridge detached; charon keeps its SAs')
    this.emit('detached', reason, err)
  }

  /**
   * UDP has no backpressure of its own, so the bridge counts what it has handed to the
   * kernel and not yet seen sent; past the limit it stops reading the TCP stream (the
   * peer's TCP window closes) and resumes once half has drained.
   */
  private toCharon (f: Buffer): void {
    this.udpPending += f.length
    this.udp.send(f, (err) => {
      this.udpPending -= f.length
      if (err !== null && err !== undefined) this.stats.dropped++
      if (this.readPaused && this.udpPending <= this.maxQueue / 2 && !this.closed) {
        this.readPaused = false
        this.stream?.resume()
      }
    })
    if (!this.readPaused && this.udpPending > this.maxQueue) {
      this.readPaused = true
      this.stats.paused++
      this.stream?.pause()
    }
  }

  /** Ends on purpose: tells the peer bridge (a close frame) so it does not wait for a re-join. */
  finish (): void {
    if (this.closed) return
    this.finishing = true
    this.stream?.end(controlFrame(Control.CLOSE))
    this.close()
  }

  close (err?: BeckonError): void {
    if (this.closed) return
    this.closed = true
    if (err !== undefined) this.log.warn({ code: err.code, err: err.message }, 'rfc8229 bridge closed')
    this.release()
    this.udp.close()
    this.emit('close', err)
  }
}
