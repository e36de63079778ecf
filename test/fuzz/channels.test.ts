// Fuzz: SMS user data header and signal e-mail parsing.
import t from 'tap'
import fc from 'fast-check'
import { SIGNAL_PORT, decodeSms, encodeSms } from '../../src/channels/sms/udh.js'
import { composeSignalMail, tokenFromText } from '../../src/channels/mail/format.js'
import { bytes, check, contract } from './helpers.js'

t.test('SMS UDH', async (t) => {
  check(t, 'garbage', fc.property(bytes(150), fc.boolean(), (b, udh) => {
    if (udh && b.length > 8) b.set([6, 5, 4, SIGNAL_PORT >> 8, SIGNAL_PORT & 0xff], 0)
    contract(() => decodeSms(b), { codes: /^BECKON_ERR_SMS_MALFORMED$/, maxAlloc: 0 })
  }))
  check(t, 'round trip', fc.property(bytes(133), fc.integer({ min: 0, max: 65535 }), (p, port) => {
    if (!decodeSms(encodeSms(p, port), port).equals(p)) throw new Error('SMS round trip')
  }))
})

t.test('signal e-mail', async (t) => {
  const line = fc.oneof(fc.string({ maxLength: 200 }), bytes(130).map((b) => `Beckon-Token: ${b.toString('base64url')}`), fc.string({ maxLength: 300 }).map((s) => `Beckon-Token: ${s}`))
  check(t, 'texts', fc.property(fc.array(line, { maxLength: 5 }), fc.constantFrom('\n', '\r\n', '\r'), (lines, nl) =>
    contract(() => tokenFromText(lines.join(nl)), { codes: /^BECKON_ERR_MAIL_MALFORMED$/ })))
  check(t, 'round trip', fc.property(bytes(128).filter((b) => b.length > 0), (tok) => {
    if (!tokenFromText(composeSignalMail(tok, Buffer.alloc(12), 'x.example').text).equals(tok)) throw new Error('mail round trip')
  }))
})
