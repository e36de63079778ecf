// Signed session descriptors: verification refuses what it must.
import t from 'tap'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../../src/core/keys.js'
import { encodeReply, signDescriptor, verifyDescriptor, type Descriptor } from '../../../../src/proto/descriptor/descriptor.js'

const k = generateRawKeyPair('ed25519')
const priv = privateKeyFromRaw('ed25519', k.privateKey)
const pub = publicKeyFromRaw('ed25519', k.publicKey)
const other = publicKeyFromRaw('ed25519', generateRawKeyPair('ed25519').publicKey)
const NOW = 1_900_000_000
const d: Descriptor = { v: 1, session: 'ab'.repeat(12), device: 'patient-phone', user: 'dr-grey', expires: NOW + 60, mode: 'tcp', port: 8080 }
const opts = { keys: [pub], now: NOW, device: 'patient-phone' }

t.test('round trip and layout', async (t) => {
  const f = signDescriptor(d, priv)
  t.equal(f.subarray(0, 4).toString(), 'BKD1')
  t.equal(f.readUInt16BE(4), f.length - 6 - 64, 'length covers the JSON payload')
  t.same(verifyDescriptor(f, opts), d)
  t.same(verifyDescriptor(f, { ...opts, keys: [other, pub] }), d, 'any trusted key')
})

t.test('refusals', async (t) => {
  const f = signDescriptor(d, priv)
  t.throws(() => verifyDescriptor(f, { ...opts, keys: [other] }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /signature/ })
  t.throws(() => verifyDescriptor(f, { ...opts, now: NOW + 60 }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /expired/ })
  t.throws(() => verifyDescriptor(f, { ...opts, device: 'other' }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /for device patient-phone/ })
  for (let i = 0; i < f.length; i += 7) {
    const b = Buffer.from(f)
    b[i]! ^= 0x01
    t.throws(() => verifyDescriptor(b, opts), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' }, `byte ${i} flipped`, { diagnostic: false })
  }
  t.throws(() => verifyDescriptor(f.subarray(0, 20), opts), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
  t.throws(() => signDescriptor({ ...d, port: 70000 }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /port/ })
  t.throws(() => signDescriptor({ ...d, session: 'xyz' }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /session/ })
  t.equal(encodeReply({ ready: false, code: 'BECKON_ERR_FORBIDDEN', message: 'no' }).subarray(0, 5).toString('hex'), '424b523101')
})
