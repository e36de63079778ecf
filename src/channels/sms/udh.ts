/**
 * 8-bit binary SMS with application port addressing (3GPP TS 23.040 §9.2.3.24.4).
 *
 *   short_message = UDHL ‖ IEs ‖ payload        (esm_class UDHI bit 0x40, data_coding 4)
 *   port IE        = 05 04 ‖ u16be destination port ‖ u16be source port
 *
 * The port lets a terminal or gateway that shares its number with other applications
 * tell our signals apart, as WAP push does with its own port.
 */
import { BeckonError } from '../../core/errors.js'

export const MAX_SMS_OCTETS = 140
/** Application port of Beckon signals. */
export const SIGNAL_PORT = 0x405a // 16474
const IEI_PORT16 = 0x05

export function encodeSms (payload: Buffer, port = SIGNAL_PORT): Buffer {
  const sms = Buffer.alloc(7 + payload.length)
  sms[0] = 6 // UDHL: one 6-byte IE
  sms[1] = IEI_PORT16
  sms[2] = 4
  sms.writeUInt16BE(port, 3)
  sms.writeUInt16BE(port, 5)
  payload.copy(sms, 7)
  if (sms.length > MAX_SMS_OCTETS) throw new BeckonError('BECKON_ERR_SIGNAL_TOO_LARGE', `SMS of ${sms.length} octets exceeds ${MAX_SMS_OCTETS}`)
  return sms
}

/** Returns the payload for our port; throws BECKON_ERR_SMS_MALFORMED otherwise. */
export function decodeSms (sms: Buffer, port = SIGNAL_PORT): Buffer {
  if (sms.length > MAX_SMS_OCTETS) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', `${sms.length} octets exceed ${MAX_SMS_OCTETS}`)
  if (sms.length < 1) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', 'empty message')
  const udhl = sms[0]!
  if (sms.length < 1 + udhl) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', 'user data header longer than the message')
  let dst: number | undefined
  for (let o = 1; o < 1 + udhl;) {
    if (o + 2 > 1 + udhl) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', 'truncated information element')
    const iei = sms[o]!
    const len = sms[o + 1]!
    if (o + 2 + len > 1 + udhl) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', `information element 0x${iei.toString(16)} overruns the header`)
    if (iei === IEI_PORT16 && len === 4) dst = sms.readUInt16BE(o + 2)
    o += 2 + len
  }
  if (dst === undefined) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', 'no application port addressing')
  if (dst !== port) throw new BeckonError('BECKON_ERR_SMS_MALFORMED', `destination port ${dst} is not the signal port ${port}`)
  return sms.subarray(1 + udhl)
}

/** smpp@0.5.1 splits a UDHI message into { udh: IE[], message }; put the octets back. */
export function rawShortMessage (sm: Buffer | { udh?: Buffer[], message: Buffer | string } | undefined): Buffer {
  if (sm === undefined) return Buffer.alloc(0)
  if (Buffer.isBuffer(sm)) return sm
  const body = Buffer.isBuffer(sm.message) ? sm.message : Buffer.from(sm.message, 'latin1')
  if (sm.udh === undefined || sm.udh.length === 0) return body
  const ies = Buffer.concat(sm.udh)
  return Buffer.concat([Buffer.from([ies.length]), ies, body])
}
