/**
 * The zone client: RFC 2136 UPDATE and a zone transfer (AXFR, RFC 5936), both signed with
 * TSIG and both over TCP (RFC 1035 §4.2.2: each message behind a u16 length), so an update
 * of any size needs no truncation handling and the transfer's many messages arrive in order.
 *
 *   UPDATE:  header OPCODE 5 ‖ zone section: <zone> SOA IN ‖ no prerequisites
 *            ‖ update section: the records (RFC 2136 §2.5: class IN adds; class ANY with
 *              TTL 0 and no RDATA deletes an RRset; class NONE deletes one record) ‖ TSIG
 *   answer:  the same ID, QR set, RCODE NOERROR — or a refusal naming why.
 */
import net from 'node:net'
import { randomInt } from 'node:crypto'
import { BeckonError } from '../core/errors.js'
import { CLASS, OPCODE, TYPE, decodeMessage, emptyMessage, rcodeName, type Decoded, type Rr } from './codec.js'
import { TsigStream, signMessage, verifyResponse, type TsigKey } from './tsig.js'

export interface ZoneClientOptions {
  server: { host: string, port: number }
  zone: string
  key: TsigKey
  /** Per exchange (connect + answer); default 5 s. */
  timeoutMs?: number
  now?: () => number
}

/** What the publisher needs from a zone: read it, change it. A fake stands in for tests. */
export interface Zone {
  transfer (): Promise<Rr[]>
  update (records: Rr[]): Promise<void>
}

/**
 * Sends one framed query and hands each framed answer to `onMessage` until it returns
 * true. Reassembly keeps the chunks and copies once a whole message is present.
 */
export function tcpExchange (server: { host: string, port: number }, query: Buffer, onMessage: (msg: Buffer) => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server.host, port: server.port })
    let chunks: Buffer[] = []
    let have = 0
    let done = false
    const finish = (err?: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err === undefined) resolve(); else reject(err)
    }
    const timer = setTimeout(() => finish(new BeckonError('BECKON_ERR_DNS_UNAVAILABLE', `${server.host}:${server.port} did not answer within ${timeoutMs} ms`)), timeoutMs)
    sock.once('connect', () => {
      const len = Buffer.alloc(2); len.writeUInt16BE(query.length)
      sock.write(Buffer.concat([len, query]))
    })
    sock.on('data', (d: Buffer) => {
      chunks.push(d); have += d.length
      for (;;) {
        if (have < 2) return
        let head = chunks[0]!
        if (head.length < 2) { head = Buffer.concat(chunks); chunks = [head] }
        const need = 2 + head.readUInt16BE(0)
        if (have < need) return
        const all = chunks.length === 1 ? head : Buffer.concat(chunks)
        const msg = all.subarray(2, need)
        chunks = need < all.length ? [all.subarray(need)] : []
        have -= need
        let stop: boolean
        try { stop = onMessage(Buffer.from(msg)) } catch (err) { finish(err as Error); return }
        if (stop) { finish(); return }
      }
    })
    sock.once('error', (err) => finish(new BeckonError('BECKON_ERR_DNS_UNAVAILABLE', `${server.host}:${server.port}: ${err.message}`, { cause: err })))
    sock.once('close', () => finish(new BeckonError('BECKON_ERR_DNS_UNAVAILABLE', `${server.host}:${server.port} closed the connection before answering`)))
  })
}

export class ZoneClient implements Zone {
  private readonly timeoutMs: number
  private readonly now: () => number

  constructor (private readonly o: ZoneClientOptions) {
    this.timeoutMs = o.timeoutMs ?? 5_000
    this.now = o.now ?? Date.now
  }

  private seconds (): number { return this.now() / 1000 }

  private check (d: Decoded, id: number, what: string): void {
    if (!d.qr || d.id !== id) throw new BeckonError('BECKON_ERR_DNS_MALFORMED', `${what}: an answer with ID ${d.id} to query ${id}`)
    if (d.rcode !== 0) throw new BeckonError('BECKON_ERR_DNS_UPDATE_REFUSED', `${what} in ${this.o.zone}: ${rcodeName(d.rcode)}`)
  }

  /** Applies the records in the order given, in one message (atomic at the server). */
  async update (records: Rr[]): Promise<void> {
    if (records.length === 0) return
    const id = randomInt(0, 0x10000)
    const m = emptyMessage(id, OPCODE.UPDATE)
    m.questions.push({ name: this.o.zone, type: TYPE.SOA, class: CLASS.IN })
    m.authority = records
    const { bytes, mac } = signMessage(m, this.o.key, this.seconds())
    await tcpExchange(this.o.server, bytes, (ans) => {
      const d = decodeMessage(ans)
      // A refusal to verify our key comes unsigned with the TSIG error set; say so first.
      if (d.tsigStart !== undefined || d.rcode === 0) verifyResponse(ans, d, this.o.key, mac, this.seconds())
      this.check(d, id, 'UPDATE')
      return true
    }, this.timeoutMs)
  }

  /** The zone's records, SOA first and last as transferred (the closing SOA dropped). */
  async transfer (): Promise<Rr[]> {
    const id = randomInt(0, 0x10000)
    const m = emptyMessage(id, OPCODE.QUERY)
    m.questions.push({ name: this.o.zone, type: TYPE.AXFR, class: CLASS.IN })
    const { bytes, mac } = signMessage(m, this.o.key, this.seconds())
    const tsig = new TsigStream(this.o.key, mac)
    const records: Rr[] = []
    let soas = 0
    await tcpExchange(this.o.server, bytes, (ans) => {
      const d = decodeMessage(ans)
      if (d.rcode !== 0 && d.tsigStart === undefined) this.check(d, id, 'AXFR')
      for (const r of d.answers) {
        if (r.type === TYPE.SOA) soas++
        if (soas < 2) records.push(r)
      }
      const last = soas >= 2
      tsig.feed(ans, d, this.seconds(), last)
      this.check(d, id, 'AXFR')
      if (records.length === 0 || records[0]!.type !== TYPE.SOA) throw new BeckonError('BECKON_ERR_DNS_MALFORMED', 'AXFR: the transfer does not start with the SOA')
      return last
    }, this.timeoutMs)
    return records
  }
}
