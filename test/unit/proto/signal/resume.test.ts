// Resuming a session: the resume signal (flag bit 6 of the token), the client's proof
// (Beckon-Resume header) and the resume / end descriptors.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../../src/core/keys.js'
import { ReplayCache, Tunnel, decodePlaintext, encodePlaintext, openSignal, sealSignal, MAX_TOKEN, type Signal } from '../../../../src/proto/signal/token.js'
import { RESUME_SKEW_MS, checkResume, parseResumeHeader, resumeHeader, resumeKey, resumeSecret } from '../../../../src/proto/signal/resume.js'
import { signDescriptor, verifyDescriptor, type Descriptor } from '../../../../src/proto/descriptor/descriptor.js'

const x = (): { priv: ReturnType<typeof privateKeyFromRaw>, pub: ReturnType<typeof publicKeyFromRaw> } => {
  const k = generateRawKeyPair('x25519')
  return { priv: privateKeyFromRaw('x25519', k.privateKey), pub: publicKeyFromRaw('x25519', k.publicKey) }
}
const relay = x()
const gateway = x()
const NOW = 1_900_000_000

const sig = (over: Partial<Signal> = {}): Signal => ({
  tunnel: Tunnel.IPSEC, relayAddress: '2001:db8::20', dialbackPort: 7001, sessionId: randomBytes(12), expiry: NOW + 120,
  sessionKey: randomBytes(32), refKind: 'msisdn', reference: '+15550100', ...over,
})

t.test('resume signal: bit 6 of the flags byte, round trip, same size budget', async (t) => {
  const s = sig({ resume: true })
  const plain = encodePlaintext(s)
  // 0x52 = 0x40 resume | 0x10 IPv6 relay | 0x02 ipsec
  t.equal(plain[0], 0x52, 'flags: resume | v6 | ipsec')
  t.same(decodePlaintext(plain), s)
  t.equal(encodePlaintext(sig())[0], 0x12, 'a fresh signal leaves bit 6 clear')
  t.notOk('resume' in decodePlaintext(encodePlaintext(sig())), 'and decodes without the flag')
  const longest = sig({ resume: true, reference: 'x'.repeat(29) })
  const tok = sealSignal(longest, relay.priv, gateway.pub)
  t.ok(tok.length <= MAX_TOKEN, `the longest resume token is ${tok.length} ≤ ${MAX_TOKEN} bytes`)
  const opened = openSignal(tok, { gatewayPrivate: gateway.priv, relays: [relay.pub], now: NOW })
  t.equal(opened.resume, true)
  t.throws(() => encodePlaintext(sig({ resume: true, tunnel: Tunnel.TCP })), { code: 'BECKON_ERR_SIGNAL_MALFORMED', message: /only IPsec/ })
  const tcp = encodePlaintext(sig({ tunnel: Tunnel.TCP }))
  tcp[0]! |= 0x40
  t.throws(() => decodePlaintext(tcp), { code: 'BECKON_ERR_SIGNAL_MALFORMED', message: /raw TCP/ })
  const reserved = Buffer.from(plain)
  reserved[0]! |= 0x80
  t.throws(() => decodePlaintext(reserved), { code: 'BECKON_ERR_SIGNAL_MALFORMED', message: /reserved/ })
})

t.test('a replayed resume signal is refused like any replay', async (t) => {
  const s = sig({ resume: true })
  const tok = sealSignal(s, relay.priv, gateway.pub)
  const cache = new ReplayCache()
  const o = openSignal(tok, { gatewayPrivate: gateway.priv, relays: [relay.pub], now: NOW })
  cache.admit(o.sessionId, o.expiry, NOW)
  const again = openSignal(tok, { gatewayPrivate: gateway.priv, relays: [relay.pub], now: NOW })
  t.throws(() => cache.admit(again.sessionId, again.expiry, NOW), { code: 'BECKON_ERR_SIGNAL_REPLAYED' })
  const flipped = Buffer.from(tok)
  flipped[20]! ^= 1
  t.throws(() => openSignal(flipped, { gatewayPrivate: gateway.priv, relays: [relay.pub], now: NOW }), { code: 'BECKON_ERR_SIGNAL_FORGED' }, 'the flag is inside the AEAD')
})

