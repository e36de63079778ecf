/**
 * Opening the store: the role's `store:` section, the dialect's connection, the
 * migrations, then the one SqlStore.
 *
 *   store: { sqlite: /var/lib/beckon/beckon.db }       # default: <state_dir>/beckon.db
 *   store: { postgres: postgres://beckon:…@db.example/beckon }
 *
 * SQLite settings and why:
 *   journal_mode=WAL   readers (API, policy cache) never block the writer, nor it them.
 *   synchronous=FULL   every commit fsyncs the WAL. NORMAL is already safe against a
 *                      killed process, but can lose the last commits on power loss; the
 *                      control plane writes rarely (changes, session ends) and an
 *                      acknowledged API change or audit entry must survive a power cut.
 *   foreign_keys=ON    enforce any reference a later migration declares.
 *   busy_timeout=5000  a second process (`beckon import` beside a running relay) waits
 *                      for the write lock instead of failing at once.
 *
 * Connection strings are logged and reported with their password replaced.
 */
import { closeSync, mkdirSync, openSync, realpathSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely'
import { Fields } from '../core/config.js'
import { BeckonError } from '../core/errors.js'
import { silentLogger, type Logger } from '../core/log.js'
import { migrationProvider } from './migrations/index.js'
import type { DB, SqlDialect } from './schema.js'
import { SqlStore, classify } from './sql.js'
import type { Store } from './store.js'

export type StoreSpec = { sqlite: string } | { postgres: string }

export interface OpenStoreOptions {
  log?: Logger
  /** PostgreSQL pool size per process (default 10). */
  poolSize?: number
  /** How long to wait for a PostgreSQL connection (default 5000 ms). */
  connectTimeoutMs?: number
}

const BUSY_TIMEOUT_MS = 5000
const DEFAULT_STATE_DIR = '/var/lib/beckon'

/** postgres://user:secret@host/db → postgres://user:[redacted]@host/db */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '[redacted]'
    for (const k of [...u.searchParams.keys()]) if (/pass/i.test(k)) u.searchParams.set(k, '[redacted]')
    return u.toString()
  } catch {
    // Unparseable: show the scheme only, the rest may hold a password.
    return `${url.split(':', 1)[0] ?? 'postgres'}://[unparseable]`
  }
}

/** Human-readable, password-free description of a spec. */
export function describeStore (spec: StoreSpec): string {
  return 'sqlite' in spec ? `sqlite:${String(spec.sqlite)}` : redactUrl(String(spec.postgres))
}

/**
 * Reads the role's `store:` section. Unknown keys and both back ends at once are
 * refused; a relative SQLite path is taken relative to the state directory
 * (systemd's $STATE_DIRECTORY, else /var/lib/beckon).
 */
export function parseStoreConfig (role: Fields, opts: { stateDir?: string } = {}): StoreSpec {
  const stateDir = opts.stateDir ?? process.env.STATE_DIRECTORY?.split(':')[0] ?? DEFAULT_STATE_DIR
  const f = role.sub('store')
  for (const k of Object.keys(f.obj)) {
    if (k !== 'sqlite' && k !== 'postgres') throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.${k} is not a store setting (use sqlite or postgres)`)
  }
  if (f.has('sqlite') && f.has('postgres')) throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}: set either sqlite or postgres, not both`)
  if (f.has('postgres')) {
    const url = f.str('postgres')
    if (!/^postgres(ql)?:\/\//.test(url)) throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.postgres must be a postgres:// URL (got ${redactUrl(url)})`)
    try { new URL(url) } catch { throw new BeckonError('BECKON_ERR_CONFIG', `${f.path}.postgres is not a valid URL (got ${redactUrl(url)})`) }
    return { postgres: url }
  }
  const path = f.str('sqlite', join(stateDir, 'beckon.db'))
  if (path === ':memory:') return { sqlite: path }
  return { sqlite: isAbsolute(path) ? path : resolve(stateDir, path) }
}

/** Opens (and migrates) the store. BECKON_ERR_STORE_UNAVAILABLE when it cannot be reached. */
export async function openStore (spec: StoreSpec, opts: OpenStoreOptions = {}): Promise<Store> {
  const s = (spec ?? {}) as { sqlite?: unknown, postgres?: unknown }
  if (typeof s.sqlite === 'string' && s.sqlite !== '' && s.postgres === undefined) {
    return await openSqlite(s.sqlite, (opts.log ?? silentLogger).child({ store: `sqlite:${s.sqlite}` }))
  }
  if (typeof s.postgres === 'string' && s.postgres !== '' && s.sqlite === undefined) {
    return await openPostgres(s.postgres, (opts.log ?? silentLogger).child({ store: redactUrl(s.postgres) }), opts)
  }
  throw new BeckonError('BECKON_ERR_CONFIG', 'store spec must be { sqlite: <path> } or { postgres: <url> }')
}

async function openSqlite (path: string, log: Logger): Promise<Store> {
  let raw: Database.Database
  try {
    if (path !== ':memory:') {
      // Created 0600 before SQLite sees it: the file holds password and token hashes,
      // and SQLite gives the -wal and -shm files the database file's mode. A missing
      // state directory is made private.
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      closeSync(openSync(path, 'a', 0o600))
    }
    raw = new Database(path, { timeout: BUSY_TIMEOUT_MS })
  } catch (err) {
    throw new BeckonError('BECKON_ERR_STORE_UNAVAILABLE', `cannot open sqlite:${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    raw.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    const mode = raw.pragma('journal_mode = WAL', { simple: true })
    if (path !== ':memory:' && mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`)
    raw.pragma('synchronous = FULL')
    raw.pragma('foreign_keys = ON')
  } catch (err) {
    raw.close()
    throw new BeckonError('BECKON_ERR_STORE_UNAVAILABLE', `cannot set up sqlite:${path}: ${(err as Error).message}`, { cause: err })
  }
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: raw }) })
  const serialize = writeQueue(path === ':memory:' ? undefined : realpathSync(path))
  await serialize(async () => { await migrate(db, 'sqlite', log, () => db.destroy()) })
  log.debug({ path }, 'sqlite store open')
  return new SqlStore('sqlite', db, { log, destroy: () => db.destroy(), serialize })
}

