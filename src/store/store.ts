/**
 * The control plane's persistence, behind one interface with two real back ends:
 * SQLite (embedded default: one file in the relay's state directory, WAL, every write
 * a transaction) and PostgreSQL (several relays sharing one state). Both are built on
 * kysely; migrations are TS modules (they ship in dist/) applied by `openStore`.
 *
 * Records are documents (src/store/records.ts) kept per kind and key; every change is a
 * transaction that writes the record, its audit entry (actor, before, after) and bumps
 * the store's revision, so readers (the relay's per-CONNECT policy cache, the API's
 * token cache) learn of a change — also one made by another relay — from one cheap read.
 */
import type { AuditEntry, Device, Gateway, Group, LdapSettings, Policy, SessionRecord, TokenRecord, User } from './records.js'

/** What is stored by kind; the key is the record's name (policy: the device's name, token: its id). */
export interface Kinds {
  device: Device
  policy: Policy
  user: User
  group: Group
  gateway: Gateway
  token: TokenRecord
  /** Settings by name: `ldap`. */
  setting: LdapSettings
}
export type Kind = keyof Kinds

export interface PutOptions {
  /** Fail with BECKON_ERR_CONFLICT when the key exists (API POST). */
  create?: boolean
  /** Fail with BECKON_ERR_NOT_FOUND when the key does not exist (API PUT/PATCH). */
  replace?: boolean
  /** Audit action; defaults to `<kind>.create` / `<kind>.update`. */
  action?: string
}

export interface AuditQuery {
  actor?: string
  /** Exact action, or a prefix ending in '.' (e.g. `session.`). */
  action?: string
  target?: string
  since?: number
  until?: number
  /** Entries with an id below this (paging backwards from the newest). */
  before?: number
  /** At most 500; default 100. */
  limit?: number
}

export interface SessionQuery {
  live?: boolean
  device?: string
  user?: string
  relay?: string
  before?: number
  limit?: number
}

export interface SessionEnd { outcome: string, reason?: string, bytes_up: number, bytes_down: number, at?: number, relay?: string }

export type SessionPatch = Partial<Pick<SessionRecord, 'stage' | 'channel' | 'fallback' | 'bytes_up' | 'bytes_down' | 'ike_state' | 'child_state' | 'kill_requested'>>

export interface ImportBundle {
  gateways?: Gateway[]
  groups?: Group[]
  users?: User[]
  devices?: Device[]
  /** Keyed by device name. */
  policies?: Record<string, Policy>
}

/** Per kind: created, updated (the record differed), unchanged. */
export type ImportReport = Record<'gateway' | 'group' | 'user' | 'device' | 'policy', { created: number, updated: number, unchanged: number }>

export interface Store {
  readonly kind: 'sqlite' | 'postgres'

  get<K extends Kind>(kind: K, key: string): Promise<Kinds[K] | undefined>
  /** Sorted by key. */
  list<K extends Kind>(kind: K): Promise<Array<Kinds[K]>>
  /** Writes one record with its audit entry in one transaction; returns the previous value. */
  put<K extends Kind>(kind: K, key: string, value: Kinds[K], actor: string, opts?: PutOptions): Promise<Kinds[K] | undefined>
  /**
   * Removes one record (and, for a device, its policy) with its audit entry; returns what
   * was removed. BECKON_ERR_NOT_FOUND when absent.
   */
  delete<K extends Kind>(kind: K, key: string, actor: string, action?: string): Promise<Kinds[K]>
  /** Idempotent bulk upsert in one transaction; one audit entry per changed record. */
  import(bundle: ImportBundle, actor: string): Promise<ImportReport>
  /** Bumped by every committed change to any record (not by sessions or audit). */
  revision(): Promise<number>

  /** Appends one audit entry (changes are audited by put/delete themselves). */
  audit(entry: Omit<AuditEntry, 'id' | 'at'> & { at?: number }): Promise<void>
  /** Newest first. `next` is the `before` of the following page, absent at the end. */
  queryAudit(q: AuditQuery): Promise<{ entries: AuditEntry[], next?: number }>

  sessionOpen(s: SessionRecord): Promise<void>
  sessionUpdate(id: string, patch: SessionPatch): Promise<void>
  /**
   * Ends a session and writes its `session.end` audit entry in one transaction. With
   * `relay`, only while that relay holds it (BECKON_ERR_CONFLICT once another took it over).
   */
  sessionEnd(id: string, end: SessionEnd): Promise<void>
  /**
   * Moves a live session to relay `to` (a re-join through another relay after the holder
   * died) and audits `session.takeover`, in one transaction. Returns the record as it now
   * stands. BECKON_ERR_NOT_FOUND, BECKON_ERR_SESSION_ENDED when ended, BECKON_ERR_CONFLICT
   * when it is held by another relay than `from`.
   */
  sessionTakeover(id: string, from: string, to: string, at?: number): Promise<SessionRecord>
  getSession(id: string): Promise<SessionRecord | undefined>
  /** Newest first; `before` pages by started_at. */
  listSessions(q: SessionQuery): Promise<SessionRecord[]>

  /** A cheap round trip, timed by /metrics and /health. */
  ping(): Promise<void>
  close(): Promise<void>
}
