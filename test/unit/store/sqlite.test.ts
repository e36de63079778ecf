// The Store contract on SQLite (a file per test, WAL), plus the store configuration,
// the pragmas openStore sets and how it fails to open.
import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Fields } from '../../../src/core/config.js'
import { openStore, parseStoreConfig, redactUrl } from '../../../src/store/open.js'
import type { Store } from '../../../src/store/store.js'
import { storeSuite } from './suite.js'

const root = mkdtempSync(join(tmpdir(), 'beckon-sqlite-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
let n = 0

storeSuite(t, {
  fresh: async (t) => {
    const file = join(root, `s${++n}.db`)
    const opened: Store[] = []
    t.teardown(async () => { for (const s of opened) await s.close() })
    const again = async (): Promise<Store> => {
      const s = await openStore({ sqlite: file })
      opened.push(s)
      return s
    }
    return { store: await again(), again }
  },
})

t.test('the file: WAL, FULL sync, foreign keys, mode 0600, schema and indexes', async (t) => {
  const file = join(root, 'pragmas.db')
  const s = await openStore({ sqlite: file })
  t.teardown(() => s.close())
  t.equal(s.kind, 'sqlite')
  t.equal(statSync(file).mode & 0o777, 0o600, 'created private: it holds password hashes')
  const raw = new Database(file, { readonly: true })
  t.teardown(() => raw.close())
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal')
  t.equal(raw.pragma('integrity_check', { simple: true }), 'ok')
  const indexes = (raw.prepare("select name from sqlite_master where type = 'index' and name not like 'sqlite_%' order by name").all() as Array<{ name: string }>).map((r) => r.name)
  t.strictSame(indexes, ['audit_action', 'audit_actor', 'audit_at', 'audit_target', 'sessions_device', 'sessions_ended_at', 'sessions_started_at', 'sessions_user'])
  t.strictSame((raw.prepare('select name from kysely_migration').all() as Array<{ name: string }>).map((r) => r.name), ['001_initial'])
  const cols = (raw.prepare('pragma table_info(sessions)').all() as Array<{ name: string }>).map((c) => c.name)
  t.strictSame(cols, ['id', 'relay', 'user', 'device', 'mode', 'port', 'stage', 'channel', 'fallback', 'bytes_up', 'bytes_down', 'ike_state', 'child_state', 'started_at', 'ended_at', 'outcome', 'reason', 'kill_requested'], 'one column per SessionRecord field')
})

t.test(':memory: works for throwaway stores', async (t) => {
  const s = await openStore({ sqlite: ':memory:' })
  t.teardown(() => s.close())
  await s.put('group', 'g', { name: 'g' }, 'x')
  t.equal(await s.revision(), 1)
})

t.test('cannot open → BECKON_ERR_STORE_UNAVAILABLE; a bad spec → BECKON_ERR_CONFIG', async (t) => {
  // A missing state directory is made; a parent that is a file cannot be.
  writeFileSync(join(root, 'a-file'), 'x')
  await t.rejects(openStore({ sqlite: join(root, 'a-file', 'x.db') }), { code: 'BECKON_ERR_STORE_UNAVAILABLE', message: /a-file/ })
  const f = join(root, 'garbage.db')
  writeFileSync(f, 'this is not a database, it is a text file that is long enough to have a header'.repeat(20))
  chmodSync(f, 0o600)
  await t.rejects(openStore({ sqlite: f }), { code: 'BECKON_ERR_STORE_UNAVAILABLE' }, 'not a database')
  await t.rejects(openStore({} as never), { code: 'BECKON_ERR_CONFIG' })
  await t.rejects(openStore({ sqlite: '' }), { code: 'BECKON_ERR_CONFIG' })
  await t.rejects(openStore(null as never), { code: 'BECKON_ERR_CONFIG' })
})

t.test('parseStoreConfig: the role\'s store section', async (t) => {
  const parse = (obj: unknown, stateDir = '/var/lib/beckon/relay'): unknown => parseStoreConfig(Fields.of(obj, 'relay.yaml'), { stateDir })
  t.strictSame(parse({}), { sqlite: '/var/lib/beckon/relay/beckon.db' }, 'default: <state_dir>/beckon.db')
  t.strictSame(parse({ store: null }), { sqlite: '/var/lib/beckon/relay/beckon.db' })
  t.strictSame(parse({ store: { sqlite: '/srv/b.db' } }), { sqlite: '/srv/b.db' })
  t.strictSame(parse({ store: { sqlite: 'sub/b.db' } }), { sqlite: '/var/lib/beckon/relay/sub/b.db' }, 'relative to the state directory')
  t.strictSame(parse({ store: { postgres: 'postgres://beckon:pw@db.example:5432/beckon' } }), { postgres: 'postgres://beckon:pw@db.example:5432/beckon' })
  t.strictSame(parse({ store: { postgres: 'postgresql://db.example/beckon?sslmode=require' } }), { postgres: 'postgresql://db.example/beckon?sslmode=require' })
  t.throws(() => parse({ store: { mysql: 'x' } }), { code: 'BECKON_ERR_CONFIG', message: /relay\.yaml\.store\.mysql/ })
  t.throws(() => parse({ store: { sqlite: '/a', postgres: 'postgres://x/y' } }), { code: 'BECKON_ERR_CONFIG', message: /either/ })
  t.throws(() => parse({ store: 'sqlite' }), { code: 'BECKON_ERR_CONFIG', message: /relay\.yaml\.store must be a mapping/ })
  t.throws(() => parse({ store: { sqlite: '' } }), { code: 'BECKON_ERR_CONFIG', message: /store\.sqlite/ })
  const bad = (() => { try { parse({ store: { postgres: 'mysql://root:topsecret@h/d' } }) } catch (err) { return err as Error } })()
  t.match(bad, { code: 'BECKON_ERR_CONFIG', message: /postgres:\/\/ URL/ })
  t.notMatch(bad!.message, /topsecret/, 'the password is not in the message')
  const saved = process.env.STATE_DIRECTORY
  process.env.STATE_DIRECTORY = '/var/lib/beckon/gateway:/other'
  t.teardown(() => { if (saved === undefined) delete process.env.STATE_DIRECTORY; else process.env.STATE_DIRECTORY = saved })
  t.strictSame(parseStoreConfig(Fields.of({}, 'gateway.yaml')), { sqlite: '/var/lib/beckon/gateway/beckon.db' }, "systemd's $STATE_DIRECTORY")
})

t.test('redactUrl', async (t) => {
  t.equal(redactUrl('postgres://beckon:s3cret@db.example:5432/beckon'), 'postgres://beckon:%5Bredacted%5D@db.example:5432/beckon')
  t.equal(redactUrl('postgres://db.example/beckon?password=s3cret&sslmode=require'), 'postgres://db.example/beckon?password=%5Bredacted%5D&sslmode=require')
  t.equal(redactUrl('postgres://db.example/beckon'), 'postgres://db.example/beckon')
  t.equal(redactUrl('postgres://us:pw@[bad'), 'postgres://[unparseable]')
})
