// Fuzz: the session descriptor frame, its JSON payload (signed or not) and the sealed PSK.
import t from 'tap'
import fc from 'fast-check'
import { generateKeyPairSync, sign } from 'node:crypto'
import { parseDescriptorFrame, verifyDescriptor } from '../../src/proto/descriptor/descriptor.js'
import { unseal } from '../../src/proto/descriptor/seal.js'
import { RUNS, bytes, check, contract } from './helpers.js'

const relay = generateKeyPairSync('ed25519')
const agent = generateKeyPairSync('x25519')
const NOW = 1_900_000_000

function signed (payload: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(payload) ?? 'null')
  const head = Buffer.alloc(6); head.write('BKD1'); head.writeUInt16BE(Math.min(body.length, 65535), 4)
  const s = Buffer.concat([head, body])
  return Buffer.concat([s, sign(null, s, relay.privateKey)])
}

/** Descriptor-shaped JSON with any field replaced by anything (null included). */
const shaped = fc.record({
  v: fc.oneof(fc.constant(1), fc.jsonValue()),
  session: fc.oneof(fc.constant('ab'.repeat(12)), fc.jsonValue()),
  device: fc.oneof(fc.constant('d'), fc.jsonValue()),
  user: fc.oneof(fc.constant('u'), fc.jsonValue()),
  expires: fc.oneof(fc.constant(NOW + 60), fc.jsonValue(), fc.double()),
  mode: fc.oneof(fc.constantFrom('tcp', 'ipsec'), fc.jsonValue()),
  port: fc.oneof(fc.constant(80), fc.jsonValue()),
  ipsec: fc.oneof(fc.jsonValue(), fc.record({
    auth: fc.oneof(fc.constantFrom('psk', 'pubkey'), fc.jsonValue()),
    client: fc.oneof(fc.constant({ id: 'c', address: 'fd00::1' }), fc.jsonValue()),
    terminal: fc.oneof(fc.constant({ id: 't', address: 'fd00::2' }), fc.jsonValue()),
    protocol: fc.oneof(fc.constantFrom('tcp', 'udp', 'any'), fc.jsonValue()),
    ports: fc.oneof(fc.constant([80]), fc.jsonValue()),
    ikeProposals: fc.oneof(fc.constant(['aes256-sha256-x25519']), fc.jsonValue()),
    espProposals: fc.oneof(fc.constant(['aes256gcm16']), fc.jsonValue()),
    ikeRekeyS: fc.oneof(fc.constant(3600), fc.jsonValue(), fc.double()),
    childRekeyS: fc.oneof(fc.constant(1800), fc.jsonValue()),
    dpdS: fc.oneof(fc.constant(30), fc.jsonValue()),
    pskSealed: fc.oneof(fc.jsonValue(), fc.string()),
  }, { requiredKeys: [] })),
}, { requiredKeys: [] })

t.test('frames: garbage is coded', async (t) => {
  check(t, 'frame bytes', fc.property(bytes(300), fc.boolean(), (b, magic) => {
    if (magic && b.length >= 6) { b.write('BKD1'); b.writeUInt16BE(Math.max(0, b.length - 70), 4) }
    contract(() => parseDescriptorFrame(b), { codes: /^BECKON_ERR_DESCRIPTOR_INVALID$/, maxAlloc: 8192 + 70 })
    contract(() => verifyDescriptor(b, { keys: [relay.publicKey], now: NOW, device: 'd' }), { codes: /^BECKON_ERR_DESCRIPTOR_INVALID$/, maxAlloc: 8192 + 70 })
  }))
})

t.test('validly signed payloads of any shape: coded errors only', async (t) => {
  check(t, 'signed shapes', fc.property(fc.oneof(shaped, fc.jsonValue()), (p) => {
    const frame = signed(p)
    contract(() => verifyDescriptor(frame, { keys: [relay.publicKey], now: NOW, device: 'd' }), { codes: /^BECKON_ERR_DESCRIPTOR_INVALID$/ })
  }))
})

t.test('sealed PSK: any bytes, small-order keys included, are coded', async (t) => {
  const small = fc.constantFrom('00'.repeat(32), '01' + '00'.repeat(31), 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800').map((h) => Buffer.from(h, 'hex'))
  check(t, 'sealed', fc.property(fc.oneof(bytes(120), fc.tuple(small, bytes(60)).map(([k, r]) => Buffer.concat([k, r]))), bytes(12), (b, aad) => {
    contract(() => unseal(b, agent.privateKey, aad), { codes: /^BECKON_ERR_DESCRIPTOR_INVALID$/, maxAlloc: 256 })
  }), { numRuns: Math.max(1000, RUNS) })
})
