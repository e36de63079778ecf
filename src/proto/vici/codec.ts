/**
 * VICI codec: packets and messages <-> bytes. Pure; no I/O.
 *
 * strongSwan's Versatile IKE Control Interface (src/libcharon/plugins/vici/README.md,
 * vici_message.h, vici_socket.h at tag 5.9.8). On the stream every packet is one
 * segment (see conn.ts); this module handles what is inside a segment:
 *
 *   packet  = u8 type ‖ [u8 name-len ‖ name]        (named types only)
 *                     ‖ [message]                   (CMD_REQUEST, CMD_RESPONSE, EVENT)
 *   message = element*                              (the root section is implicit:
 *                                                    it has no start and NO end element)
 *   element = 01 SECTION_START u8-len name
 *           | 02 SECTION_END
 *           | 03 KEY_VALUE     u8-len name ‖ u16be-len value
 *           | 04 LIST_START    u8-len name
 *           | 05 LIST_ITEM     u16be-len value
 *           | 06 LIST_END
 *
 * Values are raw bytes (certificates are DER), so decoded values stay `Buffer` and
 * sections are `Map`s: insertion order is preserved for every key, including
 * integer-like ones ("0", "1") that a plain object would reorder. Decoding is strict
 * and symmetric with encoding: whatever decodes re-encodes to the same bytes, and
 * everything else raises BECKON_ERR_VICI_MALFORMED with the offset.
 */
import { BeckonError } from '../../core/errors.js'

/** Packet types (vici_socket.h `vici_operation_t`). */
export enum PacketType {
  CMD_REQUEST = 0, // named, message
  CMD_RESPONSE = 1, // message
  CMD_UNKNOWN = 2, // -
  EVENT_REGISTER = 3, // named
  EVENT_UNREGISTER = 4, // named
  EVENT_CONFIRM = 5, // -
  EVENT_UNKNOWN = 6, // -
  EVENT = 7, // named, message
}

/** Message element types (vici_message.h `vici_type_t`; 0 and 7 are internal only). */
export enum ElementType {
  SECTION_START = 1, // u8 len ‖ name
  SECTION_END = 2, // -
  KEY_VALUE = 3, // u8 len ‖ name ‖ u16be len ‖ value
  LIST_START = 4, // u8 len ‖ name
  LIST_ITEM = 5, // u16be len ‖ value
  LIST_END = 6, // -
}

/** vici_socket.h VICI_MESSAGE_SIZE_MAX: charon closes a connection that sends more. */
export const MAX_SEGMENT = 512 * 1024
export const MAX_NAME = 255
export const MAX_VALUE = 65535
/**
 * Deepest section nesting decoded or encoded. charon's own messages nest ≤ 5 deep
 * (list-sas: root ▸ ike ▸ child-sas ▸ child); a 512 KiB segment could otherwise nest
 * ~170,000 deep and overflow every recursive reader (toPlain, re-encoding).
 */
export const MAX_DEPTH = 64

/** A decoded message section: ordered, values kept binary. */
export type ViciSection = Map<string, ViciItem>
export type ViciItem = Buffer | Buffer[] | ViciSection

/** What callers may hand to the encoder: plain objects are fine, order is theirs. */
export type ViciScalar = string | number | bigint | boolean | Buffer
export type ViciInputValue = ViciScalar | ViciScalar[] | ViciInput | null | undefined
export type ViciInput = { readonly [key: string]: ViciInputValue } | ReadonlyMap<string, ViciInputValue>

/** A packet; decoded ones carry ViciSection messages, outgoing ones any ViciInput. */
export type Packet<M extends ViciInput = ViciSection> =
  | { type: PacketType.CMD_REQUEST, name: string, message: M }
  | { type: PacketType.CMD_RESPONSE, message: M }
  | { type: PacketType.CMD_UNKNOWN }
  | { type: PacketType.EVENT_REGISTER, name: string }
  | { type: PacketType.EVENT_UNREGISTER, name: string }
  | { type: PacketType.EVENT_CONFIRM }
  | { type: PacketType.EVENT_UNKNOWN }
  | { type: PacketType.EVENT, name: string, message: M }

const NAMED = new Set([PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT])
const WITH_MESSAGE = new Set([PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT])

function invalid (detail: string): BeckonError {
  return new BeckonError('BECKON_ERR_VICI_INVALID', detail)
}

function malformed (offset: number, detail: string): BeckonError {
  return new BeckonError('BECKON_ERR_VICI_MALFORMED', `${detail} at offset ${offset}`)
}

