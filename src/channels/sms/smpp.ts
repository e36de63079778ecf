/**
 * SMPP binds (SMPP 5.0, 3.4-compatible) on smpp@0.5.1, kept up with backoff.
 *
 * The relay binds as a transmitter and sends signals with `submit_sm`; the gateway binds
 * as a receiver and gets them in `deliver_sm`. Both connections are outbound from our
 * side, as an SMSC expects.
 *
 * Submits are windowed (SMPP 5.0 §2.7.1, "window size"): up to `window` submit_sm are in
 * flight at once, each matched to its submit_sm_resp by sequence number, so a burst of
 * rendezvous does not wait one SMSC round trip per signal; past the window they wait in
 * a bounded queue (`maxWaiting`, then a coded refusal), never without bound. A PDU the library cannot parse leaves its session wedged,
 * so any session error destroys that session and the bind is re-established.
 */
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import smpp from 'smpp'
import { BeckonError } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/log.js'
import { decodeSms, encodeSms, rawShortMessage } from './udh.js'

export interface SmppBindOptions {
  /** smpp://host:port or ssmpp://host:port (TLS). */
  url: string
  systemId: string
  password: string
  mode: 'transmitter' | 'receiver'
  /** For receivers: which destination addresses the SMSC should route to us. */
  addressRange?: string
  reconnect?: { initialMs: number, maxMs: number }
  enquireLinkMs?: number
  /** submit_sm in flight at once (default 10). */
  window?: number
  /** submits waiting for a window slot before further ones are refused (default 1000). */
  maxWaiting?: number
  log?: Logger
}

interface WaitingSubmit { start: () => void, reject: (err: Error) => void }

const DATA_CODING_BINARY = 0x04
const ESM_UDHI = 0x40

/**
 * smpp@0.5.1 splits UDHI messages into header elements on decode, and that split is
 * lossy when the header is malformed (a forged SMS could reach us altered). For 8-bit
 * binary data we want the octets exactly as sent, so the decode filter passes them
 * through; every other data coding keeps the library's behaviour.
 */
export function installBinaryPassthrough (): void {
  const defs = createRequire(import.meta.url)('smpp/lib/defs.js') as {
    filters: { message: { decode: (this: { data_coding?: number }, v: unknown, skipUdh?: boolean) => unknown, beckonPassthrough?: true } }
  }
  const filter = defs.filters.message
  if (filter.beckonPassthrough === true) return
  const original = filter.decode
  filter.decode = function (value, skipUdh) {
    if (Buffer.isBuffer(value) && this.data_coding === DATA_CODING_BINARY) return value
    return original.call(this, value, skipUdh)
  }
  filter.beckonPassthrough = true
}
installBinaryPassthrough()

/** Events: `bound`, `unbound` (reason), `deliver` ({ from, to, sms }). */
export class SmppBind extends EventEmitter {
  private session: smpp.Session | undefined
  private isBound = false
  private stopped = true
  private backoffMs = 0
  private timer: NodeJS.Timeout | undefined
  private readonly log: Logger
  private inFlight = 0
  private readonly waiting: WaitingSubmit[] = []
  /** The most submit_sm that were in flight at once (benches and tests read it). */
  maxInFlight = 0

  constructor (private readonly o: SmppBindOptions) {
    super()
    this.log = (o.log ?? silentLogger).child({ smpp: o.url, bind: o.mode })
  }

  get bound (): boolean { return this.isBound }

  start (): void {
    if (!this.stopped) return
    this.stopped = false
    this.connect()
  }

