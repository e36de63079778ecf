// What `beckon demo` reads from the relay's capture: packet totals, and the ESP SPIs in
// RFC 8229 frames (u16be length including itself ‖ payload; IKE behind a 4-byte zero marker).
import t from 'tap'
import { pcapTotals, rfc8229Frames } from '../../../src/lab/pcap.js'
import { glucoseChart } from '../../../src/cli/demo.js'

const frame = (payload: Buffer): Buffer => { const b = Buffer.alloc(2 + payload.length); b.writeUInt16BE(b.length); payload.copy(b, 2); return b }
const esp = (spi: string, n = 20): Buffer => frame(Buffer.concat([Buffer.from(spi, 'hex'), Buffer.alloc(n, 0xaa)]))
const ike = (n = 40): Buffer => frame(Buffer.concat([Buffer.alloc(4), Buffer.alloc(n, 0x21)]))

t.test('rfc8229Frames: after IKETCP, after an unknown hello, and not in other streams', async (t) => {
  const initiator = Buffer.concat([Buffer.from('hello-and-descriptorIKETCP'), ike(), ike(), esp('c0ffee01'), esp('c0ffee01')])
  const responder = Buffer.concat([Buffer.from([1, 2, 3, 4, 5, 6, 7]), ike(), ike(), esp('0badf00d'), esp('0badf00d'), esp('0badf00d')])
  const tls = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), Buffer.alloc(0x20, 0x5a), Buffer.from([0x17, 0x03, 0x03, 0x00, 0x11]), Buffer.alloc(0x11, 0x33)])
  const s = rfc8229Frames(new Map([['a', initiator], ['b', responder], ['tls', tls]]))
  t.equal(s.streams, 2)
  t.equal(s.ike, 4)
  t.same([...s.esp.entries()].sort(), [['0badf00d', 3], ['c0ffee01', 2]])
  t.equal(rfc8229Frames(new Map([['cut', initiator.subarray(0, initiator.length - 3)]])).streams, 0, 'a stream cut inside a frame does not count')
})

t.test('pcapTotals counts records and their wire lengths, in either byte order', async (t) => {
  for (const le of [true, false]) {
    const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); if (le) b.writeUInt32LE(v); else b.writeUInt32BE(v); return b }
    const rec = (incl: number, orig: number): Buffer => Buffer.concat([u32(0), u32(0), u32(incl), u32(orig), Buffer.alloc(incl)])
    const pcap = Buffer.concat([u32(0xa1b2c3d4), Buffer.alloc(16), u32(1), rec(60, 60), rec(100, 1514)])
    t.same(pcapTotals(pcap), { packets: 2, bytes: 1574 }, le ? 'little-endian' : 'big-endian')
  }
  t.same(pcapTotals(Buffer.alloc(0)), { packets: 0, bytes: 0 })
})

t.test('glucoseChart: one bar per reading, longest for the highest, ASCII unless a TTY', async (t) => {
  const readings = [{ time: '2026-11-21T06:00:00.000Z', mmolPerL: 5.4 }, { time: '2026-11-21T09:00:00.000Z', mmolPerL: 8.1 }]
  const plain = glucoseChart(readings, false, 20)
  t.same(plain, [
    `  11-21 06:00  ${'#'.repeat(13)}${' '.repeat(7)}  5.4 mmol/L`,
    `  11-21 09:00  ${'#'.repeat(20)}  8.1 mmol/L`,
  ])
  t.match(glucoseChart(readings, true, 20)[1]!, /█{20}/)
})
