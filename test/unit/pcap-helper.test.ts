// The test helper that reassembles captured TCP streams must not lose bytes.
import t from 'tap'
import { reassemble } from '../helpers/pcap.js'

const seg = (seq: number, s: string): { seq: number, data: Buffer } => ({ seq, data: Buffer.from(s) })

t.test('order, duplicates, overlapping retransmissions, wraparound', async (t) => {
  t.equal(reassemble([seg(10, 'cd'), seg(8, 'ab')]).toString(), 'abcd', 'out of order')
  t.equal(reassemble([seg(8, 'ab'), seg(8, 'ab'), seg(10, 'cd')]).toString(), 'abcd', 'exact duplicate')
  t.equal(reassemble([seg(8, 'abc'), seg(9, 'bcdef')]).toString(), 'abcdef', 'overlapping retransmission keeps its new tail')
  t.equal(reassemble([seg(0xfffffffe, 'ab'), seg(0, 'cd')]).toString(), 'abcd', 'sequence wraparound')
  t.equal(reassemble([]).length, 0)
})
