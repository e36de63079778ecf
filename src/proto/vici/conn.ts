/**
 * VICI connection: stream framing, one reader loop, one exchange in flight, events.
 *
 * Framing (vici_socket.c): every packet travels as one segment
 *
 *   u32be length (of the data, excluding these 4 bytes) ‖ data (codec.ts packet)
 *
 * VICI carries no request ids: charon answers each connection's packets strictly in
 * order. So this connection runs one exchange at a time from a queue, and a request
 * that times out after it was sent poisons the stream (its late answer would be taken
 * for the next one's). We then drop the socket and reconnect instead of guessing, the
 * same reason govici keeps read/write sequence counters.
 *
 * EVENT packets may arrive at any time, also between a request and its response, so
 * packets are demultiplexed by type, never by arrival order. Streamed commands
 * (`list-sas` → N× `list-sa` events → response) are one queued exchange that
 * registers, calls, collects and unregisters.
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/log.js'
import {
  PacketType, MAX_SEGMENT, decodePacket, encodePacket,
  type Packet, type ViciInput, type ViciSection,
} from './codec.js'

export const DEFAULT_URI = 'unix:///var/run/charon.vici'

export type Endpoint = { path: string } | { host: string, port: number }

/** Parses `unix:///path`, `tcp://host:port` or a bare socket path. */
export function parseUri (uri: string): Endpoint {
  if (uri.startsWith('unix://')) {
    const path = uri.slice('unix://'.length)
    if (!path.startsWith('/')) throw new BeckonError('BECKON_ERR_CONFIG', `VICI URI ${uri}: unix:// needs an absolute path`)
    return { path }
  }
  if (uri.startsWith('tcp://')) {
    const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(uri)
    const port = m === null ? NaN : Number(m[2])
    if (m === null || port < 1 || port > 65535) throw new BeckonError('BECKON_ERR_CONFIG', `VICI URI ${uri}: expected tcp://host:port`)
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
  }
  if (uri.startsWith('/')) return { path: uri }
  throw new BeckonError('BECKON_ERR_CONFIG', `VICI URI ${uri}: expected unix:///path or tcp://host:port`)
}

export interface ReconnectPolicy {
  initialMs: number
  maxMs: number
}

export interface ConnectionOptions {
  uri?: string
  /** Default per-request timeout. */
  timeoutMs?: number
  /** Reconnect after charon goes away; `false` fails every queued request instead. */
  reconnect?: ReconnectPolicy | false
  log?: Logger
}

export interface RequestOptions {
  timeoutMs?: number
  /** For streamed commands: the event that carries the results, and where to send them. */
  stream?: { event: string, onEvent: (message: ViciSection) => void }
}

interface Waiter {
  expect: 'command' | 'event'
  resolve: (m: ViciSection) => void
  reject: (e: Error) => void
}

interface Job {
  run: () => Promise<unknown>
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  deadline: number
  /** The socket the job's packets went out on, once started. */
  sentOn: net.Socket | undefined
  timer: NodeJS.Timeout | undefined
}

const HEADER = 4

/**
 * Events: `connect` (reconnected: boolean) after every (re)connect and re-registration,
 * `disconnect` (err), `event` (name, message) for every EVENT not consumed by a stream.
 */
export class ViciConnection extends EventEmitter {
  readonly endpoint: Endpoint
  private readonly uri: string
  private readonly defaultTimeoutMs: number
  private readonly reconnectPolicy: ReconnectPolicy | false
  private readonly log: Logger

  private socket: net.Socket | undefined
  private connected = false
  private everConnected = false
  private closing = false
  private rxChunks: Buffer[] = []
  private rxLength = 0
  private waiter: Waiter | undefined
  private stream: { event: string, onEvent: (m: ViciSection) => void } | undefined
  private readonly queue: Job[] = []
  private running = false
  private backoffMs = 0
  private reconnectTimer: NodeJS.Timeout | undefined
  /** Events this connection is registered for; re-registered after a reconnect. */
  private readonly registered = new Set<string>()

