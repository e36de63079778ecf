// Fuzz: the signal token (sealed and plaintext), dial-back hello/ack.
import t from 'tap'
import fc from 'fast-check'
import { generateKeyPairSync } from 'node:crypto'
import { Tunnel, decodePlaintext, encodePlaintext, openSignal, sealSignal, type Signal } from '../../src/proto/signal/token.js'
import { ACK_SIZE, HELLO_SIZE, decodeAck, decodeHello, encodeAck, encodeHello } from '../../src/proto/dialback/dialback.js'
import { bytes, check, contract } from './helpers.js'

const relay = generateKeyPairSync('x25519')
const gateway = generateKeyPairSync('x25519')
const NOW = 1_900_000_000

const signal: fc.Arbitrary<Signal> = fc.record({
  tunnel: fc.constantFrom(Tunnel.TCP, Tunnel.IPSEC),
  relayAddress: fc.oneof(fc.ipV4(), fc.ipV6().filter((a) => !a.includes('.'))),
  dialbackPort: fc.integer({ min: 1, max: 65535 }),
  sessionId: fc.uint8Array({ minLength: 12, maxLength: 12 }).map((a) => Buffer.from(a)),
  expiry: fc.integer({ min: NOW + 1, max: NOW + 3600 }),
  sessionKey: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a)),
  refKind: fc.constantFrom('msisdn' as const, 'email' as const),
  reference: fc.string({ maxLength: 29 }).filter((s) => /^[\x21-\x7e]*$/.test(s)),
})

t.test('openSignal: garbage tokens give coded errors only', async (t) => {
  check(t, 'tokens', fc.property(bytes(140), fc.boolean(), (b, versioned) => {
    if (versioned && b.length > 0) b[0] = 1
    contract(() => openSignal(b, { gatewayPrivate: gateway.privateKey, relays: [relay.publicKey], now: NOW }), { codes: /^BECKON_ERR_SIGNAL_/, maxAlloc: 256 })
  }))
})

t.test('plaintext: decode garbage coded; encode → decode round-trips', async (t) => {
  check(t, 'plaintext garbage', fc.property(bytes(120), (b) => contract(() => decodePlaintext(b), { codes: /^BECKON_ERR_SIGNAL_/, maxAlloc: 256 })))
  check(t, 'round trip', fc.property(signal, (s) => {
    let enc: Buffer | undefined
    contract(() => { enc = encodePlaintext(s) }, { codes: /^BECKON_ERR_SIGNAL_TOO_LARGE$/ })
    if (enc === undefined) return
    const back = decodePlaintext(enc)
    if (!encodePlaintext(back).equals(enc)) throw new Error('plaintext round trip changed the bytes')
    const opened = openSignal(sealSignal(s, relay.privateKey, gateway.publicKey), { gatewayPrivate: gateway.privateKey, relays: [relay.publicKey], now: NOW })
    if (!encodePlaintext(opened).equals(enc)) throw new Error('seal/open changed the signal')
  }), { numRuns: 500 })
})

t.test('dial-back hello and ack', async (t) => {
  check(t, 'hello garbage', fc.property(bytes(60), fc.boolean(), (b, magic) => {
    if (magic && b.length >= 5) { b.write('BKDB'); b[4] = 1 }
    contract(() => decodeHello(b), { codes: /^BECKON_ERR_PROTOCOL$/, maxAlloc: HELLO_SIZE })
  }))
  check(t, 'ack garbage', fc.property(bytes(8), (b) => contract(() => decodeAck(b), { codes: /^BECKON_ERR_PROTOCOL$/, maxAlloc: ACK_SIZE })))
  check(t, 'hello round trip', fc.property(fc.constantFrom(0, 1), fc.uint8Array({ minLength: 12, maxLength: 12 }).map((a) => Buffer.from(a)), fc.uint8Array({ minLength: 32, maxLength: 32 }), (status, sessionId, proof) => {
    const h = decodeHello(encodeHello({ status, sessionId, proof: Buffer.from(proof) }))
    if (h.status !== status || !h.sessionId.equals(sessionId) || !h.proof.equals(Buffer.from(proof))) throw new Error('hello round trip')
    if (decodeAck(encodeAck(status === 0)) !== (status === 0)) throw new Error('ack round trip')
  }))
})
