/**
 * A throwaway store for unit tests and for a relay whose devices still live in
 * relay.yaml: the real SQL store on an in-memory SQLite database. Same code, same
 * semantics (audit per change, revision, conflicts, transactions) as production —
 * there is no second implementation to drift — just no file.
 */
import type { Logger } from '../core/log.js'
import { openStore } from './open.js'
import type { Store } from './store.js'

export async function memoryStore (opts: { log?: Logger } = {}): Promise<Store> {
  return await openStore({ sqlite: ':memory:' }, opts)
}
