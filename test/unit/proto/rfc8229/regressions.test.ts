// Defects an outside fuzz run found in RFC 8229 framing.
import t from 'tap'
import { FrameDecoder, PREFIX, encodeFrame } from '../../../../src/proto/rfc8229/framing.js'

t.test('reassembly is linear in the number of chunks', async (t) => {
  // A 65535-byte frame in 1-byte chunks: concatenating the tail on every chunk copied
  // ~2 GB; filling one preallocated frame copies 64 KiB.
  const payload = Buffer.concat([Buffer.from('c0ffee0100000001', 'hex'), Buffer.alloc(65533 - 8, 9)])
  const stream = Buffer.concat([PREFIX, encodeFrame(payload), encodeFrame(payload)])
  for (let round = 0; round < 3; round++) {
    const d = new FrameDecoder(true)
    const got: Buffer[] = []
    const start = process.hrtime.bigint()
    for (let i = 0; i < stream.length; i++) got.push(...d.push(stream.subarray(i, i + 1)))
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    t.equal(got.length, 2)
    t.ok(got.every((g) => g.equals(payload)), 'intact')
    t.ok(ms < 1000, `${stream.length} one-byte chunks in ${ms.toFixed(0)} ms`)
    t.equal(d.buffered, 0)
  }
})

t.test('a header split across chunks, then a bad length, is coded', async (t) => {
  const d = new FrameDecoder(false)
  t.same(d.push(Buffer.from([0x00])), [])
  t.equal(d.buffered, 1)
  t.throws(() => d.push(Buffer.from([0x02])), { code: 'BECKON_ERR_RFC8229_MALFORMED', message: /frame length 2/ })
})