/** charon accepts only printable ASCII names (vici_stringify → chunk_printable). */
function isPrintable (s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) return false
  }
  return true
}

function checkName (name: string, what: string): void {
  if (name.length > MAX_NAME) {
    throw new BeckonError('BECKON_ERR_VICI_LIMIT', `${what} name longer than ${MAX_NAME} bytes (${name.length})`)
  }
  if (!isPrintable(name)) throw invalid(`${what} name ${JSON.stringify(name)} is not printable ASCII`)
}

function scalarToBuffer (v: ViciScalar, key: string): Buffer {
  let b: Buffer
  if (Buffer.isBuffer(v)) b = v
  else if (typeof v === 'string') b = Buffer.from(v, 'utf8')
  else if (typeof v === 'boolean') b = Buffer.from(v ? 'yes' : 'no', 'latin1')
  else if (typeof v === 'number' || typeof v === 'bigint') {
    if (typeof v === 'number' && !Number.isFinite(v)) throw invalid(`value of ${key} is not a finite number`)
    b = Buffer.from(String(v), 'latin1')
  } else throw invalid(`value of ${key} has unsupported type ${typeof v}`)
  if (b.length > MAX_VALUE) {
    throw new BeckonError('BECKON_ERR_VICI_LIMIT', `value of ${key} longer than ${MAX_VALUE} bytes (${b.length})`)
  }
  return b
}

function entriesOf (input: ViciInput): Iterable<[string, ViciInputValue]> {
  return input instanceof Map ? input.entries() : Object.entries(input)
}

function isSectionInput (v: ViciInputValue): v is ViciInput {
  return v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !Array.isArray(v)
}

/**
 * Normalizes caller input into a ViciSection (Buffers, ordered Maps), validating
 * names, value sizes and list shapes. `null`/`undefined` values drop the key, which
 * keeps optional fields out of requests.
 */
export function toSection (input: ViciInput, path = '', depth = 0): ViciSection {
  if (depth > MAX_DEPTH) throw new BeckonError('BECKON_ERR_VICI_LIMIT', `${path}: sections nested deeper than ${MAX_DEPTH}`)
  const out: ViciSection = new Map()
  for (const [key, value] of entriesOf(input)) {
    if (value === undefined || value === null) continue
    const where = path === '' ? key : `${path}.${key}`
    checkName(key, 'key')
    if (Array.isArray(value)) {
      out.set(key, value.map((item) => {
        if (item !== null && typeof item === 'object' && !Buffer.isBuffer(item)) {
          throw invalid(`list ${where} holds a section or list; VICI lists hold values only`)
        }
        return scalarToBuffer(item, where)
      }))
    } else if (isSectionInput(value)) {
      out.set(key, toSection(value, where, depth + 1))
    } else {
      out.set(key, scalarToBuffer(value, where))
    }
  }
  return out
}

function messageSize (section: ViciSection): number {
  let n = 0
  for (const [key, value] of section) {
    const klen = Buffer.byteLength(key, 'latin1')
    if (Buffer.isBuffer(value)) n += 1 + 1 + klen + 2 + value.length
    else if (Array.isArray(value)) {
      n += 1 + 1 + klen + 1 // LIST_START name … LIST_END
      for (const item of value) n += 1 + 2 + item.length
    } else n += 1 + 1 + klen + messageSize(value) + 1 // SECTION_START name … SECTION_END
  }
  return n
}

function writeName (buf: Buffer, off: number, name: string): number {
  buf[off] = name.length
  return off + 1 + buf.write(name, off + 1, 'latin1')
}

function writeValue (buf: Buffer, off: number, value: Buffer): number {
  buf.writeUInt16BE(value.length, off)
  return off + 2 + value.copy(buf, off + 2)
}

function writeMessage (buf: Buffer, off: number, section: ViciSection): number {
  // Names, sizes and shapes were validated by toSection.
  for (const [key, value] of section) {
    if (Buffer.isBuffer(value)) {
      buf[off++] = ElementType.KEY_VALUE
      off = writeValue(buf, writeName(buf, off, key), value)
    } else if (Array.isArray(value)) {
      buf[off++] = ElementType.LIST_START
      off = writeName(buf, off, key)
      for (const item of value) {
        buf[off++] = ElementType.LIST_ITEM
        off = writeValue(buf, off, item)
      }
      buf[off++] = ElementType.LIST_END
    } else {
      buf[off++] = ElementType.SECTION_START
      off = writeMessage(buf, writeName(buf, off, key), value)
      buf[off++] = ElementType.SECTION_END
    }
  }
  return off
}

