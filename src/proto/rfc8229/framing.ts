/**
 * IKE and ESP over a TCP byte stream, RFC 8229 §3 (RFC 9329 §3 unchanged).
 *
 *   stream   = "IKETCP" (sent once, by the TCP originator only) ‖ frame*
 *   frame    = u16be Length (includes these 2 bytes) ‖ payload
 *   payload  = 00 00 00 00 ‖ IKE message       non-ESP marker, then the IKE header (28 B)
 *            | SPI (≠ 0) ‖ seq ‖ …             an ESP packet
 *            | FF                              a NAT keepalive (passed through as is)
 *
 * A datagram from charon's NAT-T socket already is such a payload (charon adds the
 * non-ESP marker on port 4500), so framing is only the length prefix.
 *
 * Bridge control frames (ours, between the two Beckon bridges; never given to charon):
 *   payload  = 00 00 00 01 ‖ "BKCT" ‖ u8 type (1 close · 2 ping · 3 pong)  9 bytes
 * `close`: the sender's end quit on purpose (not a path break): the receiver closes too.
 * SPI 1 lies in the range IANA reserves (1-255, RFC 4303 §2.1), so no ESP packet ever
 * carries it; a peer that does not know these frames hands them to charon, which drops
 * them as ESP for an unknown SA. Decoding hands out
 * views into the received chunks whenever a frame lies inside one chunk (the common
 * case); only frames split across chunks are copied.
 */
import { BeckonError } from '../../core/errors.js'

export const PREFIX = Buffer.from('IKETCP', 'latin1')
const IKE_HEADER = 28
const ESP_MIN = 8 // SPI + sequence number

export type FrameKind = 'ike' | 'esp' | 'keepalive'

export enum Control { CLOSE = 1, PING = 2, PONG = 3 }
const CONTROL_SPI = 1
const CONTROL_MAGIC = 0x424b4354 // "BKCT"
const CONTROL_LEN = 9

/** A whole control frame (header included), built once per type and reused. */
export function controlFrame (type: Control): Buffer {
  const b = Buffer.alloc(2 + CONTROL_LEN)
  b.writeUInt16BE(2 + CONTROL_LEN, 0)
  b.writeUInt32BE(CONTROL_SPI, 2)
  b.writeUInt32BE(CONTROL_MAGIC, 6)
  b[10] = type
  return b
}

/** The control type of a payload, or undefined for IKE/ESP/keepalive (no allocation). */
export function controlType (payload: Buffer): Control | undefined {
  if (payload.length !== CONTROL_LEN || payload.readUInt32BE(0) !== CONTROL_SPI || payload.readUInt32BE(4) !== CONTROL_MAGIC) return undefined
  const t = payload[8]!
  return t === Control.CLOSE || t === Control.PING || t === Control.PONG ? t : undefined
}

export function frameKind (payload: Buffer): FrameKind {
  if (payload.length === 1 && payload[0] === 0xff) return 'keepalive'
  if (payload.length >= 4 && payload.readUInt32BE(0) === 0) {
    if (payload.length < 4 + IKE_HEADER) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `IKE frame of ${payload.length} bytes is shorter than marker + IKE header`)
    return 'ike'
  }
  if (payload.length < ESP_MIN) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame of ${payload.length} bytes is neither IKE, ESP nor a keepalive`)
  return 'esp'
}

/** The 2-byte length header for a payload (the payload is written separately). */
export function frameHeader (payload: Buffer): Buffer {
  const len = payload.length + 2
  if (len > 0xffff) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `datagram of ${payload.length} bytes does not fit a frame`)
  const h = Buffer.allocUnsafe(2)
  h.writeUInt16BE(len, 0)
  return h
}

/** One frame as one buffer (tests, golden bytes); the bridge writes header and payload apart. */
export function encodeFrame (payload: Buffer): Buffer {
  return Buffer.concat([frameHeader(payload), payload])
}

/**
 * Incremental decoder. `push(chunk)` returns the complete payloads it now holds, each
 * validated with frameKind(); malformed input throws BECKON_ERR_RFC8229_MALFORMED and
 * the caller closes the session. With `expectPrefix`, the stream must start "IKETCP".
 */
export class FrameDecoder {
  /**
   * The frame that the previous chunk cut off: its 2-byte header while incomplete
   * (`head`), then one buffer of the frame's announced length (≤ 65535, from a u16),
   * filled in place as chunks arrive, so reassembly is linear in the bytes received
   * (concatenating on every chunk was quadratic in the number of chunks).
   */
  private head: Buffer | undefined
  private frame: Buffer | undefined
  private filled = 0
  private prefixLeft: number

  constructor (expectPrefix: boolean) {
    this.prefixLeft = expectPrefix ? PREFIX.length : 0
  }

  get buffered (): number { return this.frame !== undefined ? this.filled : (this.head?.length ?? 0) }

  private static payload (frame: Buffer): Buffer {
    const len = frame.readUInt16BE(0)
    if (len < 3) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame length ${len} leaves no payload`)
    const payload = frame.subarray(2, len)
    frameKind(payload)
    return payload
  }

  private start (len: number): void {
    if (len < 3) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame length ${len} leaves no payload`)
    this.frame = Buffer.allocUnsafe(len)
    this.frame.writeUInt16BE(len, 0)
    this.filled = 2
    this.head = undefined
  }

  /**
   * Completes the cut-off frame from the head of `buf`, copying only that frame's bytes;
   * returns what is left of `buf`, or undefined while the frame is still incomplete.
   */
  private completeTail (buf: Buffer, out: Buffer[]): Buffer | undefined {
    if (this.frame === undefined) {
      const h = this.head!
      if (h.length + buf.length < 2) { this.head = Buffer.concat([h, buf]); return undefined }
      const k = 2 - h.length
      this.start(Buffer.concat([h, buf.subarray(0, k)]).readUInt16BE(0))
      buf = buf.subarray(k)
    }
    const f = this.frame!
    const k = Math.min(f.length - this.filled, buf.length)
    buf.copy(f, this.filled, 0, k)
    this.filled += k
    if (this.filled < f.length) return undefined
    this.frame = undefined
    out.push(FrameDecoder.payload(f))
    return buf.subarray(k)
  }

  push (chunk: Buffer): Buffer[] {
    let buf = chunk
    if (this.prefixLeft > 0) {
      const n = Math.min(this.prefixLeft, buf.length)
      const want = PREFIX.subarray(PREFIX.length - this.prefixLeft, PREFIX.length - this.prefixLeft + n)
      if (!buf.subarray(0, n).equals(want)) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', 'stream does not start with "IKETCP"')
      this.prefixLeft -= n
      buf = buf.subarray(n)
    }
    const out: Buffer[] = []
    if (this.head !== undefined || this.frame !== undefined) {
      const rest = this.completeTail(buf, out)
      if (rest === undefined) return out
      buf = rest
    }
    // Whole frames inside this chunk are handed out as views: no copy.
    let off = 0
    while (buf.length - off >= 2) {
      const len = buf.readUInt16BE(off)
      if (len < 3) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame length ${len} leaves no payload`)
      if (buf.length - off < len) break
      out.push(FrameDecoder.payload(buf.subarray(off, off + len)))
      off += len
    }
    // A cut-off frame: copy its start now, so the chunk it came in is not pinned.
    if (buf.length - off === 1) this.head = Buffer.from(buf.subarray(off))
    else if (off < buf.length) {
      this.start(buf.readUInt16BE(off))
      this.filled += buf.copy(this.frame!, 2, off + 2)
    }
    return out
  }
}
