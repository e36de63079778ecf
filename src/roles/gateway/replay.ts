/**
 * The gateway's replay cache on disk: a signal acted on once stays refused after a
 * restart, until it expires.
 *
 *   <state_dir>/replay.json = {"v":1,"entries":[["<24 hex session id>", <expiry, Unix s>], …]}
 *
 * Written before the gateway dials (a signal whose entry cannot be written is refused:
 * fail closed), atomically (temp file, fsync, rename), and bounded: expired entries
 * are dropped on every write, and the cache refuses new signals when full rather than
 * forget unexpired ones.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { BeckonError } from '../../core/errors.js'
import { ReplayCache } from '../../proto/signal/token.js'

export const REPLAY_FILE = 'replay.json'
/** Entries the gateway remembers at most (≈ 40 bytes each on disk). */
export const MAX_REPLAY_ENTRIES = 100_000
const MAX_FILE = MAX_REPLAY_ENTRIES * 48 + 64

export class PersistentReplayCache {
  private readonly cache = new ReplayCache(MAX_REPLAY_ENTRIES)

  constructor (readonly path: string, nowSec: number) {
    let text: string
    try {
      if (statSync(path).size > MAX_FILE) throw new BeckonError('BECKON_ERR_CONFIG', `${path}: replay cache larger than ${MAX_FILE} bytes`)
      text = readFileSync(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      if (err instanceof BeckonError) throw err
      throw new BeckonError('BECKON_ERR_CONFIG', `cannot read the replay cache ${path}: ${(err as Error).message}`)
    }
    let v: unknown
    try { v = JSON.parse(text) } catch { v = undefined }
    const entries = (v as { v?: unknown, entries?: unknown } | undefined)?.entries
    if ((v as { v?: unknown } | undefined)?.v !== 1 || !Array.isArray(entries)) {
      // Refuse to start rather than forget: an unreadable cache would reopen the replay window.
      throw new BeckonError('BECKON_ERR_CONFIG', `replay cache ${path} is not a Beckon replay file; move it away to start afresh`)
    }
    this.cache.load(entries.filter((e): e is [string, number] => Array.isArray(e) && typeof e[0] === 'string' && Number.isInteger(e[1])), nowSec)
  }

  get size (): number { return this.cache.size }

  /** Admits a session id once and persists it before returning; throws coded errors. */
  admit (sessionId: Buffer, expiry: number, nowSec: number): void {
    this.cache.admit(sessionId, expiry, nowSec)
    this.cache.prune(nowSec)
    try {
      this.save()
    } catch (err) {
      this.cache.forget(sessionId)
      throw new BeckonError('BECKON_ERR_INTERNAL', `cannot persist the replay cache ${this.path}: ${(err as Error).message}`)
    }
  }

  private save (): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 })
    const tmp = `${this.path}.${process.pid}.tmp`
    const fd = openSync(tmp, 'w', 0o600)
    try {
      writeSync(fd, JSON.stringify({ v: 1, entries: this.cache.entries() }))
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, this.path)
  }
}