/** Encodes a message body (no root section end: charon rejects one). */
export function encodeMessage (input: ViciInput): Buffer {
  const section = toSection(input)
  const buf = Buffer.allocUnsafe(messageSize(section))
  const end = writeMessage(buf, 0, section)
  return end === buf.length ? buf : buf.subarray(0, end)
}

/** Encodes one packet (segment data, without the 4-byte length header). */
export function encodePacket (p: Packet<ViciInput>): Buffer {
  const named = NAMED.has(p.type)
  const name = named ? (p as { name: string }).name : ''
  if (named) checkName(name, 'packet')
  const body = WITH_MESSAGE.has(p.type) ? encodeMessage((p as { message: ViciInput }).message) : undefined
  const size = 1 + (named ? 1 + name.length : 0) + (body?.length ?? 0)
  if (size > MAX_SEGMENT) {
    throw new BeckonError('BECKON_ERR_VICI_LIMIT', `packet of ${size} bytes exceeds the ${MAX_SEGMENT}-byte segment limit`)
  }
  const buf = Buffer.allocUnsafe(size)
  buf[0] = p.type
  let off = 1
  if (named) off = writeName(buf, off, name)
  if (body !== undefined) body.copy(buf, off)
  return buf
}

/** Cursor over untrusted bytes; every read is bounds-checked. */
class Reader {
  off = 0
  constructor (readonly buf: Buffer) {}

  get left (): number { return this.buf.length - this.off }

  u8 (what: string): number {
    if (this.left < 1) throw malformed(this.off, `truncated ${what}`)
    return this.buf[this.off++]!
  }

  name (what: string): string {
    const at = this.off
    const len = this.u8(`${what} name length`)
    if (this.left < len) throw malformed(at, `truncated ${what} name (${len} bytes announced, ${this.left} left)`)
    const s = this.buf.toString('latin1', this.off, this.off + len)
    if (!isPrintable(s)) throw malformed(at, `${what} name is not printable ASCII`)
    this.off += len
    return s
  }

  value (what: string): Buffer {
    const at = this.off
    if (this.left < 2) throw malformed(at, `truncated ${what} value length`)
    const len = this.buf.readUInt16BE(this.off)
    this.off += 2
    if (this.left < len) throw malformed(at, `truncated ${what} value (${len} bytes announced, ${this.left} left)`)
    // A copy, so that decoded messages never pin the (larger) receive buffer.
    const v = Buffer.from(this.buf.subarray(this.off, this.off + len))
    this.off += len
    return v
  }
}

function put (section: ViciSection, key: string, value: ViciItem, at: number): void {
  if (section.has(key)) throw malformed(at, `duplicate key ${JSON.stringify(key)}`)
  section.set(key, value)
}

/** Decodes a message body into its root section. */
export function decodeMessage (buf: Buffer): ViciSection {
  const r = new Reader(buf)
  const root: ViciSection = new Map()
  const stack: ViciSection[] = [root]
  let list: Buffer[] | undefined
  while (r.left > 0) {
    const at = r.off
    const type = r.u8('element type')
    const top = stack[stack.length - 1]!
    if (list !== undefined && type !== ElementType.LIST_ITEM && type !== ElementType.LIST_END) {
      throw malformed(at, `element type ${type} inside a list`)
    }
    switch (type) {
      case ElementType.SECTION_START: {
        const s: ViciSection = new Map()
        put(top, r.name('section'), s, at)
        if (stack.length > MAX_DEPTH) throw malformed(at, `sections nested deeper than ${MAX_DEPTH}`)
        stack.push(s)
        break
      }
      case ElementType.SECTION_END:
        if (stack.length === 1) throw malformed(at, 'section end outside of a section')
        stack.pop()
        break
      case ElementType.KEY_VALUE: {
        const key = r.name('key')
        put(top, key, r.value(key), at)
        break
      }
      case ElementType.LIST_START:
        list = []
        put(top, r.name('list'), list, at)
        break
      case ElementType.LIST_ITEM:
        if (list === undefined) throw malformed(at, 'list item outside of a list')
        list.push(r.value('list item'))
        break
      case ElementType.LIST_END:
        if (list === undefined) throw malformed(at, 'list end outside of a list')
        list = undefined
        break
      default:
        throw malformed(at, `unknown element type ${type}`)
    }
  }
  if (list !== undefined) throw malformed(r.off, 'unterminated list')
  if (stack.length > 1) throw malformed(r.off, `${stack.length - 1} unterminated section(s)`)
  return root
}

