/**
 * Steps A/B, the client's half: `<device>.<zone>` → the relays to try, in order.
 *
 *   _beckon._tcp.<device>.<zone>  SRV  → (priority, weight, port, target) per relay
 *   target                        A/AAAA → the address to connect to
 *
 * Order (RFC 2782 "Usage rules"): lowest priority first; within one priority, a weighted
 * random order (records of weight 0 first in the running sum, each pick chosen with
 * probability weight / remaining total). A target that does not resolve is reported and
 * skipped, not fatal: the next relay may still answer.
 */
import { Resolver } from 'node:dns/promises'
import { BeckonError } from '../core/errors.js'
import { SRV_LABEL } from './publisher.js'

export interface SrvRecord { priority: number, weight: number, port: number, name: string }

export interface RelayTarget {
  /** The SRV target (the relay's host name, used for TLS server name checks). */
  name: string
  /** The address to connect to. */
  host: string
  port: number
  priority: number
  weight: number
}

/** What the lookup needs of a resolver; node's `dns.promises.Resolver` has it. */
export interface SrvResolver {
  resolveSrv (name: string): Promise<SrvRecord[]>
  resolve4 (name: string): Promise<string[]>
  resolve6 (name: string): Promise<string[]>
}

/** RFC 2782 ordering; `random` returns [0, 1). */
export function orderSrv<T extends { priority: number, weight: number }> (records: readonly T[], random: () => number = Math.random): T[] {
  const out: T[] = []
  const prios = [...new Set(records.map((r) => r.priority))].sort((a, b) => a - b)
  for (const p of prios) {
    // Weight-0 records first, then the rest, as the RFC arranges them before summing.
    const left = records.filter((r) => r.priority === p).sort((a, b) => (a.weight === 0 ? 0 : 1) - (b.weight === 0 ? 0 : 1))
    while (left.length > 0) {
      const total = left.reduce((s, r) => s + r.weight, 0)
      const pick = Math.floor(random() * (total + 1))
      let sum = 0
      let i = 0
      for (; i < left.length; i++) { sum += left[i]!.weight; if (sum >= pick) break }
      out.push(...left.splice(Math.min(i, left.length - 1), 1))
    }
  }
  return out
}

/** `patient-phone.lab.beckon.example` → device `patient-phone`, zone `lab.beckon.example`. */
export function splitTarget (fqdn: string): { device: string, zone: string } {
  const n = fqdn.replace(/\.$/, '')
  const i = n.indexOf('.')
  if (i <= 0 || i === n.length - 1) throw new BeckonError('BECKON_ERR_USAGE', `${fqdn} is not <device>.<zone>`)
  return { device: n.slice(0, i), zone: n.slice(i + 1) }
}

/** A resolver with a short per-try timeout (the namespace's /etc/resolv.conf servers). */
export function systemResolver (timeoutMs = 1_000): SrvResolver {
  return new Resolver({ timeout: timeoutMs, tries: 2 })
}

export interface ResolvedRelays {
  relays: RelayTarget[]
  /** Targets that named no address. */
  skipped: Array<{ name: string, port: number, reason: string }>
}

export async function resolveRelays (fqdn: string, resolver: SrvResolver = systemResolver(), random?: () => number): Promise<ResolvedRelays> {
  const { device, zone } = splitTarget(fqdn)
  const srvName = `${SRV_LABEL}.${device}.${zone}`
  let srv: SrvRecord[]
  try {
    srv = await resolver.resolveSrv(srvName)
  } catch (err) {
    throw new BeckonError('BECKON_ERR_DNS_LOOKUP', `SRV ${srvName}: ${(err as { code?: string }).code ?? (err as Error).message}`, { cause: err })
  }
  const relays: RelayTarget[] = []
  const skipped: ResolvedRelays['skipped'] = []
  for (const r of orderSrv(srv.filter((s) => s.name !== '' && s.name !== '.'), random)) {
    const addrs = (await resolver.resolve4(r.name).catch(() => [] as string[]))
    const v6 = addrs.length > 0 ? [] : await resolver.resolve6(r.name).catch(() => [] as string[])
    const host = addrs[0] ?? v6[0]
    if (host === undefined) { skipped.push({ name: r.name, port: r.port, reason: 'no A or AAAA record' }); continue }
    relays.push({ name: r.name, host, port: r.port, priority: r.priority, weight: r.weight })
  }
  if (relays.length === 0) throw new BeckonError('BECKON_ERR_DNS_LOOKUP', `SRV ${srvName} names no relay with an address${skipped.length > 0 ? ` (${skipped.map((s) => s.name).join(', ')}: no A or AAAA)` : ''}`)
  return { relays, skipped }
}
