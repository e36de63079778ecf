// Fuzz: RFC 8229 framing (IKETCP prefix, length-prefixed frames, any chunking).
import t from 'tap'
import fc from 'fast-check'
import { FrameDecoder, PREFIX, encodeFrame } from '../../src/proto/rfc8229/framing.js'
import { bytes, check, contract } from './helpers.js'

const payload = fc.oneof(
  bytes(40).map((b) => Buffer.concat([Buffer.from('c0ffee01', 'hex'), Buffer.alloc(4, 1), b])), // ESP
  bytes(40).map((b) => Buffer.concat([Buffer.alloc(4), Buffer.alloc(28, 2), b])), // IKE
  fc.constant(Buffer.from([0xff])), // keepalive
)
const cuts = fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 8 })

function feed (d: FrameDecoder, stream: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = []
  for (let off = 0, i = 0; off < stream.length; off += sizes[i++ % sizes.length]!) out.push(...d.push(stream.subarray(off, off + sizes[i % sizes.length]!)))
  return out
}

t.test('valid streams round-trip under any chunking', async (t) => {
  check(t, 'round trip', fc.property(fc.array(payload, { maxLength: 10 }), cuts, (ps, sizes) => {
    const stream = Buffer.concat([PREFIX, ...ps.map(encodeFrame)])
    let got: Buffer[] = []
    contract(() => { got = feed(new FrameDecoder(true), stream, sizes) }, { maxAlloc: stream.length + 64 })
    if (got.length !== ps.length || !got.every((g, i) => g.equals(ps[i]!))) throw new Error('frames changed')
  }))
})

t.test('garbage: coded errors only, fast, bounded allocation', async (t) => {
  check(t, 'garbage', fc.property(bytes(), cuts, fc.boolean(), (b, sizes, prefix) => {
    contract(() => feed(new FrameDecoder(prefix), prefix ? Buffer.concat([PREFIX, b]) : b, sizes), { codes: /^BECKON_ERR_RFC8229_MALFORMED$/, maxAlloc: 65535 })
  }))
})
