/**
 * Rules every Store back end applies the same way: what an audit entry may show of a
 * record, the order an import writes kinds in, action filters and page sizes.
 */
import type { ImportBundle, Kind, Kinds } from './store.js'

/** Audit copies never hold secrets: a token's hash, the directory's bind password. */
export function auditCopy (kind: Kind, v: unknown): unknown {
  if (v === undefined || v === null || typeof v !== 'object') return v
  if (kind === 'token') {
    const { hash: _hash, ...rest } = v as Kinds['token']
    return rest
  }
  if (kind === 'setting' && 'bind_password' in v) return { ...v, bind_password: '[redacted]' }
  return v
}

type ImportKind = 'gateway' | 'group' | 'user' | 'device' | 'policy'

/** References point backwards in this order: devices name gateways, policies name devices. */
export function importOrder (b: ImportBundle): Array<[ImportKind, Array<[string, unknown]>]> {
  const named = <T extends { name: string }>(xs: T[] | undefined): Array<[string, unknown]> => (xs ?? []).map((x) => [x.name, x])
  return [
    ['gateway', named(b.gateways)],
    ['group', named(b.groups)],
    ['user', named(b.users)],
    ['device', named(b.devices)],
    ['policy', Object.entries(b.policies ?? {})],
  ]
}

/** Exact action, or every action under a prefix that ends in '.'. */
export function matchesAction (action: string, filter: string | undefined): boolean {
  if (filter === undefined) return true
  return filter.endsWith('.') ? action.startsWith(filter) : action === filter
}

export function pageLimit (limit: number | undefined): number {
  return Math.min(500, Math.max(1, Math.floor(limit ?? 100)))
}

export type { Kinds }
