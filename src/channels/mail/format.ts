/**
 * The access request signal as an e-mail (the same sealed token as in the SMS):
 *
 *   From: <relay sender>        To: <the gateway's mailbox>
 *   Subject: Beckon access request
 *   Message-ID: <session id hex>@<domain>       ties the mail to the session
 *   X-Beckon-Signal: 1
 *   body:  Beckon-Token: <base64url token>     (one line; nothing else is read)
 *
 * Parsing is strict: exactly one token line, base64url, ≤ 128 bytes decoded; anything
 * else is BECKON_ERR_MAIL_MALFORMED and the message goes to quarantine.
 */
import { BeckonError } from '../../core/errors.js'
import { MAX_TOKEN } from '../../proto/signal/token.js'

export const SUBJECT = 'Beckon access request'
const LINE = /^Beckon-Token: ([A-Za-z0-9_-]{1,200})\s*$/gm

export interface SignalMail {
  subject: string
  text: string
  messageId: string
  headers: Record<string, string>
}

export function composeSignalMail (token: Buffer, sessionId: Buffer, domain: string): SignalMail {
  return {
    subject: SUBJECT,
    text: `This message asks a Beckon gateway to open a path to a terminal.\r\n\r\nBeckon-Token: ${token.toString('base64url')}\r\n`,
    messageId: `<${sessionId.toString('hex')}@${domain}>`,
    headers: { 'X-Beckon-Signal': '1' },
  }
}

/** The token carried by a received message's text, or BECKON_ERR_MAIL_MALFORMED. */
export function tokenFromText (text: string | undefined): Buffer {
  if (text === undefined || text === '') throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', 'message has no text part')
  const found = [...text.matchAll(LINE)]
  if (found.length === 0) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', 'no Beckon-Token line')
  if (found.length > 1) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', `${found.length} Beckon-Token lines`)
  const token = Buffer.from(found[0]![1]!, 'base64url')
  if (token.toString('base64url') !== found[0]![1]) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', 'token is not canonical base64url')
  if (token.length > MAX_TOKEN) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', `token of ${token.length} bytes exceeds ${MAX_TOKEN}`)
  return token
}
