/**
 * Minimal pcap reader for tests: Ethernet → IPv4 → TCP, payloads reassembled per
 * direction in sequence order (retransmissions dropped), so a search cannot miss bytes
 * that a TCP segment boundary happens to split.
 */
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
    if (pkt.length < 14 || pkt.readUInt16BE(12) !== 0x0800) continue
    const ip = pkt.subarray(14)
    if (ip.length < 20 || ip[9] !== 6) continue
    const ihl = (ip[0]! & 0x0f) * 4
    const total = ip.readUInt16BE(2)
    const tcp = ip.subarray(ihl, total)
    if (tcp.length < 20) continue
    const doff = (tcp[12]! >> 4) * 4
    const data = tcp.subarray(doff)
    if (data.length === 0) continue
    const key = `${[...ip.subarray(12, 16)].join('.')}:${tcp.readUInt16BE(0)}>${[...ip.subarray(16, 20)].join('.')}:${tcp.readUInt16BE(2)}`
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
