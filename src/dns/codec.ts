/**
 * The DNS message format (RFC 1035 §4), as much of it as publishing a device zone needs:
 * the header, questions, and resource records of the types an RFC 2136 UPDATE and a zone
 * transfer carry (A, AAAA, SRV RFC 2782, TXT, SOA, NS/CNAME/PTR, TSIG RFC 8945); every
 * other type is kept as raw RDATA.
 *
 *   header (12 bytes)
 *     0  ID        u16
 *     2  flags     u16  QR(1) OPCODE(4) AA(1) TC(1) RD(1) RA(1) Z(3) RCODE(4)
 *     4  QDCOUNT   u16  (UPDATE: ZOCOUNT, the zone)
 *     6  ANCOUNT   u16  (UPDATE: PRCOUNT, prerequisites)
 *     8  NSCOUNT   u16  (UPDATE: UPCOUNT, the updates)
 *    10  ARCOUNT   u16  additional (TSIG goes last here)
 *   question: NAME  TYPE u16  CLASS u16
 *   record:   NAME  TYPE u16  CLASS u16  TTL u32  RDLENGTH u16  RDATA
 *   name:     labels, each a length octet (1..63) and that many octets, ending in 0;
 *             or a pointer: two octets 11xxxxxx xxxxxxxx, an offset into the message.
 *
 * Names are written uncompressed (RFC 8945 wants the TSIG names canonical anyway) and
 * read with pointers followed only backwards, at most 127 times, within 255 octets.
 * Names are text in master-file form: labels joined by '.', no trailing dot, a '.' or
 * '\' or a non-printable octet inside a label escaped as \DDD. RDLENGTH 0 decodes to
 * `data: null` (RFC 2136 "delete an RRset": class ANY, TTL 0, no RDATA).
 * Every malformed input raises BECKON_ERR_DNS_MALFORMED naming the offset.
 */
import { BeckonError } from '../core/errors.js'
import { ipBytes, ipString } from '../core/ip.js'

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, TSIG: 250, AXFR: 252, ANY: 255 } as const
export const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const
export const OPCODE = { QUERY: 0, UPDATE: 5 } as const
export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 6: 'YXDOMAIN', 7: 'YXRRSET',
  8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE', 16: 'BADSIG', 17: 'BADKEY', 18: 'BADTIME',
}
export const rcodeName = (r: number): string => RCODE_NAMES[r] ?? `RCODE${r}`

export type RData =
  | { type: 'A', address: string }
  | { type: 'AAAA', address: string }
  | { type: 'SRV', priority: number, weight: number, port: number, target: string }
  | { type: 'TXT', strings: Buffer[] }
  | { type: 'SOA', mname: string, rname: string, serial: number, refresh: number, retry: number, expire: number, minimum: number }
  | { type: 'NS' | 'CNAME' | 'PTR', target: string }
  | { type: 'TSIG', algorithm: string, timeSigned: number, fudge: number, mac: Buffer, originalId: number, error: number, other: Buffer }
  | { type: 'RAW', bytes: Buffer }

export interface Question { name: string, type: number, class: number }
export interface Rr { name: string, type: number, class: number, ttl: number, data: RData | null }

export interface Message {
  id: number
  qr: boolean
  opcode: number
  aa: boolean
  tc: boolean
  rd: boolean
  ra: boolean
  /** The three bits between RA and RCODE (Z, AD, CD), kept so a message re-encodes as it came. */
  z: number
  rcode: number
  questions: Question[]
  answers: Rr[]
  authority: Rr[]
  additional: Rr[]
}

export interface Decoded extends Message {
  /** Offset of the last additional record when it is a TSIG RR (RFC 8945 §5.2: it must be last). */
  tsigStart?: number
}

/** Which RData kind a TYPE value carries. */
const KIND: Record<number, RData['type']> = { 1: 'A', 28: 'AAAA', 33: 'SRV', 16: 'TXT', 6: 'SOA', 2: 'NS', 5: 'CNAME', 12: 'PTR', 250: 'TSIG' }

export const MAX_MESSAGE = 65_535
const MAX_NAME = 255
const MAX_POINTERS = 127

function malformed (off: number, what: string): never {
  throw new BeckonError('BECKON_ERR_DNS_MALFORMED', `at offset ${off}: ${what}`)
}

function invalid (what: string): never {
  throw new BeckonError('BECKON_ERR_DNS_MALFORMED', `cannot encode: ${what}`)
}

// ---- names ---------------------------------------------------------------------------

