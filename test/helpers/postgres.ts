/**
 * A private PostgreSQL 15 for tests: Debian's binaries (`postgresql` package) run from
 * a temporary data directory, listening on 127.0.0.1 at a free port and on a unix
 * socket in that directory, trust authentication, no fsync (nothing here survives the
 * test anyway).
 *
 * initdb and postgres refuse to run as root, so as root they run as the `postgres` OS
 * user through `runuser -u postgres --`, with the directory chowned to it.
 *
 * Cleanup does not depend on the test process ending well: postgres runs under a
 * small sh watchdog whose stdin is a pipe from this process. When the pipe closes —
 * stop(), or this process dying in any way, even SIGKILL — the watchdog asks postgres
 * for a fast shutdown (SIGINT) and, when asked to, removes the directory.
 *
 *   node ──pipe──▶ [wrap…] [runuser -u postgres --] sh watchdog ──▶ postgres -D dir/data
 *
 * `wrap` prefixes the command (e.g. ['ip', 'netns', 'exec', 'lab-relay']) so the lab
 * can run the server inside a network namespace; readiness is probed over the unix
 * socket, which works from outside any namespace.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

export const PG_BIN = process.env.BECKON_PG_BIN ?? '/usr/lib/postgresql/15/bin'

export interface PostgresServerOptions {
  /** Holds `data/` and the unix socket; created if missing. */
  dir: string
  /** Loopback only: 127.0.0.1 (default) or ::1. */
  host?: string
  /** 0 or absent: a free port. */
  port?: number
  /** OS user to run as; default `postgres` when root, nobody else otherwise. */
  runAs?: string
  /** Command prefix, e.g. ['ip', 'netns', 'exec', 'x']. */
  wrap?: string[]
  /** Remove `dir` once postgres has stopped (also after this process died). */
  removeDir?: boolean
  /** Readiness deadline (default 30 s). */
  readyTimeoutMs?: number
}

export interface PostgresServer {
  host: string
  port: number
  /** Directory of the unix socket (`host` for a socket connection). */
  socketDir: string
  /** postgres://postgres@host:port/<database> over TCP. */
  url: (database?: string) => string
  /** Creates an empty database and returns its URL. */
  createDatabase: (name: string) => Promise<string>
  stop: () => Promise<void>
}

/** Watchdog: $1 is what to remove afterwards ('' = nothing), the rest is postgres' argv. */
const WATCHDOG = `
exec 3<&0
rmdir_after="$1"; shift
"$@" 3<&- </dev/null &
pg=$!
{ while read -r _ <&3; do :; done; kill -INT "$pg" 2>/dev/null; } &
watch=$!
wait "$pg"; rc=$?
kill "$watch" 2>/dev/null
[ -n "$rmdir_after" ] && rm -rf -- "$rmdir_after"
exit "$rc"
`

/** A port nobody listens on right now (postgres may still lose a race: we retry). */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const addr = srv.address()
      srv.close(() => { typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')) })
    })
  })
}

function userIds (name: string): { uid: number, gid: number } {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' })
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' })
  if (r.status !== 0 || g.status !== 0) throw new Error(`no OS user ${name}: ${r.stderr}`)
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function probe (socketDir: string, port: number): Promise<boolean> {
  const c = new pg.Client({ host: socketDir, port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 })
  c.on('error', () => {})
  try {
    await c.connect()
    await c.query('select 1')
    return true
  } catch {
    return false
  } finally {
    await c.end().catch(() => {})
  }
}

function exited (child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()))
}

