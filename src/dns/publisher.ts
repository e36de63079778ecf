/**
 * Steps A/B of the rendezvous, the relay's half: publish each device of the store into the
 * deployment's DNS zone, so a client finds the relays and the device's permanent address.
 *
 *   _beckon._tcp.<device>.<zone>  SRV  <priority> <weight> <relay CONNECT port> <relay host>
 *                                       (one per relay, priority in config order)
 *   <device>.<zone>               AAAA <the device's permanent address>
 *   <relay host>                  A / AAAA <relay address>   (relay hosts inside the zone)
 *
 * At start the publisher transfers the zone (AXFR) and reconciles: what it owns and the
 * store no longer has goes, what is missing comes. Then, every second, it reads the
 * store's revision and, when it moved, sends only the difference. A failed update leaves
 * the next round to reconcile from a fresh transfer. What it owns: every name under
 * `_beckon._tcp.` in the zone, the AAAA of a device name that has such a record, and the
 * A/AAAA of configured relay hosts — nothing else an operator put in the zone.
 *
 * Each changed RRset is replaced whole (RFC 2136 §2.5.2 delete RRset, then §2.5.1 adds, in
 * one message: the server applies them in order, atomically).
 */
import { BeckonError, toBeckonError } from '../core/errors.js'
import { silentLogger, type Logger } from '../core/log.js'
import { ipBytes, ipString } from '../core/ip.js'
import type { Device } from '../store/records.js'
import type { Store } from '../store/store.js'
import { CLASS, TYPE, sameName, type RData, type Rr } from './codec.js'
import { HMAC_SHA256, type TsigKey } from './tsig.js'
import { ZoneClient, type Zone } from './update.js'

export interface DnsRelay {
  /** The relay's host name (the SRV target). */
  host: string
  /** Published as its A/AAAA when the host lies inside the zone. */
  address: string | undefined
  /** Its client (CONNECT) port. */
  port: number
  priority: number
  weight: number
}

/** relay.yaml `dns:` as parsed (src/roles/relay/config.ts). */
export interface DnsConfig {
  server: { host: string, port: number }
  zone: string
  tsig: { name: string, algorithm: typeof HMAC_SHA256, secret: Buffer }
  relays: DnsRelay[]
  ttl: number
}

export const SRV_LABEL = '_beckon._tcp'

/** One RRset, keyed `<owner lowercased>|<type>`. */
export interface RrSet { name: string, type: number, ttl: number, data: RData[] }
export type RecordSet = Map<string, RrSet>

const keyOf = (name: string, type: number): string => `${name.replace(/\.$/, '').toLowerCase()}|${type}`

function rdataKey (d: RData): string {
  switch (d.type) {
    case 'A': case 'AAAA': return ipString(ipBytes(d.address) ?? Buffer.alloc(0))
    case 'SRV': return `${d.priority} ${d.weight} ${d.port} ${d.target.replace(/\.$/, '').toLowerCase()}`
    case 'TXT': return d.strings.map((s) => s.toString('hex')).join(' ')
    default: return JSON.stringify(d)
  }
}

function add (set: RecordSet, name: string, type: number, ttl: number, data: RData): void {
  const k = keyOf(name, type)
  const cur = set.get(k)
  if (cur === undefined) set.set(k, { name, type, ttl, data: [data] })
  else if (!cur.data.some((d) => rdataKey(d) === rdataKey(data))) cur.data.push(data)
}

const under = (name: string, zone: string): boolean => name.toLowerCase().endsWith(`.${zone.toLowerCase()}`)

/** What the zone should hold for these devices (name → permanent address). */
export function desiredRecords (devices: Array<{ name: string, address: string }>, cfg: Pick<DnsConfig, 'zone' | 'relays' | 'ttl'>): RecordSet {
  const set: RecordSet = new Map()
  for (const d of devices) {
    for (const r of cfg.relays) add(set, `${SRV_LABEL}.${d.name}.${cfg.zone}`, TYPE.SRV, cfg.ttl, { type: 'SRV', priority: r.priority, weight: r.weight, port: r.port, target: r.host })
    add(set, `${d.name}.${cfg.zone}`, TYPE.AAAA, cfg.ttl, { type: 'AAAA', address: d.address })
  }
  for (const r of cfg.relays) {
    if (r.address === undefined || !under(r.host, cfg.zone)) continue
    add(set, r.host, r.address.includes(':') ? TYPE.AAAA : TYPE.A, cfg.ttl, { type: r.address.includes(':') ? 'AAAA' : 'A', address: r.address })
  }
  return set
}

/** The part of a transferred zone the publisher owns (see the module comment). */
export function ownedRecords (zoneRecords: Rr[], cfg: Pick<DnsConfig, 'zone' | 'relays'>): RecordSet {
  const set: RecordSet = new Map()
  const prefix = `${SRV_LABEL}.`.toLowerCase()
  const suffix = `.${cfg.zone}`.toLowerCase()
  const devices = new Set<string>()
  for (const r of zoneRecords) {
    const n = r.name.toLowerCase()
    if (n.startsWith(prefix) && n.endsWith(suffix)) {
      const label = n.slice(prefix.length, n.length - suffix.length)
      if (label !== '' && !label.includes('.')) devices.add(label)
    }
  }
  const relayHosts = cfg.relays.map((r) => r.host)
  for (const r of zoneRecords) {
    if (r.data === null || r.class !== CLASS.IN) continue
    const n = r.name.toLowerCase()
    const isSrvName = n.startsWith(prefix) && n.endsWith(suffix) && devices.has(n.slice(prefix.length, n.length - suffix.length))
    const isDevice = r.type === TYPE.AAAA && n.endsWith(suffix) && devices.has(n.slice(0, n.length - suffix.length))
    const isRelay = (r.type === TYPE.A || r.type === TYPE.AAAA) && relayHosts.some((h) => sameName(h, n))
    if (isSrvName || isDevice || isRelay) add(set, r.name, r.type, r.ttl, r.data)
  }
  return set
}

