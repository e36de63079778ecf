// The Store contract on PostgreSQL 15 (a private server per file, a database per
// test), plus what is PostgreSQL's own: the schema's types, two processes sharing one
// database, the atomic revision bump, unreachable servers and password redaction.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { createLogger } from '../../../src/core/log.js'
import { openStore } from '../../../src/store/open.js'
import type { Store } from '../../../src/store/store.js'
import { freePort, startPostgres, startPostgresServer } from '../../helpers/postgres.js'
import { checkRevisionInvariant, gateway, group, storeSuite } from './suite.js'

const { url: baseUrl, server } = await startPostgres(t)
let n = 0

async function freshDb (t: Parameters<Parameters<typeof storeSuite>[1]['fresh']>[0]): Promise<{ url: string, store: Store, again: () => Promise<Store> }> {
  const url = await server.createDatabase(`t${++n}`)
  const opened: Store[] = []
  t.teardown(async () => { for (const s of opened) await s.close() })
  const again = async (): Promise<Store> => {
    const s = await openStore({ postgres: url })
    opened.push(s)
    return s
  }
  return { url, store: await again(), again }
}

storeSuite(t, { fresh: freshDb })

t.test('schema: jsonb documents, bigint columns, the migration recorded', async (t) => {
  const s = await openStore({ postgres: baseUrl })
  t.teardown(() => s.close())
  t.equal(s.kind, 'postgres')
  const c = new pg.Client({ connectionString: baseUrl })
  await c.connect()
  t.teardown(() => c.end())
  const types = await c.query("select table_name, column_name, data_type from information_schema.columns where table_schema = 'public' and table_name in ('records', 'audit', 'meta') order by 1, 2")
  const byCol = Object.fromEntries(types.rows.map((r) => [`${r.table_name}.${r.column_name}`, r.data_type]))
  t.match(byCol, { 'records.value': 'jsonb', 'records.updated_at': 'bigint', 'audit.id': 'bigint', 'audit.before': 'jsonb', 'audit.detail': 'jsonb', 'meta.value': 'bigint' })
  const idx = await c.query("select indexname from pg_indexes where schemaname = 'public' and indexname like any (array['audit_%', 'sessions_%']) order by 1")
  t.strictSame(idx.rows.map((r) => r.indexname), ['audit_action', 'audit_actor', 'audit_at', 'audit_pkey', 'audit_target', 'sessions_device', 'sessions_ended_at', 'sessions_pkey', 'sessions_started_at', 'sessions_user'])
  t.strictSame((await c.query('select name from kysely_migration')).rows, [{ name: '001_initial' }])
})

t.test('two processes on one database: a record put through one is read by the other, the revision bump is atomic', async (t) => {
  const { url, store: here } = await freshDb(t)
  await here.put('gateway', 'gw1', gateway('gw1'), 'parent')
  // Another OS process with its own pool: 3 × 30 puts racing with 30 of ours.
  const writer = `
    const { openStore } = await import(${JSON.stringify(new URL('../../../src/store/open.ts', import.meta.url).href)})
    const s = await openStore({ postgres: process.argv[1] })
    const seen = await s.get('gateway', 'gw1')
    await Promise.all([0, 1, 2].map(async (w) => { for (let i = 0; i < 30; i++) await s.put('group', 'c' + w + '-' + i, { name: 'c' + w + '-' + i }, 'child') }))
    process.stdout.write(JSON.stringify({ seen, revision: await s.revision() }))
    await s.close()
  `
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.includes('typescript')), '--input-type=module', '-e', writer, url], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { child.kill('SIGKILL') })
  for (let i = 0; i < 30; i++) await here.put('group', `p-${i}`, group(`p-${i}`), 'parent')
  t.equal(await done, 0, 'the other process finished')
  const result = JSON.parse(out) as { seen: unknown, revision: number }
  t.strictSame(result.seen, gateway('gw1'), 'the other process read what this one wrote')
  t.ok(result.revision >= 91, 'it saw its own and our changes')
  t.equal(await here.revision(), 121, 'no bump lost: 1 + 30 + 90')
  t.equal((await here.list('group')).length, 120, 'the other process\'s records are here')
  await checkRevisionInvariant(t, here)
})

