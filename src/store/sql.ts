/**
 * The Store on SQL, written once for both dialects on kysely: SQLite (better-sqlite3,
 * one file, one connection) and PostgreSQL (pg, a pool shared by several relays).
 *
 * Every change to a record is one transaction that (1) takes the store's write lock,
 * (2) reads the record as it is, (3) writes it, (4) appends its audit entry and
 * (5) bumps `meta.revision` by one per changed record, so the revision always equals
 * the number of change entries in the audit log.
 *
 * The write lock: SQLite `BEGIN IMMEDIATE` (the database's single writer lock, waited
 * for up to busy_timeout); PostgreSQL `SELECT … FROM meta WHERE name = 'revision'
 * FOR UPDATE` — a row lock every writing transaction takes first, so writers from any
 * number of processes run one after the other and each sees the previous one's commit
 * (READ COMMITTED takes a fresh snapshot per statement). Check-then-write (create,
 * replace, "is this gateway still used?") is therefore race-free without SERIALIZABLE
 * retries; a unique violation is still mapped to CONFLICT as a second line of defence.
 */
import { sql, type Kysely, type Selectable } from 'kysely'
import { BeckonError, type ErrorCode } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import type { AuditEntry, SessionRecord } from './records.js'
import type { DB, SessionsTable, SqlDialect } from './schema.js'
import type { AuditQuery, ImportBundle, ImportReport, Kind, Kinds, PutOptions, SessionEnd, SessionPatch, SessionQuery, Store } from './store.js'

const KINDS: ReadonlySet<string> = new Set<Kind>(['device', 'policy', 'user', 'group', 'gateway', 'token', 'setting'])
const IMPORT_KINDS = ['gateway', 'group', 'user', 'device', 'policy'] as const
type ImportKind = typeof IMPORT_KINDS[number]
const MAX_KEY = 255
const MAX_PAGE = 500
const DEFAULT_PAGE = 100

export interface SqlStoreOptions {
  log: Logger
  /** Releases what the dialect holds (the pool, the file); called once by close(). */
  destroy: () => Promise<void>
  /**
   * Runs write transactions one at a time among the instances of this process that
   * share the database (SQLite): better-sqlite3 waits for a lock synchronously, so one
   * instance waiting in BEGIN would block the event loop and with it the instance
   * holding the lock, until busy_timeout fails it.
   */
  serialize?: <T>(fn: () => Promise<T>) => Promise<T>
}

// ---------------------------------------------------------------------------------
// Input checks: the API validates bodies first, but a bad call must end in a coded
// error, never in a driver exception or a half-understood row.

function invalid (msg: string): BeckonError { return new BeckonError('BECKON_ERR_VALIDATION', msg) }

function checkKind (kind: unknown): asserts kind is Kind {
  if (typeof kind !== 'string' || !KINDS.has(kind)) throw invalid(`unknown record kind ${JSON.stringify(kind)}`)
}

function checkKey (key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key === '' || key.length > MAX_KEY || key.includes('\0')) throw invalid(`${what} must be a non-empty string of at most ${MAX_KEY} characters`)
}

function checkText (v: unknown, what: string): asserts v is string {
  if (typeof v !== 'string' || v.includes('\0')) throw invalid(`${what} must be a string`)
}

function optText (v: unknown, what: string): string | null {
  if (v === undefined || v === null) return null
  checkText(v, what)
  return v
}

function checkInt (v: unknown, what: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalid(`${what} must be an integer`)
}

function optInt (v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined
  checkInt(v, what)
  return v
}

function pageLimit (limit: unknown): number {
  const n = optInt(limit, 'limit') ?? DEFAULT_PAGE
  return Math.min(MAX_PAGE, Math.max(1, n))
}

/** JSON text for a column; refuses what JSON (and jsonb: no NUL in strings) cannot hold. */
function toJson (v: unknown, what: string): string {
  let s: string | undefined
  try { s = JSON.stringify(v) } catch (err) { throw invalid(`${what} is not serialisable as JSON: ${(err as Error).message}`) }
  if (s === undefined) throw invalid(`${what} is not serialisable as JSON`)
  if (s.includes('\\u0000')) throw invalid(`${what} contains a NUL character`)
  return s
}

function optJson (v: unknown, what: string): string | null {
  return v === undefined ? null : toJson(v, what)
}