export async function startPostgresServer (o: PostgresServerOptions): Promise<PostgresServer> {
  const host = o.host ?? '127.0.0.1'
  if (host !== '127.0.0.1' && host !== '::1') throw new Error(`postgres test server listens on loopback only, not ${host}`)
  const wrap = o.wrap ?? []
  const root = process.getuid?.() === 0
  const runAs = o.runAs ?? (root ? 'postgres' : undefined)
  const asUser = runAs === undefined ? [] : ['runuser', '-u', runAs, '--']
  const data = join(o.dir, 'data')
  mkdirSync(o.dir, { recursive: true, mode: 0o700 })
  if (runAs !== undefined && root) {
    const { uid, gid } = userIds(runAs)
    chownSync(o.dir, uid, gid)
  }

  if (!existsSync(join(data, 'PG_VERSION'))) {
    const argv = [...wrap, ...asUser, join(PG_BIN, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']
    const init = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000 })
    if (init.status !== 0) throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr || init.stdout || String(init.error)}`)
  }

  let lastErr = ''
  // A free port can be taken between freePort() and postgres' bind: a few attempts.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = o.port !== undefined && o.port !== 0 ? o.port : await freePort(host)
    const argv = [
      ...wrap, ...asUser, 'sh', '-c', WATCHDOG, 'beckon-postgres', o.removeDir === true ? o.dir : '',
      join(PG_BIN, 'postgres'), '-D', data, '-p', String(port), '-k', o.dir,
      '-c', `listen_addresses=${host}`, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      '-c', 'max_connections=60', '-c', 'logging_collector=off', '-c', 'log_min_messages=warning',
    ]
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], detached: true })
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
    child.stdin!.on('error', () => {})
    // Ours alone to end; the test process must not wait for it to exit.
    child.unref()
    ;(child.stderr as unknown as { unref?: () => void }).unref?.()

    const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000)
    let ready = false
    for (let delay = 20; Date.now() < deadline && child.exitCode === null && child.signalCode === null; delay = Math.min(delay * 2, 250)) {
      if (await probe(o.dir, port)) { ready = true; break }
      await sleep(delay)
    }
    if (ready) {
      let stopped: Promise<void> | undefined
      const stop = async (): Promise<void> => {
        stopped ??= (async () => {
          child.stdin!.end()
          const timer = setTimeout(() => { killHard(child, data) }, 20_000)
          await exited(child)
          clearTimeout(timer)
          process.removeListener('exit', onExit)
        })()
        await stopped
      }
      // Last resort if nothing called stop(): the pipe closes with us anyway, this is faster.
      const onExit = (): void => { child.stdin!.destroy() }
      process.once('exit', onExit)
      const url = (database = 'postgres'): string => `postgres://postgres@${host === '::1' ? '[::1]' : host}:${port}/${database}`
      return {
        host,
        port,
        socketDir: o.dir,
        url,
        stop,
        createDatabase: async (name: string): Promise<string> => {
          if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`)
          const c = new pg.Client({ host: o.dir, port, user: 'postgres', database: 'postgres' })
          await c.connect()
          try { await c.query(`create database ${name}`) } finally { await c.end() }
          return url(name)
        },
      }
    }
    child.stdin!.end()
    const timer = setTimeout(() => { killHard(child, data) }, 10_000)
    await exited(child)
    clearTimeout(timer)
    lastErr = stderr
    if (!/could not bind|Address already in use/.test(stderr) || (o.port !== undefined && o.port !== 0)) break
  }
  throw new Error(`postgres did not start: ${lastErr.trim() || 'not ready in time'}`)
}

/** When a fast shutdown hangs: SIGKILL the postmaster (its pid file) and our process group. */
function killHard (child: ChildProcess, data: string): void {
  try {
    const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    if (Number.isInteger(pid) && pid > 1) process.kill(pid, 'SIGKILL')
  } catch {}
  try { if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL') } catch {}
}

/** tap's test object, the part used here. */
interface Teardown { teardown: (fn: () => Promise<void> | void) => void }

/**
 * A fresh server with one database `beckon`, stopped and removed at the end of `t`
 * (also when the test fails).
 */
export async function startPostgres (t: Teardown, o: { wrap?: string[] } = {}): Promise<{ url: string, server: PostgresServer, stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'beckon-pg-'))
  let server: PostgresServer
  try {
    server = await startPostgresServer({ dir, removeDir: true, ...o })
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const stop = async (): Promise<void> => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  t.teardown(stop)
  const url = await server.createDatabase('beckon')
  return { url, server, stop }
}
