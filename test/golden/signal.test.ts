// Golden vectors for the access request signal. The sealed vector was reproduced with an
// independent implementation (Python cryptography: X25519, HKDF-SHA256, ChaCha20-Poly1305).
import t from 'tap'
import { privateKeyFromRaw, publicKeyFromRaw, rawPublic } from '../../src/core/keys.js'
import { Tunnel, decodePlaintext, encodePlaintext, openSignal, sealSignal, dialbackProof, type Signal } from '../../src/proto/signal/token.js'

const hex = (s: string): string => s.replace(/#.*$/gm, '').replace(/\s+/g, '')
const relay = privateKeyFromRaw('x25519', Buffer.alloc(32, 1).toString('base64url'))
const gateway = privateKeyFromRaw('x25519', Buffer.alloc(32, 2).toString('base64url'))
const gatewayPub = publicKeyFromRaw('x25519', rawPublic(gateway).toString('base64url'))
const relayPub = publicKeyFromRaw('x25519', rawPublic(relay).toString('base64url'))

const signal: Signal = {
  tunnel: Tunnel.TCP,
  relayAddress: '198.51.100.20',
  dialbackPort: 7001,
  sessionId: Buffer.alloc(12, 0xaa),
  expiry: 1_800_000_000,
  sessionKey: Buffer.alloc(32, 0x55),
  refKind: 'msisdn',
  reference: '+15550100',
}

t.test('plaintext layout', async (t) => {
  const want = hex(`
    01                              # flags: tunnel 1 (tcp), IPv4 relay, MSISDN reference
    c6336414                        # relay 198.51.100.20
    1b59                            # dial-back port 7001
    aaaaaaaaaaaaaaaaaaaaaaaa        # session id (12 bytes)
    6b49d200                        # expiry 1800000000
    5555555555555555555555555555555555555555555555555555555555555555  # session key
    09 2b3135353530313030           # reference length 9, "+15550100"
  `)
  t.equal(encodePlaintext(signal).toString('hex'), want)
  t.same(decodePlaintext(Buffer.from(want, 'hex')), signal)
})

t.test('sealed token (independently reproduced)', async (t) => {
  const want = hex(`
    01                              # version
    1a92                            # relay key id = SHA-256(relayPub)[0..2]
    0c0c0c0c0c0c0c0c0c0c0c0c        # nonce
    4d80d1af34ac76f0a83581c9f0c8371e1cb8ed16451f48fe3a24156fbf846098
    b5cc44ad3a1ed61e3abec8491c534adbbe168329ff0096edc03ab59a289614b2
    84                              # ciphertext (65 bytes, as the plaintext)
    97e64c3b050664974ca85e6af66b451c  # Poly1305 tag
  `)
  const token = sealSignal(signal, relay, gatewayPub, Buffer.alloc(12, 0x0c))
  t.equal(token.toString('hex'), want)
  t.equal(token.length, 96, '3 + 12 + 65 + 16 bytes')
  t.same(openSignal(token, { gatewayPrivate: gateway, relays: [relayPub], now: 1_799_999_000 }), signal)
})

t.test('dial-back proof', async (t) => {
  // HMAC-SHA256(key = 0x55×32, "beckon-dialback-v1" ‖ 0xaa×12), computed with Python's hmac
  t.equal(dialbackProof(signal.sessionKey, signal.sessionId).toString('hex'),
    '325171cbd8e019d2c2cea806636592f16fd0b1421b963352db2839158c39647e')
})
