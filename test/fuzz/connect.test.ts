// Fuzz: HTTP CONNECT target and Proxy-Authorization parsing.
import t from 'tap'
import fc from 'fast-check'
import { basicAuth, parseProxyAuthorization, parseTarget } from '../../src/proto/connect/connect.js'
import { check, contract } from './helpers.js'

const text = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.stringMatching(/^[a-z0-9-]{0,70}:(\d{0,7}|ipsec)$/))

t.test('parseTarget', async (t) => {
  check(t, 'authority', fc.property(text, (s) => contract(() => {
    const r = parseTarget(s)
    if (r.mode === 'tcp' && !(r.port >= 1 && r.port <= 65535)) throw new Error(`port ${r.port} accepted`)
  }, { codes: /^BECKON_ERR_BAD_REQUEST$/ })))
})

t.test('parseProxyAuthorization: coded errors only; Basic round-trips', async (t) => {
  check(t, 'header', fc.property(fc.oneof(text, text.map((s) => `Basic ${s}`), text.map((s) => `Basic ${Buffer.from(s).toString('base64')}`)), (h) =>
    contract(() => parseProxyAuthorization(h), { codes: /^BECKON_ERR_AUTH_FAILED$/, maxAlloc: 4 * h.length + 64 })))
  check(t, 'basic round trip', fc.property(fc.string({ minLength: 1, maxLength: 40 }).filter((u) => !u.includes(':') && Buffer.from(u).toString() === u), fc.string({ maxLength: 40 }).filter((p) => Buffer.from(p).toString() === p), (user, password) => {
    const c = parseProxyAuthorization(basicAuth(user, password))
    if (c?.scheme !== 'basic' || c.user !== user || c.password !== password) throw new Error('Basic round trip')
  }))
})
