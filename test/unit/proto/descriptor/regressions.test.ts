// Defects an outside fuzz run found in the descriptor frame, its reply and the sealed PSK.
import t from 'tap'
import type { Test } from 'tap'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import net, { type AddressInfo } from 'node:net'
import { publicKeyFromRaw, rawPublic } from '../../../../src/core/keys.js'
import { readDescriptorFrame, readReply, signDescriptor, verifyDescriptor, type Descriptor } from '../../../../src/proto/descriptor/descriptor.js'
import { seal, unseal } from '../../../../src/proto/descriptor/seal.js'
import { sign } from 'node:crypto'

const { privateKey: relayKey, publicKey: relayPub } = generateKeyPairSync('ed25519')
const NOW = 1_900_000_000

/** A socket whose peer writes `bytes` and then ends. */
async function peerSends (t: Test, bytes: Buffer): Promise<net.Socket> {
  const srv = net.createServer((s) => s.end(bytes))
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const c = net.connect((srv.address() as AddressInfo).port, '127.0.0.1')
  c.on('error', () => {})
  c.pause()
  t.teardown(() => { c.destroy(); srv.close() })
  return c
}

t.test('a short read at end of stream is not taken for a whole frame', async (t) => {
  // "BKD1" then one byte of the length, then FIN: read(6) hands out 5 bytes at the end,
  // and readUInt16BE(4) threw a RangeError. readExact now refuses short reads itself.
  await t.rejects(readDescriptorFrame(await peerSends(t, Buffer.from('BKD1\x00', 'latin1')), 1000), { code: 'BECKON_ERR_PROTOCOL', message: /closed after 5 of 6 bytes of descriptor header/ })
  const frame = signDescriptor({ v: 1, session: 'ab'.repeat(12), device: 'd', user: 'u', expires: NOW + 60, mode: 'tcp', port: 80 }, relayKey)
  await t.rejects(readDescriptorFrame(await peerSends(t, frame.subarray(0, frame.length - 1)), 1000), { code: 'BECKON_ERR_PROTOCOL', message: /closed after \d+ of \d+ bytes of descriptor body/ })
  await t.rejects(readReply(await peerSends(t, Buffer.from('BKR1\x00\x00', 'latin1')), 1000), { code: 'BECKON_ERR_PROTOCOL', message: /closed after 6 of 7 bytes of agent reply/ })
  await t.rejects(readReply(await peerSends(t, Buffer.from('BKR1\x00\x00\x05{}', 'latin1')), 1000), { code: 'BECKON_ERR_PROTOCOL', message: /closed after 2 of 5 bytes of agent reply body/ })
  await t.rejects(readReply(await peerSends(t, Buffer.from('BKR1\x00\x00\x04null', 'latin1')), 1000), { code: 'BECKON_ERR_PROTOCOL', message: /not a JSON object/ })
})

/** Signs any payload, as a relay with a bug (or a stolen key) might. */
function signRaw (payload: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(payload))
  const head = Buffer.alloc(6); head.write('BKD1'); head.writeUInt16BE(body.length, 4)
  const signed = Buffer.concat([head, body])
  return Buffer.concat([signed, sign(null, signed, relayKey)])
}

const ipsec = {
  auth: 'pubkey', client: { id: 'c@x', address: 'fd00::1' }, terminal: { id: 't@x', address: 'fd00::2' },
  protocol: 'tcp', ports: [80], ikeProposals: ['aes256-sha256-x25519'], espProposals: ['aes256gcm16'], ikeRekeyS: 3600, childRekeyS: 1800, dpdS: 30,
}
const base = { v: 1, session: 'ab'.repeat(12), device: 'd', user: 'u', expires: NOW + 60, mode: 'ipsec', ipsec }
const verifyRaw = (p: unknown): Descriptor => verifyDescriptor(signRaw(p), { keys: [relayPub], now: NOW, device: 'd' })

t.test('null fields inside a validly signed descriptor are refused with a code', async (t) => {
  t.doesNotThrow(() => verifyRaw(base))
  // Before: `"client": null` → TypeError reading 'id'.
  for (const side of ['client', 'terminal']) {
    for (const v of [null, 7, 'x', []]) {
      t.throws(() => verifyRaw({ ...base, ipsec: { ...ipsec, [side]: v } }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: new RegExp(`${side} must be an object`) }, `${side}: ${JSON.stringify(v)}`)
    }
  }
  t.throws(() => verifyRaw({ ...base, ipsec: null }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
  t.throws(() => verifyRaw(null), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
})

t.test('lifetimes and expiry that validate but fail later are refused', async (t) => {
  // 1e300 is an integer to Number.isInteger; charon would be handed "1e+300".
  t.throws(() => verifyRaw({ ...base, ipsec: { ...ipsec, ikeRekeyS: 1e300 } }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /ikeRekeyS must be an integer in \[1, 2592000\]/ })
  t.throws(() => verifyRaw({ ...base, ipsec: { ...ipsec, dpdS: 2 ** 31 } }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
  t.throws(() => verifyRaw({ ...base, expires: 2 ** 53 }), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /u32/ })
})

t.test('a small-order X25519 key in a sealed PSK is refused with a code', async (t) => {
  const { privateKey: agent } = generateKeyPairSync('x25519')
  const aad = randomBytes(12)
  t.ok(unseal(seal(Buffer.alloc(32, 1), publicKeyFromRaw('x25519', rawPublic(agent).toString('base64url')), aad), agent, aad).equals(Buffer.alloc(32, 1)))
  for (const point of ['00'.repeat(32), '01' + '00'.repeat(31), 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
    // Before: OpenSSL's "failed during derivation" escaped as a plain Error.
    t.throws(() => unseal(Buffer.concat([Buffer.from(point, 'hex'), randomBytes(48)]), agent, aad), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /small-order/ })
  }
})
