// Framing properties: any chunking yields the same frames; garbage is coded.
import t from 'tap'
import { BeckonError } from '../../../../src/core/errors.js'
import { FrameDecoder, PREFIX, encodeFrame } from '../../../../src/proto/rfc8229/framing.js'
import { rng, randInt, randBytes, seedOf } from '../../../helpers/random.js'

const seed = seedOf()
t.comment(`seed ${seed}`)
const r = rng(seed)

function randomPayload (): Buffer {
  const k = randInt(r, 0, 2)
  if (k === 0) return Buffer.from([0xff])
  if (k === 1) return Buffer.concat([Buffer.alloc(4), randBytes(r, randInt(r, 28, 300))])
  const esp = randBytes(r, randInt(r, 8, 1500))
  if (esp.readUInt32BE(0) === 0) esp[0] = 1
  return esp
}

t.test('random frames survive random chunking, views where possible', async (t) => {
  for (let round = 0; round < 200; round++) {
    const payloads = Array.from({ length: randInt(r, 1, 20) }, randomPayload)
    const stream = Buffer.concat([PREFIX, ...payloads.map(encodeFrame)])
    const d = new FrameDecoder(true)
    const got: Buffer[] = []
    for (let off = 0; off < stream.length;) {
      const n = randInt(r, 1, 600)
      got.push(...d.push(stream.subarray(off, off + n)))
      off += n
    }
    if (got.length !== payloads.length || !got.every((g, i) => g.equals(payloads[i]!))) t.fail(`round ${round}`)
    t.equal(d.buffered, 0, 'nothing left over', { diagnostic: false })
  }
  t.pass('200 random streams decoded')
})

t.test('malformed streams are refused with a coded error', async (t) => {
  const cases: Array<[string, Buffer, boolean, RegExp]> = [
    ['no prefix', Buffer.from('GET / HTTP/1.1\r\n'), true, /IKETCP/],
    ['length 2', Buffer.from('0002', 'hex'), false, /leaves no payload/],
    ['length 0', Buffer.from('0000', 'hex'), false, /leaves no payload/],
    ['short IKE', Buffer.from('000a' + '00000000' + '1111' + '1111', 'hex'), false, /shorter than marker/],
    ['short ESP', Buffer.from('0005' + '010203', 'hex'), false, /neither IKE, ESP/],
    ['lone non-keepalive byte', Buffer.from('000301', 'hex'), false, /neither/],
  ]
  for (const [what, bytes, prefix, re] of cases) {
    t.throws(() => new FrameDecoder(prefix).push(bytes), { code: 'BECKON_ERR_RFC8229_MALFORMED', message: re }, what)
  }
  for (let i = 0; i < 2000; i++) {
    try { new FrameDecoder(r() < 0.5).push(randBytes(r, randInt(r, 0, 100))) } catch (e) {
      if (!(e instanceof BeckonError) || e.code !== 'BECKON_ERR_RFC8229_MALFORMED') t.fail(String(e))
    }
  }
  t.pass('garbage: coded errors only')
  t.throws(() => encodeFrame(Buffer.alloc(65534)), { code: 'BECKON_ERR_RFC8229_MALFORMED' })
})

t.test('whole frames are views into the received chunk; only a cut-off frame is copied', async (t) => {
  const esp = (b: number): Buffer => Buffer.alloc(1400, b).fill(0x11, 0, 4)
  const stream = Buffer.concat([encodeFrame(esp(1)), encodeFrame(esp(2)), encodeFrame(esp(3)), encodeFrame(esp(4))])
  const d = new FrameDecoder(false)
  const cut = 1402 * 2 + 700 // two whole frames, half of the third
  // Buffer.alloc is never pooled, so "shares memory" means "is a view of this chunk".
  const chunk = (b: Buffer): Buffer => { const c = Buffer.alloc(b.length); b.copy(c); return c }
  const first = chunk(stream.subarray(0, cut))
  const a = d.push(first)
  t.equal(a.length, 2)
  t.ok(a.every((p) => p.buffer === first.buffer), 'whole frames share the chunk memory')
  t.equal(d.buffered, 700, 'only the cut-off frame is held')
  const second = chunk(stream.subarray(cut))
  const b = d.push(second)
  t.same(b.map((p) => p[4]), [3, 4])
  t.not(b[0]!.buffer, second.buffer, 'the completed frame is a copy')
  t.equal(b[1]!.buffer, second.buffer, 'the frame after it is a view again')
  t.equal(d.buffered, 0)
})