/** Decodes one packet (segment data, without the length header). */
export function decodePacket (buf: Buffer): Packet {
  if (buf.length > MAX_SEGMENT) {
    throw new BeckonError('BECKON_ERR_VICI_LIMIT', `packet of ${buf.length} bytes exceeds the ${MAX_SEGMENT}-byte segment limit`)
  }
  const r = new Reader(buf)
  const type = r.u8('packet type')
  if (type > PacketType.EVENT) throw malformed(0, `unknown packet type ${type}`)
  const name = NAMED.has(type) ? r.name('packet') : undefined
  const rest = buf.subarray(r.off)
  if (!WITH_MESSAGE.has(type) && rest.length > 0) {
    throw malformed(r.off, `${PacketType[type]} packet carries ${rest.length} unexpected bytes`)
  }
  switch (type) {
    case PacketType.CMD_REQUEST: return { type, name: name!, message: decodeMessage(rest) }
    case PacketType.CMD_RESPONSE: return { type, message: decodeMessage(rest) }
    case PacketType.EVENT: return { type, name: name!, message: decodeMessage(rest) }
    case PacketType.EVENT_REGISTER:
    case PacketType.EVENT_UNREGISTER: return { type, name: name! }
    default: return { type: type as PacketType.CMD_UNKNOWN | PacketType.EVENT_CONFIRM | PacketType.EVENT_UNKNOWN }
  }
}

// ---- reading decoded sections -------------------------------------------------

/** The value at `key` as a UTF-8 string, or undefined when absent or not a value. */
export function str (section: ViciSection | undefined, key: string): string | undefined {
  const v = section?.get(key)
  return Buffer.isBuffer(v) ? v.toString('utf8') : undefined
}

/** The value at `key` as a number, or undefined when absent or not numeric. */
export function num (section: ViciSection | undefined, key: string): number | undefined {
  const s = str(section, key)
  if (s === undefined || s === '') return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}

/** strongSwan booleans; absent flags mean false (charon omits false flags). */
export function bool (section: ViciSection | undefined, key: string): boolean {
  const s = str(section, key)
  return s === 'yes' || s === 'true' || s === 'enabled' || s === '1'
}

export function list (section: ViciSection | undefined, key: string): string[] {
  const v = section?.get(key)
  return Array.isArray(v) ? v.map((b) => b.toString('utf8')) : []
}

export function sub (section: ViciSection | undefined, key: string): ViciSection | undefined {
  const v = section?.get(key)
  return v instanceof Map ? v : undefined
}

/** Subsections in order (e.g. the per-SA entries of a list-sa event). */
export function sections (section: ViciSection | undefined): Array<[string, ViciSection]> {
  const out: Array<[string, ViciSection]> = []
  if (section === undefined) return out
  for (const [k, v] of section) if (v instanceof Map) out.push([k, v])
  return out
}

/** A value printable as text: UTF-8 without control characters (tab/newline allowed). */
function isText (b: Buffer): boolean {
  const s = b.toString('utf8')
  if (!Buffer.from(s, 'utf8').equals(b)) return false
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s)
}

/**
 * Renders a section as JSON-ready data for people and scripts. Binary values
 * (e.g. DER certificates) become `{ "base64": "…" }`. Plain objects may reorder
 * integer-like keys; use `sectionToJson` where exact order matters.
 */
export function toPlain (section: ViciSection): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of section) out[k] = plainItem(v)
  return out
}

function plainItem (v: ViciItem): unknown {
  if (Buffer.isBuffer(v)) return isText(v) ? v.toString('utf8') : { base64: v.toString('base64') }
  if (Array.isArray(v)) return v.map(plainItem)
  return toPlain(v)
}

/** JSON text of a section with its exact key order (integer-like keys included). */
export function sectionToJson (section: ViciSection, indent = 0): string {
  const nl = indent > 0 ? '\n' : ''
  const render = (item: ViciItem, depth: number): string => {
    if (!(item instanceof Map)) return JSON.stringify(plainItem(item))
    if (item.size === 0) return '{}'
    const pad = ' '.repeat(indent * (depth + 1))
    const parts = [...item].map(([k, v]) => `${pad}${JSON.stringify(k)}:${indent > 0 ? ' ' : ''}${render(v, depth + 1)}`)
    return `{${nl}${parts.join(`,${nl}`)}${nl}${' '.repeat(indent * depth)}}`
  }
  return render(section, 0)
}
