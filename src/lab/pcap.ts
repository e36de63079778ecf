/**
 * Minimal pcap reader (libpcap format, https://www.tcpdump.org/manpages/pcap-savefile.5.txt)
 * for the lab's captures: Ethernet → IPv4 or IPv6 (no extension headers) → TCP, payloads reassembled per direction in
 * sequence order (retransmissions dropped), so a search cannot miss bytes that a TCP
 * segment boundary happens to split. Also finds RFC 8229 frames in those streams, so a
 * capture can show which ESP SPIs crossed a node.
 *
 *   file header (24): magic u32 0xa1b2c3d4 (byte order of the writer) ‖ version (4)
 *                     ‖ thiszone (4) ‖ sigfigs (4) ‖ snaplen u32 ‖ linktype u32 (1 = Ethernet)
 *   record (16 + n):  ts_sec u32 ‖ ts_usec u32 ‖ incl_len u32 ‖ orig_len u32 ‖ n bytes
 */
import { ipString } from '../core/ip.js'

export function tcpStreams (pcap: Buffer): Map<string, Buffer> {
  const magic = pcap.readUInt32LE(0)
  const le = magic === 0xa1b2c3d4
  if (!le && pcap.readUInt32BE(0) !== 0xa1b2c3d4) throw new Error('not a pcap file')
  const u32 = (o: number): number => le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o)
  if (u32(20) !== 1) throw new Error(`link type ${u32(20)} is not Ethernet`)
  const flows = new Map<string, Array<{ seq: number, data: Buffer }>>()
  for (let off = 24; off + 16 <= pcap.length;) {
    const incl = u32(off + 8)
    const pkt = pcap.subarray(off + 16, off + 16 + incl)
    off += 16 + incl
    if (pkt.length < 14) continue
    const type = pkt.readUInt16BE(12)
    const ip = pkt.subarray(14)
    let tcp: Buffer
    let src: string
    let dst: string
    if (type === 0x0800) {
      if (ip.length < 20 || ip[9] !== 6) continue
      tcp = ip.subarray((ip[0]! & 0x0f) * 4, ip.readUInt16BE(2))
      src = ipString(ip.subarray(12, 16))
      dst = ipString(ip.subarray(16, 20))
    } else if (type === 0x86dd) {
      // IPv6: 40-byte header, next header 6 (TCP) directly, payload length at 4.
      if (ip.length < 40 || ip[6] !== 6) continue
      tcp = ip.subarray(40, 40 + ip.readUInt16BE(4))
      src = `[${ipString(ip.subarray(8, 24))}]`
      dst = `[${ipString(ip.subarray(24, 40))}]`
    } else continue
    if (tcp.length < 20) continue
    const doff = (tcp[12]! >> 4) * 4
    const data = tcp.subarray(doff)
    if (data.length === 0) continue
    const key = `${src}:${tcp.readUInt16BE(0)}>${dst}:${tcp.readUInt16BE(2)}`
    const list = flows.get(key) ?? []
    list.push({ seq: tcp.readUInt32BE(4), data: Buffer.from(data) })
    flows.set(key, list)
  }
  const out = new Map<string, Buffer>()
  for (const [key, segs] of flows) out.set(key, reassemble(segs))
  return out
}

/**
 * Orders segments by sequence number relative to the first one seen (32-bit
 * wraparound), drops bytes already taken, and keeps the new tail of a retransmission
 * that overlaps and extends what came before.
 */
export function reassemble (segs: Array<{ seq: number, data: Buffer }>): Buffer {
  if (segs.length === 0) return Buffer.alloc(0)
  const base = segs[0]!.seq
  // Signed offsets: a segment captured after a later one comes out negative, not huge.
  const rel = segs.map((s) => ({ off: (s.seq - base) | 0, data: s.data })).sort((a, b) => a.off - b.off)
  const parts: Buffer[] = []
  let next = rel[0]!.off
  for (const s of rel) {
    const end = s.off + s.data.length
    if (end <= next) continue // nothing new
    parts.push(s.off >= next ? s.data : s.data.subarray(next - s.off))
    next = end
  }
  return Buffer.concat(parts)
}

/** True when any reassembled stream contains `needle`. */
export function streamsInclude (streams: Map<string, Buffer>, needle: Buffer): boolean {
  for (const b of streams.values()) if (b.includes(needle)) return true
  return false
}

/** Packets and their on-the-wire bytes (orig_len) in a capture. */
export function pcapTotals (pcap: Buffer): { packets: number, bytes: number } {
  if (pcap.length < 24) return { packets: 0, bytes: 0 }
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4
  const u32 = (o: number): number => le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o)
  let packets = 0
  let bytes = 0
  for (let off = 24; off + 16 <= pcap.length; off += 16 + u32(off + 8)) {
    packets++
    bytes += u32(off + 12)
  }
  return { packets, bytes }
}

/** RFC 8229 §3 stream prefix the initiator sends first. */
const IKETCP = Buffer.from('IKETCP')

export interface Rfc8229Summary {
  /** Streams that carried RFC 8229 frames. */
  streams: number
  /** Frames with the 4-byte non-ESP marker (IKE). */
  ike: number
  /** ESP frames per SPI (hex, as charon prints it). */
  esp: Map<string, number>
}

/**
 * Walks `u16be length (including itself) ‖ payload` frames (RFC 8229 §3) from `start`;
 * the frames count only if they end exactly at the end of the stream.
 */
function framesFrom (b: Buffer, start: number): Buffer[] | undefined {
  const out: Buffer[] = []
  let off = start
  while (off + 2 <= b.length) {
    const len = b.readUInt16BE(off)
    // Shortest frame: length (2) + ESP SPI and sequence number (8), or IKE's marker (4).
    if (len < 6 || off + len > b.length) return undefined
    out.push(b.subarray(off + 2, off + len))
    off += len
  }
  return off === b.length ? out : undefined
}

/**
 * RFC 8229 frames in reassembled TCP streams. The initiator's direction starts after the
 * `IKETCP` prefix; the other direction follows the dial-back hello, whose length this
 * reader does not know, so it takes the first offset from which frames tile the rest of
 * the stream (at least two frames, so a stray length field does not count).
 */
export function rfc8229Frames (streams: Map<string, Buffer>): Rfc8229Summary {
  const sum: Rfc8229Summary = { streams: 0, ike: 0, esp: new Map() }
  for (const b of streams.values()) {
    const p = b.indexOf(IKETCP)
    let frames = p >= 0 ? framesFrom(b, p + IKETCP.length) : undefined
    for (let start = 0; frames === undefined && start < Math.min(b.length, 4096); start++) {
      const f = framesFrom(b, start)
      if (f !== undefined && f.length >= 2) frames = f
    }
    if (frames === undefined || frames.length === 0) continue
    sum.streams++
    for (const f of frames) {
      const spi = f.readUInt32BE(0)
      if (spi === 0) { sum.ike++; continue }
      const hex = f.subarray(0, 4).toString('hex')
      sum.esp.set(hex, (sum.esp.get(hex) ?? 0) + 1)
    }
  }
  return sum
}
