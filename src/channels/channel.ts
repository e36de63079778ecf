/**
 * How an access request signal leaves the relay. Each device names its channels in
 * order; the relay tries them one after the other until one accepts the token.
 */
import { BeckonError } from '../core/errors.js'
import type { SmsSender } from './sms/smpp.js'

export interface SignalAddress {
  msisdn?: string
  email?: string
}

export interface SignalChannel {
  readonly name: 'sms' | 'email'
  /** Hands the token to the channel; resolves with the channel's message id. */
  send (to: SignalAddress, token: Buffer, sessionId: Buffer): Promise<string>
}

export class SmsChannel implements SignalChannel {
  readonly name = 'sms'
  constructor (private readonly sender: SmsSender) {}

  async send (to: SignalAddress, token: Buffer): Promise<string> {
    if (to.msisdn === undefined) throw new BeckonError('BECKON_ERR_CHANNEL_UNAVAILABLE', 'device has no MSISDN')
    return await this.sender.sendSignal(to.msisdn, token)
  }
}

/** In-memory channel for unit tests: records what was sent, or fails on demand. */
export class MemoryChannel implements SignalChannel {
  readonly sent: Array<{ to: SignalAddress, token: Buffer }> = []
  failWith: BeckonError | undefined
  onSend: ((to: SignalAddress, token: Buffer) => void) | undefined

  constructor (readonly name: 'sms' | 'email') {}

  async send (to: SignalAddress, token: Buffer): Promise<string> {
    if (this.failWith !== undefined) throw this.failWith
    this.sent.push({ to, token })
    this.onSend?.(to, token)
    return String(this.sent.length)
  }
}
