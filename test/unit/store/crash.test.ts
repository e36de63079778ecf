// A writer SIGKILLed in the middle of a burst of puts leaves nothing half-written:
// after reopening (migrations run again, as no-ops), the SQLite file passes
// integrity_check, every acknowledged put is there, every device has exactly its one
// audit entry, no audit entry lacks its device, and the revision equals the number
// of change entries. The same against PostgreSQL, where the client dies mid-transaction.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { openStore, type StoreSpec } from '../../../src/store/open.js'
import type { Store } from '../../../src/store/store.js'
import { startPostgres } from '../../helpers/postgres.js'
import { allAudit } from './suite.js'

const FIXTURE = fileURLToPath(new URL('../../fixtures/store-burst.ts', import.meta.url))
// The child runs TypeScript through the same loader tap gives us.
const TS_LOADER = process.execArgv.filter((a) => a.includes('@tapjs/typescript'))

/** Starts the writer, waits for `acked` committed puts, SIGKILLs it; returns the acknowledged keys. */
async function killMidBurst (t: Test, spec: StoreSpec, prefix: string, acked: number): Promise<string[]> {
  const child = spawn(process.execPath, [...TS_LOADER, FIXTURE, JSON.stringify(spec), prefix], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
  const keys: string[] = []
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? String(code))))
  const lines = createInterface({ input: child.stdout })
  const enough = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${keys.length} puts acknowledged in 60 s: ${stderr}`)), 60_000)
    lines.on('line', (line) => {
      if (line === 'open') return
      keys.push(line)
      if (keys.length === acked) { clearTimeout(timer); resolve() }
    })
    void exited.then((how) => { clearTimeout(timer); reject(new Error(`writer exited (${how}) after ${keys.length} puts: ${stderr}`)) })
  })
  await enough
  child.kill('SIGKILL')
  t.equal(await exited, 'SIGKILL', `writer killed after ${keys.length} acknowledged puts`)
  lines.close()
  return keys
}

async function checkConsistent (t: Test, s: Store, acked: string[]): Promise<number> {
  const devices = new Set((await s.list('device')).map((d) => d.name))
  for (const k of acked) if (!devices.has(k)) t.fail(`acknowledged put of ${k} is lost`)
  const audit = (await allAudit(s)).filter((e) => e.target.startsWith('device/'))
  const perDevice = new Map<string, number>()
  for (const e of audit) perDevice.set(e.target.slice('device/'.length), (perDevice.get(e.target.slice('device/'.length)) ?? 0) + 1)
  const orphans = [...perDevice.keys()].filter((k) => !devices.has(k))
  const wrong = [...devices].filter((k) => perDevice.get(k) !== 1)
  t.strictSame(orphans, [], 'no audit entry without its record')
  t.strictSame(wrong, [], 'every device has exactly one audit entry')
  t.ok(audit.every((e) => e.action === 'device.create' && e.actor === 'burst'))
  t.equal(await s.revision(), audit.length, `revision = change entries = ${audit.length}`)
  t.ok(devices.size >= acked.length, `${devices.size} devices ≥ ${acked.length} acknowledged (at most the in-flight ones more)`)
  return devices.size
}

t.test('SQLite: SIGKILL mid-burst, twice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'beckon-crash-sqlite-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'beckon.db')
  const acked: string[] = []
  let count = 0
  for (const round of ['a', 'b']) {
    acked.push(...await killMidBurst(t, { sqlite: file }, round, 60))
    const s = await openStore({ sqlite: file })
    try {
      const raw = new Database(file, { readonly: true })
      try {
        t.equal(raw.pragma('integrity_check', { simple: true }), 'ok', `round ${round}: integrity_check`)
        t.strictSame(raw.prepare('select name from kysely_migration').all(), [{ name: '001_initial' }], 'the migration ran once')
      } finally { raw.close() }
      const now = await checkConsistent(t, s, acked)
      t.ok(now > count, 'the second writer continued on the reopened file')
      count = now
    } finally { await s.close() }
  }
})

t.test('PostgreSQL: the client SIGKILLed mid-burst, twice', async (t) => {
  const { url } = await startPostgres(t)
  const acked: string[] = []
  for (const round of ['a', 'b']) {
    acked.push(...await killMidBurst(t, { postgres: url }, round, 60))
    const s = await openStore({ postgres: url })
    try {
      await checkConsistent(t, s, acked)
    } finally { await s.close() }
  }
})