/** One queue of write transactions per database file and process (see SqlStoreOptions.serialize). */
const queues = new Map<string, { tail: Promise<unknown> }>()

function writeQueue (file: string | undefined): <T>(fn: () => Promise<T>) => Promise<T> {
  const q = file === undefined ? { tail: Promise.resolve() as Promise<unknown> } : queues.get(file) ?? { tail: Promise.resolve() }
  if (file !== undefined) queues.set(file, q)
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    const run = q.tail.then(fn, fn)
    q.tail = run.catch(() => {})
    return await run
  }
}

/** pg hands int8 (oid 20) back as strings; our bigints are ms timestamps and counters. */
const INT8_OID = 20
const pgTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => oid === INT8_OID && format !== 'binary'
    ? (v: string) => Number(v)
    : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
}

async function openPostgres (url: string, log: Logger, opts: OpenStoreOptions): Promise<Store> {
  const where = redactUrl(url)
  let pool: pg.Pool
  try {
    pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      application_name: 'beckon',
      types: pgTypes,
    })
  } catch (err) {
    throw new BeckonError('BECKON_ERR_STORE_UNAVAILABLE', `cannot use ${where}: ${(err as Error).message}`, { cause: err })
  }
  // An idle client losing its server emits 'error' on the pool; unhandled, it would
  // kill the process. The next query gets a fresh connection or a coded error.
  const lost = (err: Error): void => { log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'postgres connection lost') }
  pool.on('error', lost)
  // A client checked out of the pool has no error listener until its query starts: a
  // connection that dies in that window (failover, pg_terminate_backend) would emit an
  // unhandled 'error'. Every client gets a listener for its whole life.
  pool.on('connect', (client) => { client.on('error', lost) })
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  try {
    await sql`select 1`.execute(db)
  } catch (err) {
    await db.destroy().catch(() => {})
    throw new BeckonError('BECKON_ERR_STORE_UNAVAILABLE', `cannot reach ${where}: ${(err as Error).message}`, { cause: err })
  }
  await migrate(db, 'postgres', log, () => db.destroy())
  log.debug('postgres store open')
  return new SqlStore('postgres', db, { log, destroy: () => db.destroy() })
}

/**
 * Applies every pending migration. kysely serialises concurrent migrators: PostgreSQL
 * with an advisory lock, SQLite with the database's write lock (a second process gets
 * SQLITE_BUSY once busy_timeout passes: we retry a few times).
 */
async function migrate (db: Kysely<DB>, dialect: SqlDialect, log: Logger, destroy: () => Promise<void>): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider(dialect) })
  let lastError: unknown
  for (let attempt = 1; attempt <= 3; attempt++) {
    const { error, results } = await migrator.migrateToLatest()
    for (const r of results ?? []) {
      if (r.status === 'Success') log.info({ migration: r.migrationName }, 'store migration applied')
      else if (r.status === 'Error') log.error({ migration: r.migrationName }, 'store migration failed')
    }
    if (error === undefined) return
    lastError = error
    if (classify(error) !== 'BECKON_ERR_STORE_UNAVAILABLE') break
  }
  await destroy().catch(() => {})
  const code = classify(lastError) === 'BECKON_ERR_STORE_UNAVAILABLE' ? 'BECKON_ERR_STORE_UNAVAILABLE' : 'BECKON_ERR_STORE'
  throw new BeckonError(code, `migrations failed: ${lastError instanceof Error ? lastError.message : String(lastError)}`, { cause: lastError })
}