t.test('unreachable or refusing server → BECKON_ERR_STORE_UNAVAILABLE, password never shown', async (t) => {
  const port = await freePort()
  const err = await openStore({ postgres: `postgres://beckon:topsecret@127.0.0.1:${port}/beckon` }, { connectTimeoutMs: 2000 }).then(async (s) => { await s.close(); return new Error('opened') }, (e: unknown) => e as Error)
  t.match(err, { code: 'BECKON_ERR_STORE_UNAVAILABLE', message: /cannot reach postgres:\/\/beckon:%5Bredacted%5D@127\.0\.0\.1/ })
  t.notMatch(err.message, /topsecret/)
  const noDb = await openStore({ postgres: server.url('no_such_database') }).then(async (s) => { await s.close(); return new Error('opened') }, (e: unknown) => e as Error)
  t.match(noDb, { code: 'BECKON_ERR_STORE_UNAVAILABLE', message: /no_such_database/ })
})

t.test('logs carry the redacted URL only', async (t) => {
  let logged = ''
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { logged += chunk.toString(); cb() } })
  const log = createLogger({ level: 'debug', destination: sink })
  const url = server.url(`t${++n}`)
  await server.createDatabase(`t${n}`)
  // trust authentication ignores the password, so the URL may carry one
  const withPassword = url.replace('postgres@', 'postgres:topsecret@')
  const s = await openStore({ postgres: withPassword }, { log })
  await s.put('group', 'g', group('g'), 'x')
  await s.close()
  t.match(logged, /store migration applied/)
  t.match(logged, /%5Bredacted%5D/)
  t.notMatch(logged, /topsecret/)
})

t.test('a server that goes away: coded errors, no crash, and the store recovers', async (t) => {
  const { url, store } = await freshDb(t)
  await store.put('group', 'g', group('g'), 'x')
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  t.teardown(() => admin.end())
  const dbName = new URL(url).pathname.slice(1)
  // Several rounds: a connection may die idle in the pool, or just after checkout.
  for (let round = 0; round < 5; round++) {
    // Kill our store's connections as an admin would (or a failover does).
    await Promise.all([store.ping().catch(() => {}), store.get('group', 'g').catch(() => {})])
    await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [dbName])
    // The first use of a dead pooled connection may fail; it must fail coded.
    const first = await store.get('group', 'g').catch((e: unknown) => e)
    if (first instanceof Error) t.match(first, { code: 'BECKON_ERR_STORE_UNAVAILABLE' }, 'a dead connection fails coded')
    let ok = false
    for (let i = 0; i < 20 && !ok; i++) ok = await store.get('group', 'g').then((v) => v !== undefined, () => false)
    t.ok(ok, 'reads work again on fresh connections')
  }
  t.equal(await store.revision(), 1)
})

t.test('the helper: a wrap prefix, loopback only, cleanup even when its process is SIGKILLed', async (t) => {
  await t.rejects(startPostgresServer({ dir: join(tmpdir(), 'beckon-pg-never'), host: '0.0.0.0' }), /loopback only/)
  t.notOk(existsSync(join(tmpdir(), 'beckon-pg-never')), 'refused before creating anything')

  // A wrap prefix runs the server under another command (the lab uses ip netns exec).
  const dir = mkdtempSync(join(tmpdir(), 'beckon-pg-wrap-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const wrapped = await startPostgresServer({ dir, wrap: ['env', 'PGTZ=UTC'], removeDir: true })
  t.teardown(() => wrapped.stop())
  const c = new pg.Client({ host: wrapped.socketDir, port: wrapped.port, user: 'postgres', database: 'postgres' })
  await c.connect()
  t.equal((await c.query('select 1 as one')).rows[0].one, 1, 'reachable over the unix socket')
  await c.end()
  await wrapped.stop()
  t.notOk(existsSync(dir), 'stopped and removed')

  // The owner dies without any cleanup code running: the watchdog still stops postgres.
  const owner = `
    const { startPostgresServer } = await import(${JSON.stringify(new URL('../../helpers/postgres.ts', import.meta.url).href)})
    const { mkdtempSync } = await import('node:fs')
    const dir = mkdtempSync(process.argv[1])
    const s = await startPostgresServer({ dir, removeDir: true })
    process.stdout.write(JSON.stringify({ dir, port: s.port }) + '\\n')
    process.kill(process.pid, 'SIGKILL')
  `
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.includes('typescript')), '--input-type=module', '-e', owner, join(tmpdir(), 'beckon-pg-orphan-')], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  const how = await new Promise<string | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
  t.equal(how, 'SIGKILL')
  const { dir: orphanDir, port } = JSON.parse(out) as { dir: string, port: number }
  t.teardown(() => rmSync(orphanDir, { recursive: true, force: true }))
  let gone = false
  for (let i = 0; i < 200 && !gone; i++) {
    gone = !existsSync(orphanDir)
    if (!gone) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(gone, 'the orphaned server stopped and removed its directory')
  const probe = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 })
  probe.on('error', () => {})
  await t.rejects(probe.connect(), 'nothing listens on its port any more')
})