/** Master-file text → label octets (escapes \. \\ \DDD honoured). */
export function nameLabels (name: string): Buffer[] {
  const s = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name
  if (s === '') return []
  const labels: Buffer[] = []
  let cur: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x2e) { labels.push(Buffer.from(cur)); cur = []; continue }
    if (c === 0x5c) {
      const d = /^\d{3}/.exec(s.slice(i + 1))
      if (d !== null) {
        const v = Number(d[0])
        if (v > 255) invalid(`escape \\${d[0]} in ${JSON.stringify(name)}`)
        cur.push(v); i += 3; continue
      }
      if (i + 1 >= s.length) invalid(`trailing backslash in ${JSON.stringify(name)}`)
      cur.push(s.charCodeAt(++i)); continue
    }
    if (c > 0x7e || c < 0x21) invalid(`octet ${c} in ${JSON.stringify(name)} (escape it as \\DDD)`)
    cur.push(c)
  }
  labels.push(Buffer.from(cur))
  let wire = 1
  for (const l of labels) {
    if (l.length === 0) invalid(`empty label in ${JSON.stringify(name)}`)
    if (l.length > 63) invalid(`label longer than 63 octets in ${JSON.stringify(name)}`)
    wire += 1 + l.length
  }
  if (wire > MAX_NAME) invalid(`name longer than ${MAX_NAME} octets`)
  return labels
}

function labelText (b: Buffer): string {
  let s = ''
  for (const c of b) {
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c)
    else if (c < 0x21 || c > 0x7e) s += '\\' + String(c).padStart(3, '0')
    else s += String.fromCharCode(c)
  }
  return s
}

/** Uncompressed wire form of a name (canonical when `lower`: RFC 4034 §6.2, for TSIG). */
export function encodeName (name: string, lower = false): Buffer {
  const parts: Buffer[] = []
  for (const l of nameLabels(name)) {
    const label = lower ? Buffer.from(l.toString('latin1').toLowerCase(), 'latin1') : l
    parts.push(Buffer.from([label.length]), label)
  }
  parts.push(Buffer.from([0]))
  return Buffer.concat(parts)
}

/** Reads a name at `off`; returns it and the offset after it in place (not after a pointer's target). */
function readName (buf: Buffer, off: number): { name: string, end: number } {
  const labels: string[] = []
  let pos = off
  let end = -1
  let jumps = 0
  let wire = 1
  for (;;) {
    if (pos >= buf.length) malformed(pos, 'name runs past the end')
    const len = buf[pos]!
    if (len === 0) { if (end < 0) end = pos + 1; break }
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) malformed(pos, 'truncated name pointer')
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!
      // Only backwards: a pointer to itself or forward could loop.
      if (target >= pos) malformed(pos, `name pointer to ${target} does not point backwards`)
      if (++jumps > MAX_POINTERS) malformed(pos, 'too many name pointers')
      if (end < 0) end = pos + 2
      pos = target
      continue
    }
    if (kind !== 0) malformed(pos, `label type 0x${kind.toString(16)}`)
    if (pos + 1 + len > buf.length) malformed(pos, 'label runs past the end')
    wire += 1 + len
    if (wire > MAX_NAME) malformed(off, `name longer than ${MAX_NAME} octets`)
    labels.push(labelText(buf.subarray(pos + 1, pos + 1 + len)))
    pos += 1 + len
  }
  return { name: labels.join('.'), end }
}

// ---- records -------------------------------------------------------------------------

function u16 (n: number, what: string): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) invalid(`${what} ${n} is not a 16-bit value`)
  const b = Buffer.alloc(2); b.writeUInt16BE(n); return b
}
function u32 (n: number, what: string): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) invalid(`${what} ${n} is not a 32-bit value`)
  const b = Buffer.alloc(4); b.writeUInt32BE(n); return b
}
export function u48 (n: number, what = 'time'): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffffffff) invalid(`${what} ${n} is not a 48-bit value`)
  const b = Buffer.alloc(6); b.writeUIntBE(n, 0, 6); return b
}

