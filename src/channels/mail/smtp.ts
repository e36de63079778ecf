/**
 * Sending signals by e-mail: SMTP submission (RFC 6409) with STARTTLS required and SMTP
 * AUTH, through nodemailer. One pooled transport per relay.
 */
import nodemailer, { type Transporter } from 'nodemailer'
import { BeckonError } from '../../core/errors.js'
import type { SignalAddress, SignalChannel } from '../channel.js'
import { composeSignalMail } from './format.js'

export interface SmtpOptions {
  host: string
  port: number
  /** Implicit TLS (465); otherwise STARTTLS, which is then required. */
  secure: boolean
  user: string
  password: string
  from: string
  ca?: Buffer
  /** Message-ID domain. */
  domain: string
  timeoutMs?: number
}

export class MailChannel implements SignalChannel {
  readonly name = 'email'
  private readonly tx: Transporter

  constructor (private readonly o: SmtpOptions) {
    this.tx = nodemailer.createTransport({
      host: o.host,
      port: o.port,
      secure: o.secure,
      requireTLS: !o.secure,
      tls: { ca: o.ca, servername: o.host },
      auth: { user: o.user, pass: o.password },
      pool: true,
      maxConnections: 2,
      connectionTimeout: o.timeoutMs ?? 5_000,
      greetingTimeout: o.timeoutMs ?? 5_000,
      socketTimeout: o.timeoutMs ?? 10_000,
    })
  }

  async send (to: SignalAddress, token: Buffer, sessionId: Buffer): Promise<string> {
    if (to.email === undefined) throw new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', 'device has no e-mail address')
    const m = composeSignalMail(token, sessionId, this.o.domain)
    try {
      const r = await this.tx.sendMail({ from: this.o.from, to: to.email, subject: m.subject, text: m.text, messageId: m.messageId, headers: m.headers })
      return r.messageId
    } catch (err) {
      const e = err as { code?: string, responseCode?: number, message: string }
      // 5xx from the server is a refusal; anything else (connect, TLS, timeouts) an outage.
      const code = e.responseCode !== undefined && e.responseCode >= 500 ? 'BECKON_ERR_CHANNEL_REFUSED' : 'BECKON_ERR_CHANNEL_UNAVAILABLE'
      throw new BeckonError(code, `SMTP ${this.o.host}:${this.o.port}: ${e.message}`)
    }
  }

  close (): void { this.tx.close() }
}
