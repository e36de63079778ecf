/**
 * The RFC 8229 bridge: charon speaks UDP (IKE + ESP-in-UDP) to a loopback socket that
 * it takes for its peer; every datagram becomes one frame on the TCP path and back.
 *
 *   charon :4500 ⇄ udp 127.0.0.1:<bridge port> ⇄ frames on the spliced TCP stream ⇄ peer
 *
 * strongSwan has no IKE/ESP over TCP of its own (strongswan#2186); this is ours.
 * Datagrams go to charon's latest source address and port (it may float ports), or to
 * `charon` until it has spoken (the responder side). Nothing is buffered without
 * bound: datagrams for a stream whose write queue is full are dropped (as a router
 * would) and counted; a full UDP send queue pauses the stream (TCP backpressure).
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
}

/** Emits `close` (error | undefined) once, when either side ends. */
export class Rfc8229Bridge extends EventEmitter {
  readonly stats: BridgeStats = { toStream: 0, fromStream: 0, dropped: 0, keepalives: 0 }
  private peer: { address: string, port: number }
  private closed = false
  private readonly maxQueue: number
  private readonly log: Logger

  private constructor (private readonly o: BridgeOptions, private readonly udp: dgram.Socket) {
    super()
    this.peer = { address: o.charon.host, port: o.charon.port }
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
    this.udp.on('message', (msg, rinfo) => {
      this.peer = { address: rinfo.address, port: rinfo.port }
      if (stream.writableLength > this.maxQueue) { this.stats.dropped++; return }
      if (msg.length === 1 && msg[0] === 0xff) this.stats.keepalives++
      // Datagrams read in one event-loop turn leave in one writev.
      if (!corked) { corked = true; stream.cork(); setImmediate(flush) }
      stream.write(frameHeader(msg))
      stream.write(msg)
      this.stats.toStream++
    })
    this.udp.on('error', (err) => this.close(toBeckonError(err, 'BECKON_ERR_PROTOCOL')))

    stream.on('data', (chunk: Buffer) => {
      let frames: Buffer[]
      try {
        frames = decoder.push(chunk)
      } catch (err) {
        this.close(toBeckonError(err, 'BECKON_ERR_RFC8229_MALFORMED'))
        return
      }
      for (const f of frames) this.udp.send(f, this.peer.port, this.peer.address)
      this.stats.fromStream += frames.length
      // UDP has no backpressure of its own: hold the TCP side while the kernel queue is full.
      if (this.udp.getSendQueueSize() > this.maxQueue) this.waitForUdp()
    })
    stream.once('end', () => this.close(undefined))
    stream.once('close', () => this.close(undefined))
    stream.on('error', (err) => this.close(toBeckonError(err, 'BECKON_ERR_PROTOCOL')))
    stream.resume()
  }

  private waitForUdp (): void {
    this.o.stream.pause()
    const check = (): void => {
      if (this.closed) return
      if (this.udp.getSendQueueSize() > this.maxQueue / 2) setImmediate(check)
      else this.o.stream.resume()
    }
    setImmediate(check)
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