/**
 * The update records that turn `current` into `desired`, grouped per RRset (each group
 * must travel in one message: delete the RRset, then add its records).
 */
export function diffRecords (current: RecordSet, desired: RecordSet): Rr[][] {
  const groups: Rr[][] = []
  const same = (a: RrSet, b: RrSet): boolean => {
    if (a.ttl !== b.ttl || a.data.length !== b.data.length) return false
    const ka = new Set(a.data.map(rdataKey))
    return b.data.every((d) => ka.has(rdataKey(d)))
  }
  const del = (s: RrSet): Rr => ({ name: s.name, type: s.type, class: CLASS.ANY, ttl: 0, data: null })
  for (const [k, want] of desired) {
    const have = current.get(k)
    if (have !== undefined && same(have, want)) continue
    groups.push([...(have === undefined ? [] : [del(have)]), ...want.data.map((data) => ({ name: want.name, type: want.type, class: CLASS.IN, ttl: want.ttl, data }))])
  }
  for (const [k, have] of current) if (!desired.has(k)) groups.push([del(have)])
  return groups
}

/** Groups packed into messages of at most `max` records (a group is never split). */
export function batches (groups: Rr[][], max = 200): Rr[][] {
  const out: Rr[][] = []
  let cur: Rr[] = []
  for (const g of groups) {
    if (cur.length > 0 && cur.length + g.length > max) { out.push(cur); cur = [] }
    cur.push(...g)
  }
  if (cur.length > 0) out.push(cur)
  return out
}

export interface PublisherStatus {
  ok: boolean
  /** Epoch ms of the last successful reconcile or update. */
  lastOk?: number
  lastError?: string
  /** Records sent in the last round (0: nothing changed). */
  lastChanges: number
  revision?: number
}

export interface PublisherOptions {
  store: Store
  config: DnsConfig
  /** The device's permanent address (the API's deviceView derives it the same way). */
  addressOf: (d: Device) => string
  log?: Logger
  /** Default: a TSIG-signed ZoneClient to config.server. */
  zone?: Zone
  intervalMs?: number
  now?: () => number
}

export class DnsPublisher {
  private readonly zone: Zone
  private readonly log: Logger
  private readonly now: () => number
  /** What we believe the zone holds of ours; undefined: transfer and reconcile next round. */
  private published: RecordSet | undefined
  private revision: number | undefined
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private readonly st: PublisherStatus = { ok: false, lastChanges: 0, lastError: 'not yet published' }

  constructor (private readonly o: PublisherOptions) {
    this.log = (o.log ?? silentLogger).child({ part: 'dns' })
    this.now = o.now ?? Date.now
    const key: TsigKey = { name: o.config.tsig.name, algorithm: o.config.tsig.algorithm, secret: o.config.tsig.secret }
    this.zone = o.zone ?? new ZoneClient({ server: o.config.server, zone: o.config.zone, key, now: this.now })
  }

  status (): PublisherStatus { return { ...this.st } }

  /** Reconciles once (errors are reported in status, not thrown), then polls the revision. */
  async start (): Promise<void> {
    await this.tick()
    this.timer = setInterval(() => { void this.tick() }, this.o.intervalMs ?? 1_000)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await this.running
  }

  /** One round: nothing when the revision is unchanged and the last round succeeded. */
  tick (): Promise<void> {
    this.running ??= this.round().finally(() => { this.running = undefined })
    return this.running
  }

  private async round (): Promise<void> {
    try {
      const revision = await this.o.store.revision()
      if (revision === this.revision && this.published !== undefined) return
      const devices = await this.o.store.list('device')
      const desired = desiredRecords(devices.map((d) => ({ name: d.name, address: this.o.addressOf(d) })), this.o.config)
      const reconcile = this.published === undefined
      const current = this.published ?? ownedRecords(await this.zone.transfer(), this.o.config)
      const groups = diffRecords(current, desired)
      for (const b of batches(groups)) await this.zone.update(b)
      this.published = desired
      this.revision = revision
      const changes = groups.reduce((n, g) => n + g.length, 0)
      Object.assign(this.st, { ok: true, lastOk: this.now(), lastError: undefined, lastChanges: changes, revision })
      if (changes > 0 || reconcile) this.log.info({ zone: this.o.config.zone, revision, devices: devices.length, rrsets: groups.length, reconcile }, 'dns: zone updated')
    } catch (err) {
      const e = toBeckonError(err, 'BECKON_ERR_DNS_UNAVAILABLE')
      this.published = undefined
      if (this.st.lastError !== e.message) this.log.warn({ zone: this.o.config.zone, code: e.code, err: e.message }, 'dns: update failed; reconciling again next round')
      Object.assign(this.st, { ok: false, lastError: e.message })
    }
  }

  /** For /health: the last round's outcome. */
  health (): { ok: boolean, detail?: string } {
    return this.st.ok ? { ok: true, detail: `${this.o.config.zone} at revision ${String(this.st.revision)}` } : { ok: false, detail: this.st.lastError ?? 'not yet published' }
  }
}

/** A device name must be one label under the zone; refuse what DNS cannot carry. */
export function checkZoneName (zone: string): void {
  if (!/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i.test(zone)) throw new BeckonError('BECKON_ERR_CONFIG', `dns.zone ${zone} is not a domain name`)
}