function encodeRdata (d: RData): Buffer {
  switch (d.type) {
    case 'A':
    case 'AAAA': {
      const b = ipBytes(d.address)
      if (b === undefined || b.length !== (d.type === 'A' ? 4 : 16)) invalid(`${d.address} is not an ${d.type === 'A' ? 'IPv4' : 'IPv6'} address`)
      return b
    }
    case 'SRV': return Buffer.concat([u16(d.priority, 'SRV priority'), u16(d.weight, 'SRV weight'), u16(d.port, 'SRV port'), encodeName(d.target)])
    case 'TXT': {
      if (d.strings.length === 0) invalid('TXT needs at least one string')
      return Buffer.concat(d.strings.flatMap((s) => {
        if (s.length > 255) invalid('TXT string longer than 255 octets')
        return [Buffer.from([s.length]), s]
      }))
    }
    case 'SOA': return Buffer.concat([encodeName(d.mname), encodeName(d.rname), u32(d.serial, 'serial'), u32(d.refresh, 'refresh'), u32(d.retry, 'retry'), u32(d.expire, 'expire'), u32(d.minimum, 'minimum')])
    case 'NS': case 'CNAME': case 'PTR': return encodeName(d.target)
    case 'TSIG': return Buffer.concat([encodeName(d.algorithm, true), u48(d.timeSigned), u16(d.fudge, 'fudge'), u16(d.mac.length, 'MAC size'), d.mac, u16(d.originalId, 'original ID'), u16(d.error, 'TSIG error'), u16(d.other.length, 'other length'), d.other])
    case 'RAW': return d.bytes
  }
}

function decodeRdata (buf: Buffer, type: number, off: number, len: number): RData {
  const end = off + len
  const kind = KIND[type]
  const need = (n: number, at: number): void => { if (at + n > end) malformed(at, `${kind ?? type} RDATA shorter than its fields`) }
  const name = (at: number): { name: string, end: number } => {
    const r = readName(buf, at)
    if (r.end > end) malformed(at, 'name runs past its RDATA')
    return r
  }
  let d: RData
  let used: number
  switch (kind) {
    case 'A': case 'AAAA': {
      const n = kind === 'A' ? 4 : 16
      if (len !== n) malformed(off, `${kind} RDATA is ${len} octets, not ${n}`)
      d = { type: kind, address: ipString(Buffer.from(buf.subarray(off, end))) }
      used = end
      break
    }
    case 'SRV': {
      need(6, off)
      const t = name(off + 6)
      d = { type: 'SRV', priority: buf.readUInt16BE(off), weight: buf.readUInt16BE(off + 2), port: buf.readUInt16BE(off + 4), target: t.name }
      used = t.end
      break
    }
    case 'TXT': {
      const strings: Buffer[] = []
      let p = off
      while (p < end) {
        const n = buf[p]!
        need(1 + n, p)
        strings.push(Buffer.from(buf.subarray(p + 1, p + 1 + n)))
        p += 1 + n
      }
      d = { type: 'TXT', strings }
      used = p
      break
    }
    case 'SOA': {
      const m = name(off)
      const r = name(m.end)
      need(20, r.end)
      const at = (i: number): number => buf.readUInt32BE(r.end + 4 * i)
      d = { type: 'SOA', mname: m.name, rname: r.name, serial: at(0), refresh: at(1), retry: at(2), expire: at(3), minimum: at(4) }
      used = r.end + 20
      break
    }
    case 'NS': case 'CNAME': case 'PTR': {
      const t = name(off)
      d = { type: kind, target: t.name }
      used = t.end
      break
    }
    case 'TSIG': {
      const a = name(off)
      let p = a.end
      need(10, p)
      const timeSigned = buf.readUIntBE(p, 6)
      const fudge = buf.readUInt16BE(p + 6)
      const macSize = buf.readUInt16BE(p + 8)
      p += 10
      need(macSize + 6, p)
      const mac = Buffer.from(buf.subarray(p, p + macSize))
      p += macSize
      const originalId = buf.readUInt16BE(p)
      const error = buf.readUInt16BE(p + 2)
      const otherLen = buf.readUInt16BE(p + 4)
      p += 6
      need(otherLen, p)
      d = { type: 'TSIG', algorithm: a.name, timeSigned, fudge, mac, originalId, error, other: Buffer.from(buf.subarray(p, p + otherLen)) }
      used = p + otherLen
      break
    }
    default:
      d = { type: 'RAW', bytes: Buffer.from(buf.subarray(off, end)) }
      used = end
  }
  if (used !== end) malformed(used, `${kind ?? type} RDATA has ${end - used} octets left over`)
  return d
}

function encodeRr (r: Rr): Buffer {
  let rdata: Buffer = Buffer.alloc(0)
  if (r.data !== null) {
    const kind = KIND[r.type]
    if (r.data.type !== 'RAW' && r.data.type !== kind) invalid(`${r.data.type} data in a record of type ${r.type}`)
    if (r.data.type === 'RAW' && kind !== undefined) invalid(`raw data in a record of type ${kind}`)
    rdata = encodeRdata(r.data)
  }
  return Buffer.concat([encodeName(r.name), u16(r.type, 'type'), u16(r.class, 'class'), u32(r.ttl, 'TTL'), u16(rdata.length, 'RDLENGTH'), rdata])
}

// ---- messages ------------------------------------------------------------------------

