// Signal tokens: round-trips, size budget, forged/expired/replayed/truncated/garbage.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { BeckonError } from '../../../../src/core/errors.js'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../../src/core/keys.js'
import {
  MAX_TOKEN, ReplayCache, Tunnel, checkDialbackProof, dialbackProof, keyId, openSignal, sealSignal, type Signal,
} from '../../../../src/proto/signal/token.js'
import { rng, randInt, randBytes, seedOf } from '../../../helpers/random.js'
import { decodeSms, encodeSms } from '../../../../src/channels/sms/udh.js'

const seed = seedOf()
t.comment(`seed ${seed}`)
const r = rng(seed)

const pair = (): { priv: ReturnType<typeof privateKeyFromRaw>, pub: ReturnType<typeof publicKeyFromRaw> } => {
  const k = generateRawKeyPair('x25519')
  return { priv: privateKeyFromRaw('x25519', k.privateKey), pub: publicKeyFromRaw('x25519', k.publicKey) }
}
const relay = pair()
const gateway = pair()
const NOW = 1_900_000_000
const open = (tok: Buffer, now = NOW): Signal => openSignal(tok, { gatewayPrivate: gateway.priv, relays: [relay.pub], now })

function sig (over: Partial<Signal> = {}): Signal {
  return {
    tunnel: Tunnel.IPSEC,
    relayAddress: '2001:db8::20',
    dialbackPort: 7001,
    sessionId: randomBytes(12),
    expiry: NOW + 120,
    sessionKey: randomBytes(32),
    refKind: 'msisdn',
    reference: '+15550100',
    ...over,
  }
}

t.test('random signals round-trip and stay within one SMS', async (t) => {
  const addrs = ['198.51.100.20', '203.0.113.1', '2001:db8::20', 'fd00:beef::1', '::1', 'fd00:1:2:3:4:5:6:7', '2001:db8:0:0:1::1']
  for (let i = 0; i < 300; i++) {
    const relayAddress = addrs[randInt(r, 0, addrs.length - 1)]!
    const max = relayAddress.includes(':') ? 29 : 41
    const reference = Array.from({ length: randInt(r, 0, max) }, () => String.fromCharCode(randInt(r, 0x21, 0x7e))).join('')
    const s = sig({ relayAddress, reference, tunnel: randInt(r, 1, 2), refKind: r() < 0.5 ? 'email' : 'msisdn', dialbackPort: randInt(r, 1, 65535) })
    const tok = sealSignal(s, relay.priv, gateway.pub)
    if (tok.length > MAX_TOKEN) t.fail(`token of ${tok.length} bytes`)
    const back = open(tok)
    t.same({ ...back, relayAddress: undefined }, { ...s, relayAddress: undefined }, 'fields', { diagnostic: false })
    if (relayAddress !== '2001:db8:0:0:1::1') t.equal(back.relayAddress, relayAddress, 'address', { diagnostic: false })
  }
  t.equal(open(sealSignal(sig({ relayAddress: '2001:db8:0:0:1::1' }), relay.priv, gateway.pub)).relayAddress, '2001:db8::1:0:0:1', 'RFC 5952 form')
})

t.test('the largest token sealSignal accepts fits one SMS with its port header', async (t) => {
  // The biggest signals: the longest reference that fits, for each relay family.
  for (const [relayAddress, max] of [['2001:db8::20', 29], ['198.51.100.20', 41]] as const) {
    const tok = sealSignal(sig({ relayAddress, reference: 'x'.repeat(max) }), relay.priv, gateway.pub)
    t.equal(tok.length, MAX_TOKEN, `${relayAddress}: a ${max}-byte reference fills the token exactly`)
    t.ok(encodeSms(tok).length <= 140, `${relayAddress}: UDH + token in one SMS`)
    t.ok(decodeSms(encodeSms(tok)).equals(tok))
  }
})

t.test('a reference too long for one SMS is refused when sealing', async (t) => {
  t.throws(() => sealSignal(sig({ reference: 'x'.repeat(30) }), relay.priv, gateway.pub), { code: 'BECKON_ERR_SIGNAL_TOO_LARGE', message: /at most 29 fit/ })
  t.doesNotThrow(() => sealSignal(sig({ reference: 'x'.repeat(41), relayAddress: '198.51.100.20' }), relay.priv, gateway.pub))
  t.throws(() => sealSignal(sig({ reference: 'has space' }), relay.priv, gateway.pub), { code: 'BECKON_ERR_SIGNAL_MALFORMED' })
  t.throws(() => sealSignal(sig({ relayAddress: 'relay.example' }), relay.priv, gateway.pub), { code: 'BECKON_ERR_SIGNAL_MALFORMED', message: /not an IP address/ })
  t.throws(() => sealSignal(sig({ dialbackPort: 0 }), relay.priv, gateway.pub), { code: 'BECKON_ERR_SIGNAL_MALFORMED' })
})

