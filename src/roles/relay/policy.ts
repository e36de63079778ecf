/**
 * Per-device access policy: which users or groups may reach which service of a device.
 * The relay enforces it before signalling anything; in IPsec mode the traffic
 * selectors enforce the port set again inside the tunnel.
 */
import { BeckonError } from '../../core/errors.js'
import type { Target } from '../../proto/connect/connect.js'
import type { User } from '../../directory/directory.js'
import { grantFor } from '../../ipsec/policy.js'
import type { Device, Policy } from '../../store/records.js'

/** What a policy grants one user in IPsec mode: the selectors' protocol and ports. */
export interface IpsecGrantable { protocol: 'tcp' | 'udp', ports: number[] }

/**
 * Decides a CONNECT from the device's policy (src/ipsec/policy.ts `grantFor`): IPsec
 * needs an IPsec grant, whose ports the selectors then carry; raw TCP needs the port
 * among the raw TCP grants. No policy, nobody.
 */
export function authorize (user: User, device: Device, policy: Policy | undefined, target: Target): IpsecGrantable | undefined {
  if (policy === undefined) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${device.name} has no policy`)
  const g = grantFor(policy, device, user)
  if (g.ipsec.length === 0 && g.rawTcp.length === 0) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not reach ${device.name}`)
  if (target.mode === 'ipsec') {
    if (g.ipsec.length === 0) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not open IPsec to ${device.name}`)
    return { protocol: g.protocol, ports: g.ipsec }
  }
  if (!g.rawTcp.includes(target.port)) {
    throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not reach ${device.name} port ${target.port}${policy.raw_tcp ? '' : ' (raw TCP is off for this device)'}`)
  }
  return undefined
}

/** A token bucket per key: `perMinute` sessions, refilled continuously. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (private readonly perMinute: number, private readonly now: () => number = Date.now) {}

  take (key: string): void {
    const t = this.now()
    const b = this.buckets.get(key) ?? { tokens: this.perMinute, at: t }
    b.tokens = Math.min(this.perMinute, b.tokens + ((t - b.at) / 60_000) * this.perMinute)
    b.at = t
    if (b.tokens < 1) throw new BeckonError('BECKON_ERR_RATE_LIMITED', `${key} exceeded ${this.perMinute} sessions per minute`)
    b.tokens -= 1
    this.buckets.set(key, b)
    if (this.buckets.size > 100_000) this.buckets.clear()
  }
}
