// Signal e-mails: composition and strict parsing.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { BeckonError } from '../../../../src/core/errors.js'
import { SUBJECT, composeSignalMail, tokenFromText } from '../../../../src/channels/mail/format.js'
import { rng, randBytes, randInt, seedOf } from '../../../helpers/random.js'

t.test('compose → parse round trip; Message-ID tied to the session', async (t) => {
  const token = randomBytes(100)
  const id = Buffer.alloc(12, 0xab)
  const m = composeSignalMail(token, id, 'lab.beckon.example')
  t.equal(m.subject, SUBJECT)
  t.equal(m.messageId, `<${'ab'.repeat(12)}@lab.beckon.example>`)
  t.same(m.headers, { 'X-Beckon-Signal': '1' })
  t.ok(tokenFromText(m.text).equals(token))
  t.ok(tokenFromText(`Hello\n\nBeckon-Token: ${token.toString('base64url')}\n-- \nsig`).equals(token), 'surrounding text is ignored')
})

t.test('malformed bodies are refused with BECKON_ERR_MAIL_MALFORMED', async (t) => {
  const tok = randomBytes(40).toString('base64url')
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no text', undefined, /no text part/],
    ['empty', '', /no text part/],
    ['no line', 'just words', /no Beckon-Token line/],
    ['two lines', `Beckon-Token: ${tok}\nBeckon-Token: ${tok}\n`, /2 Beckon-Token lines/],
    ['standard base64 chars', 'Beckon-Token: ab+c/d==\n', /no Beckon-Token line/],
    ['not canonical', 'Beckon-Token: AB\n', /canonical/],
    ['too long', `Beckon-Token: ${randomBytes(129).toString('base64url')}\n`, /exceeds 128/],
  ]
  for (const [what, text, re] of cases) t.throws(() => tokenFromText(text), { code: 'BECKON_ERR_MAIL_MALFORMED', message: re }, what)
  const seed = seedOf()
  const r = rng(seed)
  for (let i = 0; i < 2000; i++) {
    const text = randBytes(r, randInt(r, 0, 300)).toString('latin1')
    try { tokenFromText(r() < 0.3 ? `Beckon-Token: ${text}` : text) } catch (e) {
      if (!(e instanceof BeckonError) || e.code !== 'BECKON_ERR_MAIL_MALFORMED') t.fail(`uncoded: ${String(e)}`)
    }
  }
  t.pass(`2000 random bodies (seed ${seed}): coded errors only`)
})
