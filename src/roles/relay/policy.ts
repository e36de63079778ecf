/**
 * Per-device access policy: which users or groups may reach which service of a device.
 * The relay enforces it before signalling anything; in IPsec mode the traffic
 * selectors enforce the port set again inside the tunnel.
 */
import { BeckonError } from '../../core/errors.js'
import type { Target } from '../../proto/connect/connect.js'
import type { User } from '../../directory/directory.js'
import type { DeviceConfig, PolicyRule } from './config.js'

function applies (rule: PolicyRule, user: User): boolean {
  return rule.users.includes(user.name) || rule.groups.some((g) => user.groups.includes(g))
}

export function authorize (user: User, device: DeviceConfig, target: Target): void {
  const rules = device.allow.filter((r) => applies(r, user))
  if (rules.length === 0) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not reach ${device.name}`)
  if (target.mode === 'ipsec') {
    if (!rules.some((r) => r.ipsec)) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not open IPsec to ${device.name}`)
    return
  }
  if (!rules.some((r) => r.tcp.includes(target.port))) {
    throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} may not reach ${device.name} port ${target.port}`)
  }
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
