// RFC 8229 §3 framing: golden bytes from the RFC's layout.
import t from 'tap'
import { FrameDecoder, PREFIX, encodeFrame, frameKind } from '../../src/proto/rfc8229/framing.js'

const ikeHeader = Buffer.alloc(28, 0x11) // stands for an IKE header (SPIs, next payload, …)

t.test('stream prefix and the three payload kinds', async (t) => {
  t.equal(PREFIX.toString('hex'), '494b45544350', '"IKETCP", sent once by the originator')
  const ike = Buffer.concat([Buffer.alloc(4), ikeHeader])
  t.equal(encodeFrame(ike).toString('hex'), [
    '0022', // Length = 2 + 4 + 28 = 34, counting itself
    '00000000', // non-ESP marker
    '11'.repeat(28), // IKE header
  ].join(''))
  t.equal(frameKind(ike), 'ike')
  const esp = Buffer.from('c0ffee01' + '00000001' + 'aa'.repeat(16), 'hex')
  t.equal(encodeFrame(esp).subarray(0, 6).toString('hex'), '001ac0ffee01', 'Length 26, then the SPI')
  t.equal(frameKind(esp), 'esp')
  t.equal(encodeFrame(Buffer.from([0xff])).toString('hex'), '0003ff', 'NAT keepalive: Length 3, 0xFF')
  t.equal(frameKind(Buffer.from([0xff])), 'keepalive')
})

t.test('decoder: prefix, then frames', async (t) => {
  const d = new FrameDecoder(true)
  const esp = Buffer.from('c0ffee0100000001', 'hex')
  const out = d.push(Buffer.concat([PREFIX, encodeFrame(esp), encodeFrame(Buffer.from([0xff]))]))
  t.same(out.map((b) => b.toString('hex')), ['c0ffee0100000001', 'ff'])
})