export function encodeMessage (m: Message): Buffer {
  const flags = (m.qr ? 0x8000 : 0) | ((m.opcode & 0xf) << 11) | (m.aa ? 0x400 : 0) | (m.tc ? 0x200 : 0) | (m.rd ? 0x100 : 0) | (m.ra ? 0x80 : 0) | ((m.z & 0x7) << 4) | (m.rcode & 0xf)
  if (m.opcode < 0 || m.opcode > 15 || m.rcode < 0 || m.rcode > 15 || m.z < 0 || m.z > 7) invalid('opcode, z or rcode out of range')
  const parts = [
    u16(m.id, 'ID'), u16(flags, 'flags'),
    u16(m.questions.length, 'QDCOUNT'), u16(m.answers.length, 'ANCOUNT'), u16(m.authority.length, 'NSCOUNT'), u16(m.additional.length, 'ARCOUNT'),
    ...m.questions.map((q) => Buffer.concat([encodeName(q.name), u16(q.type, 'type'), u16(q.class, 'class')])),
    ...m.answers.map(encodeRr), ...m.authority.map(encodeRr), ...m.additional.map(encodeRr),
  ]
  const out = Buffer.concat(parts)
  if (out.length > MAX_MESSAGE) invalid(`message of ${out.length} octets exceeds ${MAX_MESSAGE}`)
  return out
}

export function decodeMessage (buf: Buffer): Decoded {
  if (buf.length < 12) malformed(buf.length, `message shorter than its 12-octet header (${buf.length})`)
  if (buf.length > MAX_MESSAGE) malformed(MAX_MESSAGE, 'message longer than 65535 octets')
  const flags = buf.readUInt16BE(2)
  const counts = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o)) as [number, number, number, number]
  // Smallest question is 5 octets, smallest record 11: refuse counts the bytes cannot hold
  // before looping over them.
  if (counts[0] * 5 + (counts[1] + counts[2] + counts[3]) * 11 > buf.length - 12) malformed(4, `section counts ${counts.join('/')} exceed the message`)
  let off = 12
  const questions: Question[] = []
  for (let i = 0; i < counts[0]; i++) {
    const n = readName(buf, off)
    if (n.end + 4 > buf.length) malformed(n.end, 'question runs past the end')
    questions.push({ name: n.name, type: buf.readUInt16BE(n.end), class: buf.readUInt16BE(n.end + 2) })
    off = n.end + 4
  }
  let lastStart = -1
  const section = (count: number): Rr[] => {
    const rrs: Rr[] = []
    for (let i = 0; i < count; i++) {
      lastStart = off
      const n = readName(buf, off)
      if (n.end + 10 > buf.length) malformed(n.end, 'record header runs past the end')
      const type = buf.readUInt16BE(n.end)
      const cls = buf.readUInt16BE(n.end + 2)
      const ttl = buf.readUInt32BE(n.end + 4)
      const len = buf.readUInt16BE(n.end + 8)
      const start = n.end + 10
      if (start + len > buf.length) malformed(n.end + 8, `RDLENGTH ${len} runs past the end`)
      rrs.push({ name: n.name, type, class: cls, ttl, data: len === 0 ? null : decodeRdata(buf, type, start, len) })
      off = start + len
    }
    return rrs
  }
  const answers = section(counts[1])
  const authority = section(counts[2])
  const additional = section(counts[3])
  if (off !== buf.length) malformed(off, `${buf.length - off} octets after the last record`)
  const last = additional[additional.length - 1]
  const tsigAt = additional.findIndex((r) => r.type === TYPE.TSIG)
  if (tsigAt >= 0 && tsigAt !== additional.length - 1) malformed(lastStart, 'a TSIG record that is not the last record')
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x400) !== 0,
    tc: (flags & 0x200) !== 0,
    rd: (flags & 0x100) !== 0,
    ra: (flags & 0x80) !== 0,
    z: (flags >> 4) & 0x7,
    rcode: flags & 0xf,
    questions,
    answers,
    authority,
    additional,
    ...(last?.type === TYPE.TSIG ? { tsigStart: lastStart } : {}),
  }
}

/** A message with every flag clear and empty sections, for building requests. */
export function emptyMessage (id: number, opcode: number): Message {
  return { id, qr: false, opcode, aa: false, tc: false, rd: false, ra: false, z: 0, rcode: 0, questions: [], answers: [], authority: [], additional: [] }
}

/** Names compare case-insensitively (RFC 4343), without a trailing dot. */
export function sameName (a: string, b: string): boolean {
  return a.replace(/\.$/, '').toLowerCase() === b.replace(/\.$/, '').toLowerCase()
}
