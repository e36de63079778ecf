/**
 * Permanent IPv6 addresses from the deployment's ULA prefix (RFC 4193).
 *
 *   <prefix>/48 ‖ subnet (16 bits: 1 users, 2 devices) ‖ interface id (64 bits)
 *   interface id = SHA-256("beckon-permanent-v1" ‖ kind ‖ name)[0..8]
 *
 * Derived, not allocated: the same user or device gets the same address on every
 * relay, across sessions and restarts, with no shared state; an explicit address in
 * the config overrides it. Inner traffic is IPv6; the outer path stays IPv4.
 */
import { createHash } from 'node:crypto'
import { BeckonError } from '../core/errors.js'
import { ipBytes, ipString } from '../core/ip.js'

export type AddressKind = 'user' | 'device'
const SUBNET: Record<AddressKind, number> = { user: 1, device: 2 }

/** 16 bytes of an IPv6 address, or throws. */
export function ipv6Bytes (addr: string): Buffer {
  const b = ipBytes(addr)
  if (b?.length !== 16) throw new BeckonError('BECKON_ERR_CONFIG', `${addr} is not an IPv6 address`)
  return b
}

export { ipString as ipv6String }

/** Checks a ULA /48 such as fd00:beca::/48 and returns its first 6 bytes. */
export function ulaPrefix (prefix: string): Buffer {
  const m = /^([0-9a-f:]+)\/48$/i.exec(prefix)
  if (m === null) throw new BeckonError('BECKON_ERR_CONFIG', `ULA prefix ${prefix} must be a /48`)
  const b = ipv6Bytes(m[1]!)
  if (b[0] !== 0xfd) throw new BeckonError('BECKON_ERR_CONFIG', `ULA prefix ${prefix} must lie in fd00::/8`)
  if (!b.subarray(6).equals(Buffer.alloc(10))) throw new BeckonError('BECKON_ERR_CONFIG', `ULA prefix ${prefix} has host bits set`)
  return b.subarray(0, 6)
}

export function permanentAddress (prefix: string, kind: AddressKind, name: string): string {
  const b = Buffer.alloc(16)
  ulaPrefix(prefix).copy(b, 0)
  b.writeUInt16BE(SUBNET[kind], 6)
  createHash('sha256').update('beckon-permanent-v1').update(kind).update('\0').update(name).digest().copy(b, 8, 0, 8)
  return ipString(b)
}
