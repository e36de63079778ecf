// Golden bytes of the dial-back hello and ack.
import t from 'tap'
import { DialbackStatus, decodeAck, decodeHello, encodeAck, encodeHello } from '../../src/proto/dialback/dialback.js'

t.test('hello layout', async (t) => {
  const h = { status: DialbackStatus.UNREACHABLE, sessionId: Buffer.alloc(12, 0xaa), proof: Buffer.alloc(32, 0x11) }
  const want = [
    '424b4442', // "BKDB"
    '01', // version
    '01', // status: terminal unreachable
    'aa'.repeat(12), // session id
    '11'.repeat(32), // proof
  ].join('')
  t.equal(encodeHello(h).toString('hex'), want)
  t.same(decodeHello(Buffer.from(want, 'hex')), h)
  t.equal(encodeAck(true).toString('hex'), '424b414b00', '"BKAK" accepted')
  t.equal(encodeAck(false).toString('hex'), '424b414b01', '"BKAK" refused')
})

t.test('malformed hellos and acks are coded', async (t) => {
  const good = encodeHello({ status: 0, sessionId: Buffer.alloc(12), proof: Buffer.alloc(32) })
  const bad = (i: number, v: number): Buffer => { const b = Buffer.from(good); b[i] = v; return b }
  t.throws(() => decodeHello(good.subarray(0, 49)), { code: 'BECKON_ERR_PROTOCOL' })
  t.throws(() => decodeHello(bad(0, 0x58)), { code: 'BECKON_ERR_PROTOCOL', message: /magic/ })
  t.throws(() => decodeHello(bad(4, 2)), { code: 'BECKON_ERR_PROTOCOL', message: /version/ })
  t.throws(() => decodeHello(bad(5, 7)), { code: 'BECKON_ERR_PROTOCOL', message: /status/ })
  t.throws(() => decodeAck(Buffer.from('424b414b02', 'hex')), { code: 'BECKON_ERR_PROTOCOL' })
  t.throws(() => decodeAck(Buffer.from('GET /', 'latin1')), { code: 'BECKON_ERR_PROTOCOL' })
})
