/**
 * What the relay knows of devices, policies and users: a snapshot of the store, taken
 * again whenever the store's revision moves. Every CONNECT asks for `current()`, which
 * costs one revision read (a prepared statement on SQLite, one round trip on
 * PostgreSQL) while nothing changed, so a policy change through any relay's API applies
 * to the next CONNECT on every relay, with no restart and no message between relays.
 */
import type { KeyObject } from 'node:crypto'
import { publicKeyFromRaw } from '../../core/keys.js'
import type { Logger } from '../../core/log.js'
import type { Metrics } from '../../core/metrics.js'
import { ChainDirectory } from '../../directory/chain.js'
import { LocalDirectory, type Directory } from '../../directory/directory.js'
import { permanentAddress } from '../../ipsec/addresses.js'
import type { Device, LdapSettings, Policy, User } from '../../store/records.js'
import type { Store } from '../../store/store.js'

export interface DeviceEntry {
  /** With its permanent address filled in. */
  device: Device & { address: string }
  policy: Policy | undefined
  /** The gateway's X25519 key: signals are sealed for it. */
  gatewayKey: KeyObject
  /** The agent's X25519 key: PSKs are sealed for it. */
  agentKey: KeyObject | undefined
}

export interface Snapshot {
  revision: number
  devices: ReadonlyMap<string, DeviceEntry>
  users: ReadonlyMap<string, User>
  directory: Directory
  /** Permanent address of a user, local or from the directory. */
  userAddress: (name: string) => string
}

export interface CatalogOptions {
  store: Store
  prefix: string
  log: Logger
  metrics?: Metrics
  /** Builds the LDAP directory from the stored settings (absent: local users only). */
  ldap?: (s: LdapSettings) => Directory
}

export class Catalog {
  private snap: Snapshot | undefined
  private loading: Promise<Snapshot> | undefined

  constructor (private readonly o: CatalogOptions) {}

  async current (): Promise<Snapshot> {
    const rev = await this.time('revision', () => this.o.store.revision())
    if (this.snap !== undefined && this.snap.revision === rev) return this.snap
    // Concurrent CONNECTs during a reload share it.
    this.loading ??= this.load(rev).finally(() => { this.loading = undefined })
    return await this.loading
  }

  private async time<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return this.o.metrics === undefined ? await fn() : await this.o.metrics.timeStore(op, fn)
  }

  private async load (rev: number): Promise<Snapshot> {
    const s = this.o.store
    const [devices, users, gateways, ldap] = await this.time('snapshot', () => Promise.all([
      s.list('device'), s.list('user'), s.list('gateway'), s.get('setting', 'ldap'),
    ]))
    // Policies are keyed by device name and carry no name of their own.
    const policyOf = new Map<string, Policy>()
    await this.time('snapshot', () => Promise.all(devices.map(async (d) => { const p = await s.get('policy', d.name); if (p !== undefined) policyOf.set(d.name, p) })))
    const gatewayKey = new Map(gateways.map((g) => [g.name, publicKeyFromRaw('x25519', g.public_key, `gateway ${g.name}`)]))
    const entries = new Map<string, DeviceEntry>()
    for (const d of devices) {
      const key = gatewayKey.get(d.gateway)
      if (key === undefined) { this.o.log.warn({ device: d.name, gateway: d.gateway }, 'relay: device names an unknown gateway; skipped'); continue }
      entries.set(d.name, {
        device: { ...d, address: d.address ?? permanentAddress(this.o.prefix, 'device', d.name) },
        policy: policyOf.get(d.name),
        gatewayKey: key,
        agentKey: d.agent_public_key === undefined ? undefined : publicKeyFromRaw('x25519', d.agent_public_key, `device ${d.name} agent_public_key`),
      })
    }
    const userMap = new Map(users.map((u) => [u.name, u]))
    const local = new LocalDirectory(users.map((u) => ({ name: u.name, passwordHash: u.password_hash, tokenHashes: u.token_sha256 ?? [], groups: u.groups })))
    const directory = ldap === undefined || this.o.ldap === undefined ? local : new ChainDirectory([local, this.o.ldap(ldap)])
    const prefix = this.o.prefix
    this.snap = {
      revision: rev,
      devices: entries,
      users: userMap,
      directory,
      userAddress: (name) => userMap.get(name)?.address ?? permanentAddress(prefix, 'user', name),
    }
    this.o.log.debug({ revision: rev, devices: entries.size, users: userMap.size, ldap: ldap !== undefined }, 'relay: catalog loaded')
    return this.snap
  }
}