t.test('resume proof: right, wrong, stale, malformed', async (t) => {
  const ed = privateKeyFromRaw('ed25519', generateRawKeyPair('ed25519').privateKey)
  const key = resumeKey(ed)
  t.equal(key.length, 32)
  t.ok(resumeKey(ed).equals(key), 'deterministic: any relay with the signing key derives it')
  const id = randomBytes(12)
  const session = id.toString('hex')
  const secret = resumeSecret(key, id)
  const at = 1_700_000_000_000
  const h = resumeHeader(secret, session, at)
  t.match(h, new RegExp(`^${session}; t=${at}; proof=[A-Za-z0-9_-]{43}$`))
  const r = parseResumeHeader(h)
  t.equal(r.session, session)
  t.equal(r.at, at)
  t.doesNotThrow(() => checkResume(key, r, at + 1_000))
  t.throws(() => checkResume(key, r, at + RESUME_SKEW_MS + 1), { code: 'BECKON_ERR_RESUME_REFUSED', message: /clock/ })
  const other = resumeKey(privateKeyFromRaw('ed25519', generateRawKeyPair('ed25519').privateKey))
  t.throws(() => checkResume(other, r, at), { code: 'BECKON_ERR_RESUME_REFUSED', message: /wrong proof/ }, 'another deployment\'s relay')
  const wrongSession = parseResumeHeader(resumeHeader(secret, randomBytes(12).toString('hex'), at))
  t.throws(() => checkResume(key, wrongSession, at), { code: 'BECKON_ERR_RESUME_REFUSED' }, 'a secret for one session proves nothing for another')
  const shifted = parseResumeHeader(h.replace(`t=${at}`, `t=${at + 1}`))
  t.throws(() => checkResume(key, shifted, at), { code: 'BECKON_ERR_RESUME_REFUSED' }, 'the time is inside the MAC')
  for (const bad of ['', 'x', `${session}`, `${session}; t=1; proof=short`, `${'z'.repeat(24)}; t=1; proof=${'A'.repeat(43)}`, 'a'.repeat(300)]) {
    t.throws(() => parseResumeHeader(bad), { code: 'BECKON_ERR_RESUME_REFUSED' }, JSON.stringify(bad.slice(0, 40)))
  }
})

t.test('resume and end descriptors', async (t) => {
  const k = generateRawKeyPair('ed25519')
  const priv = privateKeyFromRaw('ed25519', k.privateKey)
  const opts = { keys: [publicKeyFromRaw('ed25519', k.publicKey)], now: NOW, device: 'patient-phone' }
  const d: Descriptor = { v: 1, session: 'ab'.repeat(12), resume: 'cd'.repeat(12), device: 'patient-phone', user: 'dr-grey', expires: NOW + 60, mode: 'ipsec' }
  t.same(verifyDescriptor(signDescriptor(d, priv), opts), d, 'a resume carries no ipsec parameters')
  t.same(verifyDescriptor(signDescriptor({ ...d, end: true }, priv), opts), { ...d, end: true })
  t.throws(() => signDescriptor({ ...d, mode: 'tcp', port: 80 }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /only IPsec/ })
  t.throws(() => signDescriptor({ ...d, resume: 'xyz' }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /resume/ })
  const { resume: _r, ...fresh } = d
  t.throws(() => signDescriptor({ ...fresh, mode: 'tcp', port: 80, end: true }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /end/ })
  t.throws(() => signDescriptor({ ...fresh, mode: 'tcp', port: 80, resumeS: -1 }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /resumeS/ })
  t.throws(() => signDescriptor({ ...d, ipsec: {} as never }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /no ipsec/ })
})
