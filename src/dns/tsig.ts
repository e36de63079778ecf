/**
 * TSIG (RFC 8945): a shared-secret MAC over a DNS message, carried as the last additional
 * record. Only HMAC-SHA256 (RFC 8945 §6: mandatory to implement, and what `tsig-keygen`
 * makes by default).
 *
 *   TSIG RR:  NAME = key name   TYPE 250   CLASS ANY   TTL 0
 *   RDATA:    Algorithm Name (hmac-sha256.)  Time Signed u48  Fudge u16
 *             MAC Size u16  MAC  Original ID u16  Error u16  Other Len u16  Other Data
 *
 *   MAC input (§4.3.3):  [request MAC size u16 ‖ request MAC]      (responses only)
 *                        ‖ the message without its TSIG RR (ARCOUNT one less, ID = Original ID)
 *                        ‖ TSIG variables: key name (canonical) ‖ CLASS u16 ‖ TTL u32
 *                          ‖ algorithm (canonical) ‖ Time Signed u48 ‖ Fudge u16 ‖ Error u16
 *                          ‖ Other Len u16 ‖ Other Data
 *   Later messages of a zone transfer (§5.3.1): prior MAC size ‖ prior MAC ‖ the
 *   messages since (unsigned ones included) ‖ Time Signed u48 ‖ Fudge u16.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { BeckonError } from '../core/errors.js'
import { CLASS, TYPE, encodeMessage, encodeName, rcodeName, sameName, u48, type Decoded, type Message, type RData } from './codec.js'

export const HMAC_SHA256 = 'hmac-sha256'

export interface TsigKey {
  name: string
  algorithm: typeof HMAC_SHA256
  secret: Buffer
}

/** Seconds either side of our clock a signed answer may carry (RFC 8945 §10 recommends 300). */
export const FUDGE = 300

type TsigData = Extract<RData, { type: 'TSIG' }>

function u16 (n: number): Buffer { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }

function variables (key: TsigKey, t: TsigData): Buffer {
  return Buffer.concat([
    encodeName(key.name, true), u16(CLASS.ANY), Buffer.alloc(4),
    encodeName(t.algorithm, true), u48(t.timeSigned), u16(t.fudge), u16(t.error), u16(t.other.length), t.other,
  ])
}

function hmac (key: TsigKey, parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key.secret)
  for (const p of parts) h.update(p)
  return h.digest()
}

const prior = (mac: Buffer | undefined): Buffer[] => mac === undefined ? [] : [u16(mac.length), mac]

/**
 * Signs `m` (which must not carry a TSIG yet); returns the wire bytes and the MAC, which
 * the answer's MAC covers. `requestMac` signs a response.
 */
export function signMessage (m: Message, key: TsigKey, nowSeconds: number, requestMac?: Buffer): { bytes: Buffer, mac: Buffer } {
  const unsigned = encodeMessage(m)
  const t: TsigData = { type: 'TSIG', algorithm: key.algorithm, timeSigned: Math.floor(nowSeconds), fudge: FUDGE, mac: Buffer.alloc(0), originalId: m.id, error: 0, other: Buffer.alloc(0) }
  const mac = hmac(key, [...prior(requestMac), unsigned, variables(key, t)])
  const bytes = encodeMessage({ ...m, additional: [...m.additional, { name: key.name, type: TYPE.TSIG, class: CLASS.ANY, ttl: 0, data: { ...t, mac } }] })
  return { bytes, mac }
}

function tsigError (detail: string): BeckonError { return new BeckonError('BECKON_ERR_DNS_TSIG', detail) }

/** The message's own bytes without its TSIG RR, ARCOUNT less one and the original ID. */
function stripped (bytes: Buffer, d: Decoded, t: TsigData): Buffer {
  const b = Buffer.from(bytes.subarray(0, d.tsigStart))
  b.writeUInt16BE(t.originalId, 0)
  b.writeUInt16BE(b.readUInt16BE(10) - 1, 10)
  return b
}

function tsigOf (d: Decoded, key: TsigKey): TsigData {
  const rr = d.additional[d.additional.length - 1]
  if (d.tsigStart === undefined || rr === undefined || rr.data === null || rr.data.type !== 'TSIG') throw tsigError(`the answer (rcode ${rcodeName(d.rcode)}) is not signed`)
  const t = rr.data
  if (!sameName(rr.name, key.name)) throw tsigError(`signed with key ${rr.name}, not ${key.name}`)
  if (!sameName(t.algorithm, key.algorithm)) throw tsigError(`algorithm ${t.algorithm}, not ${key.algorithm}`)
  // The server could not check our MAC: it answers unsigned errors (§5.3.2).
  if (t.error !== 0) throw tsigError(`the server answered ${rcodeName(t.error)} (key name, secret or clock differ)`)
  return t
}

function checkTime (t: TsigData, nowSeconds: number): void {
  if (Math.abs(Math.floor(nowSeconds) - t.timeSigned) > t.fudge) throw tsigError(`signed at ${t.timeSigned}, outside ${t.fudge} s of our clock (${Math.floor(nowSeconds)})`)
}

function checkMac (got: Buffer, want: Buffer): void {
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw tsigError('MAC does not match')
}

/** Verifies a response to a request signed with `requestMac`; returns the response's MAC. */
export function verifyResponse (bytes: Buffer, d: Decoded, key: TsigKey, requestMac: Buffer, nowSeconds: number): Buffer {
  const t = tsigOf(d, key)
  checkMac(t.mac, hmac(key, [...prior(requestMac), stripped(bytes, d, t), variables(key, t)]))
  checkTime(t, nowSeconds)
  return t.mac
}

/**
 * Verifies the messages of a multi-message answer (AXFR) in order: feed each message;
 * unsigned ones are accumulated into the next signed one's MAC (at most 99 in a row).
 */
export class TsigStream {
  private mac: Buffer
  private pending: Buffer[] = []
  private first = true

  constructor (private readonly key: TsigKey, requestMac: Buffer) { this.mac = requestMac }

  /** `last`: the transfer ends with this message, which must then be signed. */
  feed (bytes: Buffer, d: Decoded, nowSeconds: number, last: boolean): void {
    if (this.first) {
      this.mac = verifyResponse(bytes, d, this.key, this.mac, nowSeconds)
      this.first = false
      return
    }
    if (d.tsigStart === undefined) {
      if (last) throw tsigError('the last message of the transfer is not signed')
      this.pending.push(bytes)
      if (this.pending.length > 99) throw tsigError('more than 99 unsigned messages in a row')
      return
    }
    const t = tsigOf(d, this.key)
    const timers = Buffer.concat([u48(t.timeSigned), u16(t.fudge)])
    checkMac(t.mac, hmac(this.key, [...prior(this.mac), ...this.pending, stripped(bytes, d, t), timers]))
    checkTime(t, nowSeconds)
    this.mac = t.mac
    this.pending = []
  }
}

/** A base64 secret as `tsig-keygen` prints it. */
export function tsigSecret (base64: string, where: string): Buffer {
  const s = base64.trim()
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s) || s.length % 4 !== 0) throw new BeckonError('BECKON_ERR_CONFIG', `${where} must be base64 (as tsig-keygen prints it)`)
  const b = Buffer.from(s, 'base64')
  if (b.length < 16) throw new BeckonError('BECKON_ERR_CONFIG', `${where} is ${b.length} bytes; use at least 16 (tsig-keygen makes 32)`)
  return b
}
