/**
 * A small store-and-forward SMSC for the lab and tests (SMPP 3.4/5.0 on smpp@0.5.1).
 *
 * ESMEs bind with a system id and password. `submit_sm` from a transmitter is queued
 * and routed by destination address to a bound receiver whose address range is a
 * prefix of it (an empty range takes everything); messages wait, bounded in count and
 * time, until such a receiver binds. Delivery is `deliver_sm` with the submitted octets,
 * `esm_class` and `data_coding` unchanged; a message leaves the queue once acknowledged.
 * `holdMs` keeps each message back that long after submission, as a network does for a
 * terminal in eDRX/PSM sleep until its next paging occasion (the lab's sleepy variant).
 */
import { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import smpp from 'smpp'
import { silentLogger, type Logger } from '../core/log.js'
import { rawShortMessage } from '../channels/sms/udh.js'
import '../channels/sms/smpp.js' // binary pass-through for the shared smpp library

export interface SmscAccount {
  systemId: string
  password: string
  /** Destination prefix routed to this account when it binds as a receiver. */
  addressRange?: string
}

export interface SmscOptions {
  accounts: SmscAccount[]
  maxQueue?: number
  validityMs?: number
  /** Deliver no message earlier than this long after its submission. */
  holdMs?: number
  log?: Logger
}

interface Bound {
  systemId: string
  mode: 'transmitter' | 'receiver' | 'transceiver'
  range: string
}

interface Queued {
  id: string
  from: string
  to: string
  esmClass: number
  dataCoding: number
  sms: Buffer
  expires: number
  /** Not delivered before this time (holdMs). */
  due: number
  inFlight: boolean
  /** The receiver session a delivery is in flight on. */
  via: smpp.Session | undefined
}

/** Events: `submit` (Queued), `deliver` (Queued, systemId). */
export class Smsc extends EventEmitter {
  private readonly server: smpp.Server
  private readonly bound = new Map<smpp.Session, Bound>()
  private readonly queue: Queued[] = []
  private nextId = 1
  private rr = 0
  private readonly log: Logger
  private readonly sweeper: NodeJS.Timeout

  constructor (private readonly o: SmscOptions) {
    super()
    this.log = o.log ?? silentLogger
    this.server = smpp.createServer((s) => this.onSession(s))
    this.sweeper = setInterval(() => this.sweep(), 5_000)
    this.sweeper.unref()
  }

  listen (port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => resolve((this.server.address() as AddressInfo).port))
    })
  }

  get queued (): number { return this.queue.length }

  private onSession (s: smpp.Session): void {
    s.on('error', (err: Error) => {
      this.log.warn({ err: err.message }, 'smsc: dropping session after error')
      s.destroy()
    })
    s.on('close', () => {
      this.bound.delete(s)
      // Deliveries unanswered on this session are sent again to another receiver.
      for (const m of this.queue) if (m.via === s) { m.inFlight = false; m.via = undefined }
      this.pump()
    })
    for (const mode of ['transmitter', 'receiver', 'transceiver'] as const) {
      s.on(`bind_${mode}`, (pdu: smpp.PDU) => this.onBind(s, pdu, mode))
    }
    s.on('submit_sm', (pdu: smpp.PDU) => this.onSubmit(s, pdu))
    s.on('enquire_link', (pdu: smpp.PDU) => s.send(pdu.response()))
    s.on('unbind', (pdu: smpp.PDU) => { s.send(pdu.response()); s.close() })
    s.on('unknown', (pdu: smpp.PDU) => s.send(pdu.response()))
  }

  private onBind (s: smpp.Session, pdu: smpp.PDU, mode: Bound['mode']): void {
    if (this.bound.has(s)) {
      s.send(pdu.response({ command_status: smpp.ESME_RALYBND }))
      return
    }
    const acct = this.o.accounts.find((a) => a.systemId === pdu.system_id)
    if (acct === undefined || acct.password !== pdu.password) {
      this.log.warn({ systemId: pdu.system_id }, 'smsc: bind refused')
      s.send(pdu.response({ command_status: acct === undefined ? smpp.ESME_RINVSYSID : smpp.ESME_RINVPASWD }))
      s.close()
      return
    }
    const range = pdu.address_range !== undefined && pdu.address_range !== '' ? pdu.address_range : (acct.addressRange ?? '')
    this.bound.set(s, { systemId: acct.systemId, mode, range })
    s.send(pdu.response({ system_id: 'beckon-smsc' }))
    this.log.info({ systemId: acct.systemId, mode, range }, 'smsc: bound')
    if (mode !== 'transmitter') this.pump()
  }

  private onSubmit (s: smpp.Session, pdu: smpp.PDU): void {
    const b = this.bound.get(s)
    if (b === undefined || b.mode === 'receiver') return void s.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }))
    const to = pdu.destination_addr ?? ''
    if (to === '') return void s.send(pdu.response({ command_status: smpp.ESME_RINVDSTADR }))
    if (this.queue.length >= (this.o.maxQueue ?? 1_000)) return void s.send(pdu.response({ command_status: smpp.ESME_RMSGQFUL }))
    const m: Queued = {
      id: String(this.nextId++),
      from: pdu.source_addr ?? '',
      to,
      esmClass: pdu.esm_class ?? 0,
      dataCoding: pdu.data_coding ?? 0,
      sms: rawShortMessage(pdu.short_message),
      expires: Date.now() + (this.o.validityMs ?? 600_000),
      due: Date.now() + (this.o.holdMs ?? 0),
      inFlight: false,
      via: undefined,
    }
    this.queue.push(m)
    s.send(pdu.response({ message_id: m.id }))
    this.log.info({ id: m.id, from: m.from, to: m.to, octets: m.sms.length, by: b.systemId }, 'smsc: accepted')
    this.emit('submit', m)
    if (m.due > Date.now()) {
      this.log.info({ id: m.id, holdMs: this.o.holdMs }, 'smsc: held until the terminal wakes')
      setTimeout(() => this.pump(), m.due - Date.now()).unref()
    }
    this.pump()
  }

  private receiversFor (to: string): Array<[smpp.Session, Bound]> {
    return [...this.bound].filter(([, b]) => b.mode !== 'transmitter' && to.startsWith(b.range))
  }

  private pump (): void {
    for (const m of this.queue) {
      if (m.inFlight || m.due > Date.now()) continue
      const rx = this.receiversFor(m.to)
      if (rx.length === 0) continue
      const [s, b] = rx[this.rr++ % rx.length]!
      m.inFlight = true
      m.via = s
      const sent = s.deliver_sm({
        source_addr: m.from,
        destination_addr: m.to,
        esm_class: m.esmClass,
        data_coding: m.dataCoding,
        short_message: m.sms,
      }, (resp) => {
        m.inFlight = false
        m.via = undefined
        if (resp.command_status === 0) {
          const i = this.queue.indexOf(m)
          if (i >= 0) this.queue.splice(i, 1)
          this.log.info({ id: m.id, to: m.to, systemId: b.systemId }, 'smsc: delivered')
          this.emit('deliver', m, b.systemId)
        } else {
          this.log.warn({ id: m.id, status: resp.command_status }, 'smsc: delivery refused; kept')
        }
      })
      if (!sent) m.inFlight = false
    }
  }

  private sweep (): void {
    const now = Date.now()
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const m = this.queue[i]!
      if (m.expires <= now && !m.inFlight) {
        this.queue.splice(i, 1)
        this.log.warn({ id: m.id, to: m.to }, 'smsc: expired undelivered')
      }
    }
    this.pump()
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
    for (const s of this.bound.keys()) s.destroy()
    for (const s of this.server.sessions) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