/** Key order does not matter (jsonb reorders keys); everything else does. */
function canonical (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical)
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
  }
  return v
}

function sameJson (a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b))
}

/** Audit copies never hold secrets: a token's hash, the directory's bind password. */
export function auditCopy (kind: Kind, v: unknown): unknown {
  if (v === undefined || v === null || typeof v !== 'object') return v
  if (kind === 'token') {
    const { hash: _hash, ...rest } = v as Record<string, unknown>
    return rest
  }
  if (kind === 'setting' && 'bind_password' in v) return { ...v, bind_password: '[redacted]' }
  return v
}

// ---------------------------------------------------------------------------------
// Driver errors → coded errors.

const PG_UNAVAILABLE = /^(08|53|57P|3D000|28)/
const NODE_UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOENT', 'EACCES'])

/** What a driver exception means for the caller: retry later, a conflict, or a failure. */
export function classify (err: unknown): ErrorCode {
  const e = err as { code?: unknown, message?: unknown }
  const code = typeof e?.code === 'string' ? e.code : ''
  const msg = typeof e?.message === 'string' ? e.message : ''
  if (code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') return 'BECKON_ERR_CONFLICT'
  if (code.startsWith('SQLITE_')) {
    return /^SQLITE_(BUSY|LOCKED|CANTOPEN|READONLY|PERM|AUTH)/.test(code) ? 'BECKON_ERR_STORE_UNAVAILABLE' : 'BECKON_ERR_STORE'
  }
  if (/^[0-9A-Z]{5}$/.test(code) && PG_UNAVAILABLE.test(code)) return 'BECKON_ERR_STORE_UNAVAILABLE'
  if (NODE_UNAVAILABLE.has(code)) return 'BECKON_ERR_STORE_UNAVAILABLE'
  if (/Connection terminated|timeout exceeded when trying to connect|connection is not open|pool after calling end|Client was closed|not queryable/i.test(msg)) return 'BECKON_ERR_STORE_UNAVAILABLE'
  return 'BECKON_ERR_STORE'
}

export function storeError (err: unknown, what: string): BeckonError {
  if (err instanceof BeckonError) return err
  const msg = err instanceof Error ? err.message : String(err)
  return new BeckonError(classify(err), `${what}: ${msg}`, { cause: err })
}

// ---------------------------------------------------------------------------------
// Rows → records.

const num = (v: number | string | bigint): number => typeof v === 'number' ? v : Number(v)
const optNum = (v: number | string | bigint | null): number | undefined => v === null ? undefined : num(v)

function sessionRow (r: Selectable<SessionsTable>): SessionRecord {
  const s: SessionRecord = {
    id: r.id,
    relay: r.relay,
    user: r.user,
    device: r.device,
    mode: r.mode as SessionRecord['mode'],
    stage: r.stage as SessionRecord['stage'],
    fallback: JSON.parse(r.fallback) as string[],
    bytes_up: num(r.bytes_up),
    bytes_down: num(r.bytes_down),
    started_at: num(r.started_at),
  }
  // Absent optional fields stay absent (not null), so records round-trip equal.
  if (r.port !== null) s.port = num(r.port)
  if (r.channel !== null) s.channel = r.channel
  if (r.ike_state !== null) s.ike_state = r.ike_state
  if (r.child_state !== null) s.child_state = r.child_state
  if (r.ended_at !== null) s.ended_at = num(r.ended_at)
  if (r.outcome !== null) s.outcome = r.outcome
  if (r.reason !== null) s.reason = r.reason
  if (r.kill_requested !== null) s.kill_requested = r.kill_requested
  return s
}

type Db = Kysely<DB>

export class SqlStore implements Store {
  private closed = false
  private readonly log: Logger

  constructor (readonly kind: SqlDialect, private readonly db: Db, private readonly opts: SqlStoreOptions) {
    this.log = opts.log
  }

  /** SQLite returns JSON text, PostgreSQL parsed jsonb. */
  private parse (v: unknown): unknown {
    if (v === null || v === undefined) return undefined
    return this.kind === 'sqlite' && typeof v === 'string' ? JSON.parse(v) : v
  }

  /** Every public method runs through here: closed-store check and error coding. */
  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new BeckonError('BECKON_ERR_STORE_UNAVAILABLE', `${what}: store closed`)
    try {
      return await fn()
    } catch (err) {
      const e = storeError(err, what)
      if (e.code === 'BECKON_ERR_STORE' || e.code === 'BECKON_ERR_STORE_UNAVAILABLE') this.log.warn({ err: e, op: what }, 'store operation failed')
      throw e
    }
  }

  /**
   * One write transaction; `lock` takes the store's write lock first (all record
   * changes do; sessions and free audit entries need no ordering with them).
   */
  private async tx<T>(lock: boolean, fn: (db: Db) => Promise<T>): Promise<T> {
    if (this.kind === 'sqlite') {
      const serialize = this.opts.serialize ?? (async <U>(f: () => Promise<U>): Promise<U> => await f())
      // kysely's sqlite transaction says plain BEGIN (deferred): a reader that later
      // writes can fail with SQLITE_BUSY without waiting. IMMEDIATE waits for the lock.
      return await serialize(async () => await this.db.connection().execute(async (conn) => {
        await sql`begin immediate`.execute(conn)
        try {
          const r = await fn(conn)
          await sql`commit`.execute(conn)
          return r
        } catch (err) {
          await sql`rollback`.execute(conn).catch(() => {})
          throw err
        }
      }))
    }
    return await this.db.transaction().execute(async (trx) => {
      if (lock) await sql`select value from meta where name = 'revision' for update`.execute(trx)
      return await fn(trx)
    })
  }

  private async bump (db: Db, by: number): Promise<number> {
    // value = value + 1 in the database, never read-modify-write in the client.
    const r = await db.updateTable('meta').set({ value: sql<number>`value + ${by}` }).where('name', '=', 'revision').returning('value').executeTakeFirst()
    if (r === undefined) throw new BeckonError('BECKON_ERR_STORE', 'revision counter missing (migration 001 not applied?)')
    return num(r.value)
  }

  private async readRecord (db: Db, kind: string, key: string): Promise<unknown> {
    const r = await db.selectFrom('records').select('value').where('kind', '=', kind).where('key', '=', key).executeTakeFirst()
    return r === undefined ? undefined : this.parse(r.value)
  }

  private async writeRecord (db: Db, kind: string, key: string, json: string, at: number): Promise<void> {
    await db.insertInto('records').values({ kind, key, value: json, updated_at: at })
      .onConflict((oc) => oc.columns(['kind', 'key']).doUpdateSet({ value: json, updated_at: at }))
      .execute()
  }

  private async appendAudit (db: Db, e: { at: number, actor: string, action: string, target: string, before?: unknown, after?: unknown, outcome?: string | null, detail?: unknown }): Promise<void> {
    await db.insertInto('audit').values({
      at: e.at,
      actor: e.actor,
      action: e.action,
      target: e.target,
      before: optJson(e.before, 'audit before'),
      after: optJson(e.after, 'audit after'),
      outcome: e.outcome ?? null,
      detail: optJson(e.detail, 'audit detail'),
    }).execute()
  }

  // ---------------------------------------------------------------- records

  async get<K extends Kind>(kind: K, key: string): Promise<Kinds[K] | undefined> {
    checkKind(kind)
    checkKey(key)
    return await this.run(`get ${kind}/${key}`, async () => await this.readRecord(this.db, kind, key) as Kinds[K] | undefined)
  }

  async list<K extends Kind>(kind: K): Promise<Array<Kinds[K]>> {
    checkKind(kind)
    return await this.run(`list ${kind}`, async () => {
      // Byte order in both dialects (PostgreSQL would otherwise sort by its locale).
      const order = this.kind === 'postgres' ? sql`key collate "C"` : sql`key`
      const rows = await this.db.selectFrom('records').select('value').where('kind', '=', kind).orderBy(order).execute()
      return rows.map((r) => this.parse(r.value) as Kinds[K])
    })
  }

  async put<K extends Kind>(kind: K, key: string, value: Kinds[K], actor: string, opts: PutOptions = {}): Promise<Kinds[K] | undefined> {
    checkKind(kind)
    checkKey(key)
    checkText(actor, 'actor')
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(`${kind}/${key}: the record must be an object`)
    if (opts.action !== undefined) checkText(opts.action, 'action')
    const json = toJson(value, `${kind}/${key}`)
    // The audit keeps what the store keeps: the value after a JSON round trip.
    const stored = JSON.parse(json) as unknown
    return await this.run(`put ${kind}/${key}`, async () => await this.tx(true, async (db) => {
      const before = await this.readRecord(db, kind, key) as Kinds[K] | undefined
      if (opts.create === true && before !== undefined) throw new BeckonError('BECKON_ERR_CONFLICT', `${kind} ${key}`)
      if (opts.replace === true && before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${kind} ${key}`)
      const at = Date.now()
      await this.writeRecord(db, kind, key, json, at)
      await this.appendAudit(db, {
        at,
        actor,
        action: opts.action ?? `${kind}.${before === undefined ? 'create' : 'update'}`,
        target: `${kind}/${key}`,
        before: auditCopy(kind, before),
        after: auditCopy(kind, stored),
      })
      await this.bump(db, 1)
      return before
    }))
  }

  async delete<K extends Kind>(kind: K, key: string, actor: string, action?: string): Promise<Kinds[K]> {
    checkKind(kind)
    checkKey(key)
    checkText(actor, 'actor')
    if (action !== undefined) checkText(action, 'action')
    return await this.run(`delete ${kind}/${key}`, async () => await this.tx(true, async (db) => {
      const before = await this.readRecord(db, kind, key) as Kinds[K] | undefined
      if (before === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `${kind} ${key}`)
      if (kind === 'gateway') {
        // Inside the transaction, under the write lock: no device can be added between
        // this check and the delete.
        const gw = this.kind === 'postgres' ? sql<string>`value->>'gateway'` : sql<string>`json_extract(value, '$.gateway')`
        const user = await db.selectFrom('records').select('key').where('kind', '=', 'device').where(gw, '=', key).orderBy('key').executeTakeFirst()
        if (user !== undefined) throw new BeckonError('BECKON_ERR_CONFLICT', `gateway ${key} serves device ${user.key}`)
      }
      const at = Date.now()
      await db.deleteFrom('records').where('kind', '=', kind).where('key', '=', key).execute()
      await this.appendAudit(db, { at, actor, action: action ?? `${kind}.delete`, target: `${kind}/${key}`, before: auditCopy(kind, before) })
      let changes = 1
      if (kind === 'device') {
        // A policy without its device would be enforced for whoever reuses the name.
        const policy = await this.readRecord(db, 'policy', key)
        if (policy !== undefined) {
          await db.deleteFrom('records').where('kind', '=', 'policy').where('key', '=', key).execute()
          await this.appendAudit(db, { at, actor, action: 'policy.delete', target: `policy/${key}`, before: policy, detail: { cause: `device/${key}` } })
          changes++
        }
      }
      await this.bump(db, changes)
      return before
    }))
  }

  async import (bundle: ImportBundle, actor: string): Promise<ImportReport> {
    checkText(actor, 'actor')
    if (bundle === null || typeof bundle !== 'object') throw invalid('import: the bundle must be an object')
    const items = importItems(bundle)
    return await this.run('import', async () => await this.tx(true, async (db) => {
      const report = Object.fromEntries(IMPORT_KINDS.map((k) => [k, { created: 0, updated: 0, unchanged: 0 }])) as ImportReport
      let changes = 0
      const at = Date.now()
      for (const [kind, entries] of items) {
        if (entries.length === 0) continue
        // One read per kind, not per record; later duplicates in the bundle see earlier ones.
        const rows = await db.selectFrom('records').select(['key', 'value']).where('kind', '=', kind).execute()
        const current = new Map(rows.map((r) => [r.key, this.parse(r.value)]))
        for (const [key, json] of entries) {
          const value = JSON.parse(json) as unknown
          const before = current.get(key)
          if (before !== undefined && sameJson(before, value)) { report[kind].unchanged++; continue }
          await this.writeRecord(db, kind, key, json, at)
          await this.appendAudit(db, { at, actor, action: `${kind}.${before === undefined ? 'create' : 'update'}`, target: `${kind}/${key}`, before: auditCopy(kind, before), after: auditCopy(kind, value), detail: { import: true } })
          report[kind][before === undefined ? 'created' : 'updated']++
          current.set(key, value)
          changes++
        }
      }
      if (changes > 0) await this.bump(db, changes)
      return report
    }))
  }

  async revision (): Promise<number> {
    return await this.run('revision', async () => {
      const r = await this.db.selectFrom('meta').select('value').where('name', '=', 'revision').executeTakeFirst()
      if (r === undefined) throw new BeckonError('BECKON_ERR_STORE', 'revision counter missing')
      return num(r.value)
    })
  }

  // ---------------------------------------------------------------- audit

  async audit (entry: Omit<AuditEntry, 'id' | 'at'> & { at?: number }): Promise<void> {
    if (entry === null || typeof entry !== 'object') throw invalid('audit entry must be an object')
    checkText(entry.actor, 'actor')
    checkText(entry.action, 'action')
    checkText(entry.target, 'target')
    const at = optInt(entry.at, 'at') ?? Date.now()
    const outcome = optText(entry.outcome, 'outcome')
    const e = { at, actor: entry.actor, action: entry.action, target: entry.target, before: entry.before, after: entry.after, outcome, detail: entry.detail }
    // Serialise before touching the database so a bad value is a validation error.
    for (const f of ['before', 'after', 'detail'] as const) optJson(e[f], `audit ${f}`)
    await this.run('audit', async () => { await this.appendAudit(this.db, e) })
  }

  async queryAudit (q: AuditQuery = {}): Promise<{ entries: AuditEntry[], next?: number }> {
    if (q === null || typeof q !== 'object') throw invalid('audit query must be an object')
    const limit = pageLimit(q.limit)
    const since = optInt(q.since, 'since')
    const until = optInt(q.until, 'until')
    const before = optInt(q.before, 'before')
    const actor = optText(q.actor, 'actor')
    const action = optText(q.action, 'action')
    const target = optText(q.target, 'target')
    return await this.run('queryAudit', async () => {
      let qb = this.db.selectFrom('audit').selectAll()
      if (actor !== null) qb = qb.where('actor', '=', actor)
      if (target !== null) qb = qb.where('target', '=', target)
      if (action !== null) {
        // substr, not LIKE: SQLite's LIKE ignores case and both treat % and _ as wildcards.
        qb = action.endsWith('.')
          ? qb.where(sql`substr(action, 1, ${action.length})`, '=', action)
          : qb.where('action', '=', action)
      }
      if (since !== undefined) qb = qb.where('at', '>=', since)
      if (until !== undefined) qb = qb.where('at', '<=', until)
      if (before !== undefined) qb = qb.where('id', '<', before)
      // One row more than asked tells whether a next page exists.
      const rows = await qb.orderBy('id', 'desc').limit(limit + 1).execute()
      const entries = rows.slice(0, limit).map((r) => {
        const e: AuditEntry = { id: num(r.id), at: num(r.at), actor: r.actor, action: r.action, target: r.target }
        const b = this.parse(r.before)
        const a = this.parse(r.after)
        const d = this.parse(r.detail)
        if (b !== undefined) e.before = b
        if (a !== undefined) e.after = a
        if (r.outcome !== null) e.outcome = r.outcome
        if (d !== undefined) e.detail = d
        return e
      })
      return rows.length > limit ? { entries, next: entries[entries.length - 1]!.id } : { entries }
    })
  }

  // ---------------------------------------------------------------- sessions

  async sessionOpen (s: SessionRecord): Promise<void> {
    if (s === null || typeof s !== 'object') throw invalid('session must be an object')
    checkKey(s.id, 'session id')
    for (const f of ['relay', 'user', 'device', 'mode', 'stage'] as const) checkText(s[f], `session ${f}`)
    checkInt(s.started_at, 'session started_at')
    if (!Array.isArray(s.fallback)) throw invalid('session fallback must be a list')
    const row = {
      id: s.id,
      relay: s.relay,
      user: s.user,
      device: s.device,
      mode: s.mode,
      port: optInt(s.port, 'session port') ?? null,
      stage: s.stage,
      channel: optText(s.channel, 'session channel'),
      fallback: toJson(s.fallback, 'session fallback'),
      bytes_up: optInt(s.bytes_up, 'session bytes_up') ?? 0,
      bytes_down: optInt(s.bytes_down, 'session bytes_down') ?? 0,
      ike_state: optText(s.ike_state, 'session ike_state'),
      child_state: optText(s.child_state, 'session child_state'),
      started_at: s.started_at,
      ended_at: optInt(s.ended_at, 'session ended_at') ?? null,
      outcome: optText(s.outcome, 'session outcome'),
      reason: optText(s.reason, 'session reason'),
      kill_requested: optText(s.kill_requested, 'session kill_requested'),
    }
    await this.run(`sessionOpen ${s.id}`, async () => {
      try {
        await this.db.insertInto('sessions').values(row).execute()
      } catch (err) {
        if (classify(err) === 'BECKON_ERR_CONFLICT') throw new BeckonError('BECKON_ERR_CONFLICT', `session ${s.id}`)
        throw err
      }
    })
  }

  async sessionUpdate (id: string, patch: SessionPatch): Promise<void> {
    checkKey(id, 'session id')
    if (patch === null || typeof patch !== 'object') throw invalid('session patch must be an object')
    const set: Partial<Record<keyof SessionPatch, string | number | null>> = {}
    if (patch.stage !== undefined) { checkText(patch.stage, 'stage'); set.stage = patch.stage }
    if (patch.channel !== undefined) set.channel = optText(patch.channel, 'channel')
    if (patch.fallback !== undefined) {
      if (!Array.isArray(patch.fallback)) throw invalid('fallback must be a list')
      set.fallback = toJson(patch.fallback, 'fallback')
    }
    if (patch.bytes_up !== undefined) { checkInt(patch.bytes_up, 'bytes_up'); set.bytes_up = patch.bytes_up }
    if (patch.bytes_down !== undefined) { checkInt(patch.bytes_down, 'bytes_down'); set.bytes_down = patch.bytes_down }
    if (patch.ike_state !== undefined) set.ike_state = optText(patch.ike_state, 'ike_state')
    if (patch.child_state !== undefined) set.child_state = optText(patch.child_state, 'child_state')
    if (patch.kill_requested !== undefined) set.kill_requested = optText(patch.kill_requested, 'kill_requested')
    await this.run(`sessionUpdate ${id}`, async () => {
      if (Object.keys(set).length > 0) {
        // Only a live session changes; an ended one is history.
        const r = await this.db.updateTable('sessions').set(set as never).where('id', '=', id).where('ended_at', 'is', null).executeTakeFirst()
        if (r.numUpdatedRows > 0n) return
      }
      const row = await this.db.selectFrom('sessions').select('ended_at').where('id', '=', id).executeTakeFirst()
      if (row === undefined) throw new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
      if (row.ended_at !== null) throw new BeckonError('BECKON_ERR_SESSION_ENDED', `session ${id}`)
    })
  }

  async sessionEnd (id: string, end: SessionEnd): Promise<void> {
    checkKey(id, 'session id')
    if (end === null || typeof end !== 'object') throw invalid('session end must be an object')
    checkText(end.outcome, 'outcome')
    const reason = optText(end.reason, 'reason')
    const relay = optText(end.relay, 'relay')
    checkInt(end.bytes_up, 'bytes_up')
    checkInt(end.bytes_down, 'bytes_down')
    const at = optInt(end.at, 'at') ?? Date.now()
    await this.run(`sessionEnd ${id}`, async () => await this.tx(false, async (db) => {
      // The guarded UPDATE is the check: of two concurrent ends exactly one matches a
      // row, so the session gets one `session.end` entry.
      let q = db.updateTable('sessions')
        .set({ ended_at: at, outcome: end.outcome, reason, bytes_up: end.bytes_up, bytes_down: end.bytes_down, stage: 'closed' })
        .where('id', '=', id).where('ended_at', 'is', null)
      if (relay !== null) q = q.where('relay', '=', relay)
      const r = await q.returningAll().executeTakeFirst()
      if (r === undefined) throw await this.whyNot(db, id, relay)
      const s = sessionRow(r)
      await this.appendAudit(db, {
        at,
        // The principal whose session it was; the holding relay is in `detail`.
        actor: s.user,
        action: 'session.end',
        target: `session/${id}`,
        outcome: end.outcome,
        detail: { user: s.user, device: s.device, mode: s.mode, channel: s.channel ?? null, fallback: s.fallback, bytes_up: s.bytes_up, bytes_down: s.bytes_down, duration_ms: Math.max(0, at - s.started_at), relay: s.relay, ...(reason === null ? {} : { reason }) },
      })
    }))
  }

  async sessionTakeover (id: string, from: string, to: string, at?: number): Promise<SessionRecord> {
    checkKey(id, 'session id')
    checkText(from, 'from')
    checkText(to, 'to')
    const when = optInt(at, 'at') ?? Date.now()
    return await this.run(`sessionTakeover ${id}`, async () => await this.tx(false, async (db) => {
      // Guarded like sessionEnd: of two relays taking over at once, one wins.
      const r = await db.updateTable('sessions').set({ relay: to })
        .where('id', '=', id).where('ended_at', 'is', null).where('relay', '=', from)
        .returningAll().executeTakeFirst()
      if (r === undefined) throw await this.whyNot(db, id, from)
      const s = sessionRow(r)
      await this.appendAudit(db, { at: when, actor: `relay:${to}`, action: 'session.takeover', target: `session/${id}`, outcome: 'ok', detail: { from, to, user: s.user, device: s.device } })
      return s
    }))
  }

  /** Why a guarded session UPDATE matched nothing. */
  private async whyNot (db: Db, id: string, relay: string | null): Promise<BeckonError> {
    const row = await db.selectFrom('sessions').select(['ended_at', 'relay']).where('id', '=', id).executeTakeFirst()
    if (row === undefined) return new BeckonError('BECKON_ERR_NOT_FOUND', `session ${id}`)
    if (row.ended_at !== null) return new BeckonError('BECKON_ERR_SESSION_ENDED', `session ${id}`)
    return new BeckonError('BECKON_ERR_CONFLICT', `session ${id} is held by relay ${row.relay}, not ${relay ?? '?'}`)
  }

  async getSession (id: string): Promise<SessionRecord | undefined> {
    checkKey(id, 'session id')
    return await this.run(`getSession ${id}`, async () => {
      const r = await this.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst()
      return r === undefined ? undefined : sessionRow(r)
    })
  }

  async listSessions (q: SessionQuery = {}): Promise<SessionRecord[]> {
    if (q === null || typeof q !== 'object') throw invalid('session query must be an object')
    const limit = pageLimit(q.limit)
    const before = optInt(q.before, 'before')
    const device = optText(q.device, 'device')
    const user = optText(q.user, 'user')
    const relay = optText(q.relay, 'relay')
    return await this.run('listSessions', async () => {
      let qb = this.db.selectFrom('sessions').selectAll()
      if (q.live === true) qb = qb.where('ended_at', 'is', null)
      if (q.live === false) qb = qb.where('ended_at', 'is not', null)
      if (device !== null) qb = qb.where('device', '=', device)
      if (user !== null) qb = qb.where('user', '=', user)
      if (relay !== null) qb = qb.where('relay', '=', relay)
      if (before !== undefined) qb = qb.where('started_at', '<', before)
      const rows = await qb.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit).execute()
      return rows.map(sessionRow)
    })
  }

  // ---------------------------------------------------------------- lifecycle

  async ping (): Promise<void> {
    await this.run('ping', async () => { await sql`select 1`.execute(this.db) })
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.opts.destroy()
  }
}

/** The bundle as [kind, [key, JSON text]] in dependency order, validated up front. */
function importItems (b: ImportBundle): Array<[ImportKind, Array<[string, string]>]> {
  const named = (kind: ImportKind, xs: unknown): Array<[string, string]> => {
    if (xs === undefined || xs === null) return []
    if (!Array.isArray(xs)) throw invalid(`import: ${kind}s must be a list`)
    return xs.map((x: unknown, i) => {
      if (x === null || typeof x !== 'object' || Array.isArray(x)) throw invalid(`import: ${kind}s[${i}] must be an object`)
      const name = (x as { name?: unknown }).name
      checkKey(name, `import: ${kind}s[${i}].name`)
      return [name, toJson(x, `${kind}/${name}`)]
    })
  }
  const policies = b.policies ?? {}
  if (policies === null || typeof policies !== 'object' || Array.isArray(policies)) throw invalid('import: policies must be a mapping of device names')
  return [
    ['gateway', named('gateway', b.gateways)],
    ['group', named('group', b.groups)],
    ['user', named('user', b.users)],
    ['device', named('device', b.devices)],
    ['policy', Object.entries(policies).map(([k, v]): [string, string] => {
      checkKey(k, 'import: policy key')
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid(`import: policies.${k} must be an object`)
      return [k, toJson(v, `policy/${k}`)]
    })],
  ]
}
