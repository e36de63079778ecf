/**
 * The gateway's dial-back to the relay (steps G/H), sent first on the new connection:
 *
 *   hello (50 bytes)
 *   0   4   "BKDB"
 *   4   u8  version = 1
 *   5   u8  status: 0 terminal connected · 1 terminal unreachable
 *   6   12  session id (from the signal)
 *   18  32  proof = HMAC-SHA256(session key, "beckon-dialback-v1" ‖ session id)
 *
 *   ack (5 bytes)   "BKAK" ‖ u8 result: 0 accepted (splice follows) · 1 refused
 *
 * The relay matches by session id, never by source address: the gateway sits behind
 * the carrier's NAT and several gateways may share an address.
 */
import { BeckonError } from '../../core/errors.js'

export const HELLO_SIZE = 50
export const ACK_SIZE = 5
const HELLO_MAGIC = Buffer.from('BKDB')
const ACK_MAGIC = Buffer.from('BKAK')

export enum DialbackStatus { CONNECTED = 0, UNREACHABLE = 1 }

export interface Hello {
  status: DialbackStatus
  sessionId: Buffer
  proof: Buffer
}

export function encodeHello (h: Hello): Buffer {
  const b = Buffer.alloc(HELLO_SIZE)
  HELLO_MAGIC.copy(b, 0)
  b[4] = 1
  b[5] = h.status
  h.sessionId.copy(b, 6)
  h.proof.copy(b, 18)
  return b
}

export function decodeHello (b: Buffer): Hello {
  if (b.length !== HELLO_SIZE) throw new BeckonError('BECKON_ERR_PROTOCOL', `dial-back hello of ${b.length} bytes`)
  if (!b.subarray(0, 4).equals(HELLO_MAGIC)) throw new BeckonError('BECKON_ERR_PROTOCOL', 'dial-back hello has a bad magic')
  if (b[4] !== 1) throw new BeckonError('BECKON_ERR_PROTOCOL', `dial-back version ${b[4]}`)
  const status = b[5]!
  if (status !== DialbackStatus.CONNECTED && status !== DialbackStatus.UNREACHABLE) throw new BeckonError('BECKON_ERR_PROTOCOL', `dial-back status ${status}`)
  return { status, sessionId: Buffer.from(b.subarray(6, 18)), proof: Buffer.from(b.subarray(18, 50)) }
}

export function encodeAck (accepted: boolean): Buffer {
  return Buffer.concat([ACK_MAGIC, Buffer.from([accepted ? 0 : 1])])
}

export function decodeAck (b: Buffer): boolean {
  if (b.length !== ACK_SIZE || !b.subarray(0, 4).equals(ACK_MAGIC) || b[4]! > 1) throw new BeckonError('BECKON_ERR_PROTOCOL', 'bad dial-back ack')
  return b[4] === 0
}
