// Fuzz: the VICI codec (packets, messages) and the connection's segment framing.
import t from 'tap'
import fc from 'fast-check'
import { ElementType, MAX_SEGMENT, PacketType, decodeMessage, decodePacket, encodeMessage, encodePacket, toPlain, type Packet, type ViciInput } from '../../src/proto/vici/codec.js'
import { ViciConnection } from '../../src/proto/vici/conn.js'
import { RUNS, bytes, check, contract } from './helpers.js'

/** Bytes biased towards element structure, so decoding goes deep, not only fails early. */
const elementish = fc.array(fc.oneof(
  fc.constantFrom(ElementType.SECTION_START, ElementType.SECTION_END, ElementType.KEY_VALUE, ElementType.LIST_START, ElementType.LIST_ITEM, ElementType.LIST_END).map((b) => Buffer.from([b])),
  fc.constantFrom(Buffer.from([1, 0x61]), Buffer.from([0, 1, 0x41]), Buffer.from([0, 0])),
  bytes(4),
), { maxLength: 200 }).map((parts) => Buffer.concat(parts))

const name = fc.string({ minLength: 0, maxLength: 12 }).filter((s) => /^[\x20-\x7e]*$/.test(s))
const scalar = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), bytes(30))
const message: fc.Arbitrary<ViciInput> = fc.letrec((tie) => ({
  section: fc.dictionary(name, fc.oneof({ depthSize: 'small' }, scalar, fc.array(scalar, { maxLength: 4 }), tie('section')), { maxKeys: 5 }),
})).section as fc.Arbitrary<ViciInput>

t.test('decodePacket: coded errors only, fast, round-trips what it accepts', async (t) => {
  check(t, 'random bytes', fc.property(fc.oneof(bytes(), elementish.map((b) => Buffer.concat([Buffer.from([PacketType.CMD_RESPONSE]), b]))), (buf) => {
    contract(() => {
      const p = decodePacket(buf)
      if (!encodePacket(p as Packet<ViciInput>).equals(buf)) throw new Error('accepted bytes do not re-encode identically')
      toPlain('message' in p ? p.message : new Map())
    }, { codes: /^BECKON_ERR_VICI_/, maxAlloc: buf.length + 64 })
  }))
})

t.test('encodeMessage → decodeMessage round-trips any encodable message', async (t) => {
  check(t, 'messages', fc.property(message, (m) => {
    let enc: Buffer | undefined
    contract(() => { enc = encodeMessage(m) }, { codes: /^BECKON_ERR_VICI_/ })
    if (enc === undefined) return
    const back = decodeMessage(enc)
    if (!encodeMessage(back).equals(enc)) throw new Error('round trip changed the bytes')
  }), { numRuns: RUNS >= 1_000_000 ? RUNS : Math.max(200, Math.floor(RUNS / 4)) })
})

t.test('connection framing: random chunking of random segments never throws uncoded', async (t) => {
  check(t, 'segments', fc.property(fc.array(fc.oneof(elementish, bytes(40)), { maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }), fc.boolean(), (segs, cuts, hugeHeader) => {
    const conn = new ViciConnection({ uri: 'unix:///nonexistent', reconnect: false })
    conn.on('disconnect', () => {})
    conn.on('event', () => {})
    const sock = { pause () {}, destroy () {} }
    const c = conn as unknown as { socket: unknown, connected: boolean, onData: (s: unknown, b: Buffer) => void }
    c.socket = sock
    c.connected = true
    const stream = Buffer.concat(segs.map((s) => {
      const data = Buffer.concat([Buffer.from([PacketType.EVENT, 1, 0x65]), s])
      const h = Buffer.alloc(4)
      h.writeUInt32BE(hugeHeader ? MAX_SEGMENT + 1 : data.length)
      return Buffer.concat([h, data])
    }))
    contract(() => {
      let off = 0
      for (let i = 0; off < stream.length; i++) {
        const n = cuts[i % cuts.length]!
        c.onData(sock, stream.subarray(off, off + n))
        off += n
      }
    }, { maxAlloc: stream.length + 64 })
  }))
})