  constructor (opts: ConnectionOptions = {}) {
    super()
    this.uri = opts.uri ?? DEFAULT_URI
    this.endpoint = parseUri(this.uri)
    this.defaultTimeoutMs = opts.timeoutMs ?? 10_000
    this.reconnectPolicy = opts.reconnect ?? { initialMs: 100, maxMs: 5_000 }
    this.log = (opts.log ?? silentLogger).child({ vici: this.uri })
  }

  get isConnected (): boolean { return this.connected }

  /**
   * Opens the socket. With `waitMs`, keeps trying (charon may still be starting)
   * until the deadline; otherwise one attempt.
   */
  async connect (opts: { waitMs?: number } = {}): Promise<void> {
    if (this.connected) return
    this.closing = false
    const deadline = Date.now() + (opts.waitMs ?? 0)
    let delay = 20
    for (;;) {
      try {
        await this.open()
        return
      } catch (err) {
        if (Date.now() + delay > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, delay))
        delay = Math.min(delay * 2, 500)
      }
    }
  }

  private open (): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = 'path' in this.endpoint ? net.connect(this.endpoint.path) : net.connect(this.endpoint.port, this.endpoint.host)
      const onError = (err: Error): void => {
        sock.destroy()
        reject(new BeckonError('BECKON_ERR_VICI_CONNECT', `${this.uri}: ${err.message}`, { cause: err }))
      }
      sock.once('error', onError)
      sock.once('connect', () => {
        sock.off('error', onError)
        this.attach(sock)
        resolve()
        void this.afterConnect()
      })
    })
  }

  private attach (sock: net.Socket): void {
    this.socket = sock
    this.connected = true
    this.rxChunks = []
    this.rxLength = 0
    sock.setNoDelay(true)
    sock.on('data', (chunk: Buffer) => this.onData(sock, chunk))
    sock.on('error', (err) => this.log.debug({ err }, 'vici socket error'))
    sock.on('close', () => this.onClose(sock))
  }

  private async afterConnect (): Promise<void> {
    const reconnected = this.everConnected
    this.everConnected = true
    this.backoffMs = 0
    // Re-register before anything queued runs (holding the queue, since only one
    // exchange may be in flight), so jobs waiting for the connection miss no event.
    this.running = true
    for (const name of this.registered) {
      try {
        await this.exchange({ type: PacketType.EVENT_REGISTER, name }, 'event')
      } catch (err) {
        this.log.warn({ err, event: name }, 'vici: re-registering event failed')
      }
    }
    this.running = false
    if (reconnected) this.log.info('vici: reconnected')
    this.emit('connect', reconnected)
    this.pump()
  }

  // ---- reader loop ------------------------------------------------------------

  /**
   * Reassembly keeps the received chunks in a list and joins them once per segment,
   * so a 512 KiB segment arriving in thousands of small chunks costs linear time
   * (concatenating on every chunk was quadratic).
   */
  private onData (sock: net.Socket, chunk: Buffer): void {
    if (this.socket !== sock) return // torn down: nothing more is read from it
    this.rxChunks.push(chunk)
    this.rxLength += chunk.length
    while (this.rxLength >= HEADER) {
      const head = this.take(HEADER, false)
      const len = head.readUInt32BE(0)
      if (len > MAX_SEGMENT) {
        this.fail(new BeckonError('BECKON_ERR_VICI_LIMIT', `incoming segment of ${len} bytes exceeds ${MAX_SEGMENT}`))
        return
      }
      if (this.rxLength < HEADER + len) return
      const data = this.take(HEADER + len, true).subarray(HEADER)
      let packet: Packet
      try {
        packet = decodePacket(data)
      } catch (err) {
        this.fail(toBeckonError(err, 'BECKON_ERR_VICI_MALFORMED'))
        return
      }
      this.dispatch(packet)
      // dispatch may have torn the connection down (fail): stop at once.
      if (this.socket !== sock) return
    }
  }

  /** The first `n` buffered bytes (n ≤ rxLength), consumed when `consume`. */
  private take (n: number, consume: boolean): Buffer {
    let first = this.rxChunks[0]!
    if (first.length < n) {
      first = Buffer.concat(this.rxChunks, this.rxLength)
      this.rxChunks = [first]
    }
    if (!consume) return first.subarray(0, n)
    const out = first.subarray(0, n)
    if (first.length === n) this.rxChunks.shift()
    else this.rxChunks[0] = first.subarray(n)
    this.rxLength -= n
    return out
  }

  private dispatch (p: Packet): void {
    switch (p.type) {
      case PacketType.EVENT:
        if (this.stream !== undefined && this.stream.event === p.name) {
          this.stream.onEvent(p.message)
        } else {
          this.emit('event', p.name, p.message)
        }
        return
      case PacketType.CMD_RESPONSE:
        return this.settle('command', p.message)
      case PacketType.CMD_UNKNOWN:
        return this.settle('command', new BeckonError('BECKON_ERR_VICI_UNKNOWN_COMMAND'))
      case PacketType.EVENT_CONFIRM:
        return this.settle('event', new Map())
      case PacketType.EVENT_UNKNOWN:
        return this.settle('event', new BeckonError('BECKON_ERR_VICI_UNKNOWN_EVENT'))
      default:
        this.fail(new BeckonError('BECKON_ERR_VICI_MALFORMED', `charon sent a ${PacketType[p.type]} packet, which only clients send`))
    }
  }

  private settle (kind: 'command' | 'event', result: ViciSection | BeckonError): void {
    const w = this.waiter
    if (w === undefined || w.expect !== kind) {
      this.fail(new BeckonError('BECKON_ERR_VICI_MALFORMED', `unexpected ${kind} reply (stream out of sync)`))
      return
    }
    this.waiter = undefined
    if (result instanceof BeckonError) w.reject(result)
    else w.resolve(result)
  }

  /** Tears the socket down after a protocol error; reconnect logic takes over. */
  private fail (err: BeckonError): void {
    this.log.warn({ err }, 'vici: dropping connection')
    const sock = this.socket
    if (sock === undefined) return
    // Detach now: 'close' comes later, and packets still buffered must not be dispatched
    // to waiters of a connection that is already gone.
    sock.pause()
    sock.destroy(err)
    this.onClose(sock, err)
  }

  private onClose (sock: net.Socket, cause?: BeckonError): void {
    if (this.socket !== sock) return
    this.socket = undefined
    this.connected = false
    const err = new BeckonError('BECKON_ERR_VICI_CLOSED', this.closing ? 'closed by client' : cause !== undefined ? `dropped: ${cause.message}` : 'charon closed the connection')
    if (this.waiter !== undefined) {
      const w = this.waiter
      this.waiter = undefined
      w.reject(err)
    }
    this.emit('disconnect', err)
    if (this.closing || this.reconnectPolicy === false) {
      this.rejectQueue(err)
      return
    }
    this.scheduleReconnect()
  }

  private scheduleReconnect (): void {
    if (this.reconnectPolicy === false || this.closing) return
    const p = this.reconnectPolicy
    this.backoffMs = this.backoffMs === 0 ? p.initialMs : Math.min(this.backoffMs * 2, p.maxMs)
    const delay = this.backoffMs
    this.log.debug({ delay }, 'vici: reconnect scheduled')
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.open().catch(() => this.scheduleReconnect())
    }, delay)
  }

  // ---- exchanges --------------------------------------------------------------

  /** Sends one packet and waits for its reply. Only called by the job in flight. */
  private exchange (p: Packet<ViciInput>, expect: 'command' | 'event'): Promise<ViciSection> {
    const sock = this.socket
    if (sock === undefined || !this.connected) {
      return Promise.reject(new BeckonError('BECKON_ERR_VICI_CLOSED', 'not connected'))
    }
    let data: Buffer
    try {
      data = encodePacket(p)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      this.waiter = { expect, resolve, reject }
      const header = Buffer.allocUnsafe(HEADER)
      header.writeUInt32BE(data.length, 0)
      sock.cork()
      sock.write(header)
      sock.write(data)
      sock.uncork()
    })
  }

  private enqueue<T> (run: () => Promise<T>, timeoutMs: number, what: string): Promise<T> {
    if (this.closing) return Promise.reject(new BeckonError('BECKON_ERR_VICI_CLOSED', 'connection is closed'))
    if (!this.connected && !this.everConnected) {
      return Promise.reject(new BeckonError('BECKON_ERR_VICI_CLOSED', 'connect() was not called'))
    }
    if (!this.connected && this.reconnectPolicy === false) {
      return Promise.reject(new BeckonError('BECKON_ERR_VICI_CLOSED', 'charon closed the connection (reconnect disabled)'))
    }
    return new Promise<T>((resolve, reject) => {
      const job: Job = {
        run,
        resolve: resolve as (v: unknown) => void,
        reject,
        deadline: Date.now() + timeoutMs,
        sentOn: undefined,
        timer: undefined,
      }
      job.timer = setTimeout(() => {
        const err = new BeckonError('BECKON_ERR_VICI_TIMEOUT', `${what} got no answer within ${timeoutMs} ms`)
        const i = this.queue.indexOf(job)
        if (i >= 0) this.queue.splice(i, 1)
        job.reject(err)
        // Sent but unanswered: the reply may still come and would desync the stream.
        job.sentOn?.destroy(err)
      }, timeoutMs)
      this.queue.push(job)
      this.pump()
    })
  }

  private pump (): void {
    if (this.running || !this.connected || this.waiter !== undefined) return
    const job = this.queue.shift()
    if (job === undefined) return
    this.running = true
    job.sentOn = this.socket
    job.run().then(
      (v) => { clearTimeout(job.timer); job.resolve(v) },
      (e: Error) => { clearTimeout(job.timer); job.reject(e) },
    ).finally(() => {
      this.running = false
      this.stream = undefined
      this.pump()
    })
  }

  private rejectQueue (err: BeckonError): void {
    for (const job of this.queue.splice(0)) {
      clearTimeout(job.timer)
      job.reject(err)
    }
  }

  /** Sends a command and resolves with its response message. */
  request (name: string, message: ViciInput = {}, opts: RequestOptions = {}): Promise<ViciSection> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs
    const stream = opts.stream
    const command = (): Promise<ViciSection> => this.exchange({ type: PacketType.CMD_REQUEST, name, message }, 'command')
    if (stream === undefined) return this.enqueue(command, timeoutMs, `command ${name}`)
    return this.enqueue(async () => {
      await this.exchange({ type: PacketType.EVENT_REGISTER, name: stream.event }, 'event')
      try {
        this.stream = stream
        return await command()
      } finally {
        this.stream = undefined
        if (this.connected) await this.exchange({ type: PacketType.EVENT_UNREGISTER, name: stream.event }, 'event')
      }
    }, timeoutMs, `command ${name}`)
  }

  /** Registers for a broadcast event; kept across reconnects until unregistered. */
  async register (name: string, timeoutMs = this.defaultTimeoutMs): Promise<void> {
    await this.enqueue(() => this.exchange({ type: PacketType.EVENT_REGISTER, name }, 'event'), timeoutMs, `register ${name}`)
    this.registered.add(name)
  }

  async unregister (name: string, timeoutMs = this.defaultTimeoutMs): Promise<void> {
    this.registered.delete(name)
    await this.enqueue(() => this.exchange({ type: PacketType.EVENT_UNREGISTER, name }, 'event'), timeoutMs, `unregister ${name}`)
  }

  /** Closes for good: queued requests fail with BECKON_ERR_VICI_CLOSED. */
  async close (): Promise<void> {
    this.closing = true
    clearTimeout(this.reconnectTimer)
    this.rejectQueue(new BeckonError('BECKON_ERR_VICI_CLOSED', 'closed by client'))
    const sock = this.socket
    if (sock === undefined) return
    await new Promise<void>((resolve) => {
      sock.once('close', () => resolve())
      sock.end()
      setTimeout(() => sock.destroy(), 1000).unref()
    })
  }
}
