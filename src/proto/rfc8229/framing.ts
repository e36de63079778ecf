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
 * non-ESP marker on port 4500), so framing is only the length prefix. Decoding hands out
 * views into the received chunks whenever a frame lies inside one chunk (the common
 * case); only frames split across chunks are copied.
 */
import { BeckonError } from '../../core/errors.js'

export const PREFIX = Buffer.from('IKETCP', 'latin1')
const IKE_HEADER = 28
const ESP_MIN = 8 // SPI + sequence number

export type FrameKind = 'ike' | 'esp' | 'keepalive'

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
  /** The start of a frame that the previous chunk cut off (≤ 65535 bytes). */
  private tail: Buffer | undefined
  private prefixLeft: number

  constructor (expectPrefix: boolean) {
    this.prefixLeft = expectPrefix ? PREFIX.length : 0
  }

  get buffered (): number { return this.tail?.length ?? 0 }

  private static payload (frame: Buffer): Buffer {
    const len = frame.readUInt16BE(0)
    if (len < 3) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame length ${len} leaves no payload`)
    const payload = frame.subarray(2, len)
    frameKind(payload)
    return payload
  }

  /**
   * Completes the cut-off frame from the head of `buf`, copying only that frame's bytes;
   * returns what is left of `buf`, or undefined while the frame is still incomplete.
   */
  private completeTail (buf: Buffer, out: Buffer[]): Buffer | undefined {
    let t = this.tail!
    if (t.length < 2) {
      const k = Math.min(2 - t.length, buf.length)
      t = Buffer.concat([t, buf.subarray(0, k)])
      buf = buf.subarray(k)
      if (t.length < 2) { this.tail = t; return undefined }
    }
    const len = t.readUInt16BE(0)
    if (len < 3) throw new BeckonError('BECKON_ERR_RFC8229_MALFORMED', `frame length ${len} leaves no payload`)
    const k = Math.min(len - t.length, buf.length)
    t = Buffer.concat([t, buf.subarray(0, k)])
    buf = buf.subarray(k)
    if (t.length < len) { this.tail = t; return undefined }
    this.tail = undefined
    out.push(FrameDecoder.payload(t))
    return buf
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
    if (this.tail !== undefined) {
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
    if (off < buf.length) this.tail = Buffer.from(buf.subarray(off))
    return out
  }
}
