/**
 * An in-memory Store for fast unit tests of the API and the relay's catalog. Same
 * semantics as the SQL back ends (audit per change, revision bump, conflicts), none of
 * their durability: production and end-to-end tests use SQLite or PostgreSQL.
 */
import { BeckonError } from '../core/errors.js'
import type { AuditEntry, SessionRecord } from './records.js'
import type { AuditQuery, ImportBundle, ImportReport, Kind, Kinds, PutOptions, SessionPatch, SessionQuery, Store } from './store.js'
import { auditCopy, importOrder, matchesAction, pageLimit } from './shared.js'

const clone = <T>(v: T): T => structuredClone(v)

export class MemoryStore implements Store {
  readonly kind = 'sqlite' as const
  private readonly records = new Map<string, unknown>()
  private readonly auditLog: AuditEntry[] = []
  private readonly sessions = new Map<string, SessionRecord>()
  private rev = 0

  private k (kind: Kind, key: string): string { return `${kind}\0${key}` }

  async get<K extends Kind>(kind: K, key: string): Promise<Kinds[K] | undefined> {
    const v = this.records.get(this.k(kind, key))
    return v === undefined ? undefined : clone(v as Kinds[K])
  }

  async list<K extends Kind>(kind: K): Promise<Array<Kinds[K]>> {
    const prefix = `${kind}\0`
    return [...this.records.entries()].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => clone(v as Kinds[K]))
  }

  async put<K extends Kind>(kind: K, key: string, value: Kinds[K], actor: string, opts: PutOptions = {}): Promise<Kinds[K] | undefined> {
    const before = await this.get(kind, key)
    if (opts.create === true && before !== undefined) throw new BeckonError('BECKON_ERR_CONFLICT', `${kind} ${key} exists`)
    if (opts.replace === true && before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${kind} ${key}`)
    this.records.set(this.k(kind, key), clone(value))
    this.rev++
    this.append({ actor, action: opts.action ?? `${kind}.${before === undefined ? 'create' : 'update'}`, target: `${kind}/${key}`, before: auditCopy(kind, before), after: auditCopy(kind, value) })
    return before
  }

  async delete<K extends Kind>(kind: K, key: string, actor: string, action?: string): Promise<Kinds[K]> {
    const before = await this.get(kind, key)
    if (before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${kind} ${key}`)
    if (kind === 'gateway') {
      const user = (await this.list('device')).find((d) => d.gateway === key)
      if (user !== undefined) throw new BeckonError('BECKON_ERR_CONFLICT', `gateway ${key} serves device ${user.name}`)
    }
    this.records.delete(this.k(kind, key))
    if (kind === 'device') this.records.delete(this.k('policy', key))
    this.rev++
    this.append({ actor, action: action ?? `${kind}.delete`, target: `${kind}/${key}`, before: auditCopy(kind, before) })
    return before
  }

  async import (bundle: ImportBundle, actor: string): Promise<ImportReport> {
    const report = {} as ImportReport
    for (const [kind, items] of importOrder(bundle)) {
      const r = report[kind] = { created: 0, updated: 0, unchanged: 0 }
      for (const [key, value] of items) {
        const before = await this.get(kind, key)
        if (before !== undefined && JSON.stringify(before) === JSON.stringify(value)) { r.unchanged++; continue }
        await this.put(kind, key, value as never, actor, { action: `${kind}.import` })
        if (before === undefined) r.created++
        else r.updated++
      }
    }
    return report
  }

  async revision (): Promise<number> { return this.rev }

  private append (e: Omit<AuditEntry, 'id' | 'at'> & { at?: number }): void {
    const entry = { ...clone(e), id: this.auditLog.length + 1, at: e.at ?? Date.now() } as AuditEntry
    for (const k of Object.keys(entry) as Array<keyof AuditEntry>) if (entry[k] === undefined) delete entry[k]
    this.auditLog.push(entry)
  }

  async audit (entry: Omit<AuditEntry, 'id' | 'at'> & { at?: number }): Promise<void> { this.append(entry) }

  async queryAudit (q: AuditQuery): Promise<{ entries: AuditEntry[], next?: number }> {
    const limit = pageLimit(q.limit)
    const hits = this.auditLog.filter((e) =>
      (q.actor === undefined || e.actor === q.actor) && matchesAction(e.action, q.action) &&
      (q.target === undefined || e.target === q.target) && (q.since === undefined || e.at >= q.since) &&
      (q.until === undefined || e.at <= q.until) && (q.before === undefined || e.id < q.before)).reverse()
    const entries = hits.slice(0, limit).map(clone)
    return hits.length > limit ? { entries, next: entries[entries.length - 1]!.id } : { entries }
  }

  async sessionOpen (s: SessionRecord): Promise<void> {
    if (this.sessions.has(s.id)) throw new BeckonError('BECKON_ERR_CONFLICT', `session ${s.id}`)
    this.sessions.set(s.id, clone(s))
  }

  async sessionUpdate (id: string, patch: SessionPatch): Promise<void> {
    const s = this.sessions.get(id)
    if (s === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
    Object.assign(s, clone(patch))
  }

  async sessionEnd (id: string, end: { outcome: string, reason?: string, bytes_up: number, bytes_down: number, at?: number }): Promise<void> {
    const s = this.sessions.get(id)
    if (s === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
    const at = end.at ?? Date.now()
    Object.assign(s, { ended_at: at, outcome: end.outcome, bytes_up: end.bytes_up, bytes_down: end.bytes_down, stage: 'closed', ...(end.reason === undefined ? {} : { reason: end.reason }) })
    this.append({
      at,
      actor: `relay:${s.relay}`,
      action: 'session.end',
      target: `session/${id}`,
      outcome: end.outcome,
      detail: { user: s.user, device: s.device, mode: s.mode, channel: s.channel, fallback: s.fallback, bytes_up: end.bytes_up, bytes_down: end.bytes_down, duration_ms: at - s.started_at, ...(end.reason === undefined ? {} : { reason: end.reason }) },
    })
  }

  async getSession (id: string): Promise<SessionRecord | undefined> {
    const s = this.sessions.get(id)
    return s === undefined ? undefined : clone(s)
  }

  async listSessions (q: SessionQuery): Promise<SessionRecord[]> {
    return [...this.sessions.values()]
      .filter((s) => (q.live !== true || s.ended_at === undefined) && (q.device === undefined || s.device === q.device) &&
        (q.user === undefined || s.user === q.user) && (q.relay === undefined || s.relay === q.relay) &&
        (q.before === undefined || s.started_at < q.before))
      .sort((a, b) => b.started_at - a.started_at)
      .slice(0, pageLimit(q.limit))
      .map(clone)
  }

  async ping (): Promise<void> {}
  async close (): Promise<void> {}
}
