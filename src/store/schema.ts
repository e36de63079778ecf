/**
 * The SQL schema as kysely sees it (one interface per table), shared by both dialects.
 *
 * Integers are `bigint` columns: SQLite hands them back as numbers, PostgreSQL's `pg`
 * as strings unless a type parser says otherwise, so the store converts on every read.
 * JSON columns are `text` in SQLite (the store writes JSON.stringify) and `jsonb` in
 * PostgreSQL (it accepts the same text and hands back parsed values).
 */
import type { ColumnType, Generated } from 'kysely'

/** Written as a number, read as whatever the driver returns. */
export type Int8 = ColumnType<number | string, number, number>
export type NullableInt8 = ColumnType<number | string | null, number | null | undefined, number | null>
/** Written as JSON text (or null); read as text (SQLite) or a parsed value (PostgreSQL). */
export type Json = ColumnType<unknown, string | null | undefined, string | null>

export interface RecordsTable {
  kind: string
  key: string
  value: ColumnType<unknown, string, string>
  updated_at: Int8
}

export interface MetaTable {
  name: string
  value: Int8
}

export interface SessionsTable {
  id: string
  relay: string
  user: string
  device: string
  mode: string
  port: ColumnType<number | null, number | null | undefined, number | null>
  stage: string
  channel: string | null
  /** JSON text in both dialects: a list of channel names. */
  fallback: string
  bytes_up: Int8
  bytes_down: Int8
  ike_state: string | null
  child_state: string | null
  started_at: Int8
  ended_at: NullableInt8
  outcome: string | null
  reason: string | null
  kill_requested: string | null
}

export interface AuditTable {
  id: Generated<number | string>
  at: Int8
  actor: string
  action: string
  target: string
  before: Json
  after: Json
  outcome: string | null
  detail: Json
}

export interface DB {
  records: RecordsTable
  meta: MetaTable
  sessions: SessionsTable
  audit: AuditTable
}

export type SqlDialect = 'sqlite' | 'postgres'