t.test('every single-bit flip is refused as forged (or malformed header)', async (t) => {
  const tok = sealSignal(sig(), relay.priv, gateway.pub)
  const codes = new Set<string>()
  for (let bit = 0; bit < tok.length * 8; bit++) {
    const bad = Buffer.from(tok)
    bad[bit >> 3]! ^= 1 << (bit & 7)
    try {
      open(bad)
      t.fail(`bit ${bit} flipped and still accepted`)
    } catch (err) {
      if (!(err instanceof BeckonError)) { t.fail(String(err)); continue }
      codes.add(err.code)
    }
  }
  t.same([...codes].sort(), ['BECKON_ERR_SIGNAL_FORGED', 'BECKON_ERR_SIGNAL_MALFORMED', 'BECKON_ERR_SIGNAL_UNKNOWN_KEY'])
})

t.test('a token sealed by another relay key, or for another gateway, is refused', async (t) => {
  const other = pair()
  t.throws(() => open(sealSignal(sig(), other.priv, gateway.pub)), { code: 'BECKON_ERR_SIGNAL_UNKNOWN_KEY' })
  const otherGw = pair()
  t.throws(() => open(sealSignal(sig(), relay.priv, otherGw.pub)), { code: 'BECKON_ERR_SIGNAL_FORGED' })
})

t.test('expired and too-far-future tokens are refused', async (t) => {
  t.throws(() => open(sealSignal(sig({ expiry: NOW }), relay.priv, gateway.pub)), { code: 'BECKON_ERR_SIGNAL_EXPIRED', message: /expired 0 s ago/ })
  t.throws(() => open(sealSignal(sig({ expiry: NOW - 60 }), relay.priv, gateway.pub)), { code: 'BECKON_ERR_SIGNAL_EXPIRED' })
  t.throws(() => open(sealSignal(sig({ expiry: NOW + 7200 }), relay.priv, gateway.pub)), { code: 'BECKON_ERR_SIGNAL_EXPIRED', message: /maximum/ })
})

t.test('truncations and garbage are coded, never a crash', async (t) => {
  const tok = sealSignal(sig(), relay.priv, gateway.pub)
  for (let n = 0; n < tok.length; n++) {
    try {
      open(tok.subarray(0, n))
      t.fail(`prefix ${n} accepted`)
    } catch (e) {
      if (!(e instanceof BeckonError) || !e.code.startsWith('BECKON_ERR_SIGNAL_')) t.fail(`prefix ${n}: uncoded ${String(e)}`)
    }
  }
  t.throws(() => open(Buffer.concat([tok, Buffer.from([0])])), { code: 'BECKON_ERR_SIGNAL_FORGED' })
  t.throws(() => open(Buffer.alloc(200)), { code: 'BECKON_ERR_SIGNAL_MALFORMED', message: /exceeds 128/ })
  for (let i = 0; i < 2000; i++) {
    const g = randBytes(r, randInt(r, 0, 140))
    if (r() < 0.5 && g.length > 0) g[0] = 1
    try { open(g) } catch (e) {
      if (!(e instanceof BeckonError) || !e.code.startsWith('BECKON_ERR_SIGNAL_')) t.fail(`uncoded: ${String(e)}`)
    }
  }
  t.pass('2000 garbage tokens refused with coded errors')
})

t.test('replay cache admits once, forgets after expiry, refuses when full', async (t) => {
  const c = new ReplayCache(3)
  const id = randomBytes(12)
  c.admit(id, NOW + 10, NOW)
  t.throws(() => c.admit(id, NOW + 10, NOW), { code: 'BECKON_ERR_SIGNAL_REPLAYED' })
  c.admit(randomBytes(12), NOW + 5, NOW)
  c.admit(randomBytes(12), NOW + 5, NOW)
  t.throws(() => c.admit(randomBytes(12), NOW + 5, NOW), { code: 'BECKON_ERR_SIGNAL_REPLAYED', message: /cache full/ })
  c.admit(randomBytes(12), NOW + 20, NOW + 6) // prune frees the two expired entries
  t.equal(c.size, 2)
  t.throws(() => c.admit(id, NOW + 10, NOW + 6), { code: 'BECKON_ERR_SIGNAL_REPLAYED' }, 'the unexpired id is still refused')
  // Persistence across restarts is the gateway's (production code loads it at start):
  // test/unit/roles/gateway.test.ts restarts a Gateway on the same state directory.
})

t.test('dial-back proof checks', async (t) => {
  const k = randomBytes(32); const id = randomBytes(12)
  const p = dialbackProof(k, id)
  t.ok(checkDialbackProof(k, id, p))
  t.notOk(checkDialbackProof(k, randomBytes(12), p))
  t.notOk(checkDialbackProof(randomBytes(32), id, p))
  t.notOk(checkDialbackProof(k, id, p.subarray(0, 31)))
})

t.test('a small-order X25519 relay key is refused with a code, not an OpenSSL error', async (t) => {
  for (const point of ['00'.repeat(32), '01' + '00'.repeat(31), 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
    const bad = publicKeyFromRaw('x25519', Buffer.from(point, 'hex').toString('base64url'))
    const tok = sealSignal(sig(), relay.priv, gateway.pub)
    // The token names the bad key's id, as a relay configured with it would.
    tok.writeUInt16BE(keyId(bad), 1)
    t.throws(() => openSignal(tok, { gatewayPrivate: gateway.priv, relays: [bad], now: NOW }), { code: 'BECKON_ERR_SIGNAL_UNKNOWN_KEY', message: /small order/ })
    t.throws(() => sealSignal(sig(), relay.priv, bad), { code: 'BECKON_ERR_SIGNAL_UNKNOWN_KEY' })
  }
})
