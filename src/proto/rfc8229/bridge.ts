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
 */
import dgram from 'node:dgram'
import { EventEmitter } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { toBeckonError, type BeckonError } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/log.js'
import { FrameDecoder, PREFIX, frameHeader } from './framing.js'

export interface BridgeOptions {
  /** The TCP path, already past every handshake. */
  stream: Socket
  /** The TCP originator sends "IKETCP"; the other side expects it. */
  originator: boolean
  /** Where charon listens (its NAT-T port) for the first datagram from our side. */
  charon: { host: string, port: number }
  /** Drop datagrams once this many bytes wait to be written to the stream. */
  maxQueueBytes?: number
  log?: Logger
}

export interface BridgeStats {
  toStream: number
  fromStream: number
  dropped: number
  keepalives: number
  /** Times the stream was paused because charon's UDP side had not drained. */
  paused: number
}

/** Emits `close` (error | undefined) once, when either side ends. */
export class Rfc8229Bridge extends EventEmitter {
  readonly stats: BridgeStats = { toStream: 0, fromStream: 0, dropped: 0, keepalives: 0, paused: 0 }
  private closed = false
  /** Bytes handed to udp.send() whose callbacks have not run yet. */
  private udpPending = 0
  private readPaused = false
  private readonly maxQueue: number
  private readonly log: Logger

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
    b.start()
    return b
  }

  /** The UDP port charon must use as its peer's port (`remote_port`). */
  get port (): number { return (this.udp.address() as AddressInfo).port }

  private start (): void {
    const { stream } = this.o
    const decoder = new FrameDecoder(!this.o.originator)
    // Each frame is a whole packet already: Nagle would only hold small ones back.
    stream.setNoDelay(true)
    if (this.o.originator) stream.write(PREFIX)

    let corked = false
    const flush = (): void => { corked = false; stream.uncork() }
    this.udp.on('message', (msg) => {
      if (stream.writableLength > this.maxQueue) { this.stats.dropped++; return }
      if (msg.length === 1 && msg[0] === 0xff) this.stats.keepalives++
      // Datagrams read in one event-loop turn leave in one writev.
      if (!corked) { corked = true; stream.cork(); setImmediate(flush) }
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

    stream.on('data', (chunk: Buffer) => {
      let frames: Buffer[]
      try {
        frames = decoder.push(chunk)
      } catch (err) {
        this.close(toBeckonError(err, 'BECKON_ERR_RFC8229_MALFORMED'))
        return
      }
      for (const f of frames) this.toCharon(f)
      this.stats.fromStream += frames.length
    })
    stream.once('end', () => this.close(undefined))
    stream.once('close', () => this.close(undefined))
    stream.on('error', (err) => this.close(toBeckonError(err, 'BECKON_ERR_PROTOCOL')))
    stream.resume()
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
        this.o.stream.resume()
      }
    })
    if (!this.readPaused && this.udpPending > this.maxQueue) {
      this.readPaused = true
      this.stats.paused++
      this.o.stream.pause()
    }
  }

  close (err?: BeckonError): void {
    if (this.closed) return
    this.closed = true
    if (err !== undefined) this.log.warn({ code: err.code, err: err.message }, 'rfc8229 bridge closed')
    this.o.stream.destroy()
    this.udp.close()
    this.emit('close', err)
  }
}

