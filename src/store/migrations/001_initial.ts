/**
 * Migration 001: the document store (records by kind and key), the revision counter,
 * sessions (one column per SessionRecord field, so the API can filter and index them)
 * and the append-only audit log.
 *
 * The few differences between the dialects are the JSON type (text vs jsonb) and the
 * audit id (SQLite's rowid alias vs a bigserial). Never edit a migration that has
 * shipped: add the next one.
 */
import { sql, type Kysely } from 'kysely'
import type { SqlDialect } from '../schema.js'

// Migrations see the database as it was when they were written, not today's DB type.
type AnyDb = Kysely<any> // eslint-disable-line @typescript-eslint/no-explicit-any

export async function up (db: AnyDb, dialect: SqlDialect): Promise<void> {
  const json = dialect === 'postgres' ? 'jsonb' : 'text'

  await db.schema.createTable('records')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('value', sql.raw(json), (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('records_pk', ['kind', 'key'])
    .execute()

  await db.schema.createTable('meta')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'bigint', (c) => c.notNull())
    .execute()
  await db.insertInto('meta').values({ name: 'revision', value: 0 }).execute()

  await db.schema.createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('relay', 'text', (c) => c.notNull())
    .addColumn('user', 'text', (c) => c.notNull())
    .addColumn('device', 'text', (c) => c.notNull())
    .addColumn('mode', 'text', (c) => c.notNull())
    .addColumn('port', 'integer')
    .addColumn('stage', 'text', (c) => c.notNull())
    .addColumn('channel', 'text')
    .addColumn('fallback', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('bytes_up', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_down', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('ike_state', 'text')
    .addColumn('child_state', 'text')
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('ended_at', 'bigint')
    .addColumn('outcome', 'text')
    .addColumn('reason', 'text')
    .addColumn('kill_requested', 'text')
    .execute()
  for (const col of ['ended_at', 'device', 'user', 'started_at']) {
    await db.schema.createIndex(`sessions_${col}`).on('sessions').column(col).execute()
  }

  await db.schema.createTable('audit')
    // SQLite: INTEGER PRIMARY KEY AUTOINCREMENT never reuses the id of a deleted row,
    // so a page cursor (`before`) stays meaningful even if old entries are pruned.
    .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) => dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('before', sql.raw(json))
    .addColumn('after', sql.raw(json))
    .addColumn('outcome', 'text')
    .addColumn('detail', sql.raw(json))
    .execute()
  for (const col of ['at', 'target', 'actor', 'action']) {
    await db.schema.createIndex(`audit_${col}`).on('audit').column(col).execute()
  }
}

export async function down (db: AnyDb): Promise<void> {
  for (const t of ['audit', 'sessions', 'meta', 'records']) await db.schema.dropTable(t).ifExists().execute()
}