  /** Resolves once bound, or rejects after `timeoutMs`. */
  waitBound (timeoutMs: number): Promise<void> {
    if (this.isBound) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('bound', onBound)
        reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', `no SMPP bind to ${this.o.url} within ${timeoutMs} ms`))
      }, timeoutMs)
      const onBound = (): void => { clearTimeout(timer); resolve() }
      this.once('bound', onBound)
    })
  }

  private connect (): void {
    const u = new URL(this.o.url)
    if (u.protocol !== 'smpp:' && u.protocol !== 'ssmpp:') {
      throw new BeckonError('BECKON_ERR_CONFIG', `SMPP URL ${this.o.url}: expected smpp:// or ssmpp://`)
    }
    const session = smpp.connect({ url: this.o.url, auto_enquire_link_period: this.o.enquireLinkMs ?? 30_000 })
    this.session = session
    session.on('connect', () => this.bind(session))
    session.on('error', (err: Error) => {
      this.log.warn({ err: err.message }, 'smpp session error')
      session.destroy()
    })
    session.on('close', () => this.onClose(session))
    session.on('deliver_sm', (pdu: smpp.PDU) => this.onDeliver(session, pdu))
    session.on('unbind', (pdu: smpp.PDU) => {
      session.send(pdu.response())
      session.close()
    })
    // Answer an SMSC's keep-alive so it does not drop us.
    session.on('enquire_link', (pdu: smpp.PDU) => { session.send(pdu.response()) })
  }

  private bind (session: smpp.Session): void {
    const params = {
      system_id: this.o.systemId,
      password: this.o.password,
      interface_version: 0x34,
      address_range: this.o.addressRange ?? '',
    }
    const cb = (resp: smpp.PDU): void => {
      if (this.session !== session) return
      if (resp.command_status !== 0) {
        this.log.error({ status: resp.command_status }, 'smpp bind refused')
        session.destroy()
        return
      }
      this.isBound = true
      this.backoffMs = 0
      this.log.info('smpp bound')
      this.emit('bound')
    }
    if (this.o.mode === 'transmitter') session.bind_transmitter(params, cb)
    else session.bind_receiver(params, cb)
  }

  private onClose (session: smpp.Session): void {
    if (this.session !== session) return
    this.session = undefined
    const was = this.isBound
    this.isBound = false
    if (was) this.emit('unbound', 'connection closed')
    if (this.stopped) return
    const p = this.o.reconnect ?? { initialMs: 200, maxMs: 5_000 }
    this.backoffMs = this.backoffMs === 0 ? p.initialMs : Math.min(this.backoffMs * 2, p.maxMs)
    this.timer = setTimeout(() => { this.timer = undefined; if (!this.stopped) this.connect() }, this.backoffMs)
  }

  private onDeliver (session: smpp.Session, pdu: smpp.PDU): void {
    // Acknowledge first: a message we cannot use must not be redelivered forever.
    session.send(pdu.response())
    if (this.o.mode !== 'receiver') return
    this.emit('deliver', { from: pdu.source_addr ?? '', to: pdu.destination_addr ?? '', sms: rawShortMessage(pdu.short_message) })
  }

  /** Sends 8-bit binary user data (already carrying its UDH); resolves with the message id. */
  submit (destination: string, source: string, sms: Buffer, timeoutMs = 5_000): Promise<string> {
    if (this.session === undefined || !this.isBound) {
      return Promise.reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', `not bound to ${this.o.url}`))
    }
    return new Promise((resolve, reject) => {
      const start = (): void => { this.send1(destination, source, sms, timeoutMs).then(resolve, reject) }
      if (this.inFlight < (this.o.window ?? 10)) { start(); return }
      if (this.waiting.length >= (this.o.maxWaiting ?? 1_000)) {
        reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', `SMPP window full and ${this.waiting.length} submits waiting`))
        return
      }
      this.waiting.push({ start, reject })
    })
  }

  /** One submit_sm in the window; the slot is freed once, by the response or the timeout. */
  private send1 (destination: string, source: string, sms: Buffer, timeoutMs: number): Promise<string> {
    const session = this.session
    if (session === undefined || !this.isBound) {
      return Promise.reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', `not bound to ${this.o.url}`))
    }
    this.inFlight++
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.inFlight--
      this.next()
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { release(); reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', `submit_sm unanswered after ${timeoutMs} ms`)) }, timeoutMs)
      const sent = session.submit_sm({
        source_addr: source,
        destination_addr: destination,
        esm_class: ESM_UDHI,
        data_coding: DATA_CODING_BINARY,
        registered_delivery: 0,
        short_message: sms,
      }, (resp) => {
        clearTimeout(timer)
        release()
        if (resp.command_status !== 0) reject(new BeckonError('BECKON_ERR_CHANNEL_REFUSED', `submit_sm status 0x${resp.command_status.toString(16)}`))
        else resolve(resp.message_id ?? '')
      })
      if (!sent) {
        clearTimeout(timer)
        release()
        reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', 'SMPP socket not writable'))
      }
    })
  }

  /** Starts the oldest waiting submit when a slot is free. */
  private next (): void {
    while (this.inFlight < (this.o.window ?? 10) && this.waiting.length > 0) this.waiting.shift()!.start()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    for (const w of this.waiting.splice(0)) w.reject(new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', 'SMPP bind stopped'))
    const s = this.session
    if (s === undefined) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { s.destroy(); resolve() }, 1_000)
      s.once('close', () => { clearTimeout(t); resolve() })
      if (this.isBound) s.unbind(() => s.close())
      else s.destroy()
    })
  }
}

/** What the relay needs from an SMS channel. */
export interface SmsSender {
  sendSignal (msisdn: string, token: Buffer): Promise<string>
}

export class SmppSmsSender implements SmsSender {
  constructor (private readonly bind: SmppBind, private readonly sourceAddr: string) {}

  async sendSignal (msisdn: string, token: Buffer): Promise<string> {
    return await this.bind.submit(msisdn, this.sourceAddr, encodeSms(token))
  }
}

export interface ReceivedSignal {
  from: string
  to: string
  token: Buffer
}

/**
 * The gateway's SMS inbox: emits `signal` (ReceivedSignal) for payloads on our port and
 * `invalid` (err, meta) for everything else, so the caller logs one coded line each.
 */
export class SmppSmsReceiver extends EventEmitter {
  constructor (readonly bind: SmppBind) {
    super()
    bind.on('deliver', (m: { from: string, to: string, sms: Buffer }) => {
      try {
        this.emit('signal', { from: m.from, to: m.to, token: decodeSms(m.sms) } satisfies ReceivedSignal)
      } catch (err) {
        this.emit('invalid', err, { from: m.from, to: m.to })
      }
    })
  }
}
