/**
 * Shared by the fuzz suite: seeded and short under `npm test`; `npm run fuzz` sets
 * FUZZ_RUNS=1000000 for long runs. FUZZ_SEED replays one run (the seed is printed).
 *
 * Every property checks the same contract for a parser: it returns or throws a coded
 * BeckonError (never TypeError/RangeError), within 10 ms, and allocates nothing sized by
 * a length field it has not checked (no buffer larger than the input plus a fixed bound).
 */
import type { Test } from 'tap'
import fc from 'fast-check'
import { BeckonError } from '../../src/core/errors.js'

export const RUNS = Number(process.env.FUZZ_RUNS ?? 2000)
export const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 0x5eed
export const SLOW_MS = 10

export function params<T> (extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  return { numRuns: RUNS, seed: SEED, endOnFailure: true, ...extra }
}

let biggest = 0
const realAlloc = Buffer.alloc
const realAllocUnsafe = Buffer.allocUnsafe
const realAllocUnsafeSlow = Buffer.allocUnsafeSlow
function watch (): void {
  Buffer.alloc = ((n: number, ...rest: unknown[]) => { biggest = Math.max(biggest, n); return (realAlloc as (...a: unknown[]) => Buffer)(n, ...rest) }) as typeof Buffer.alloc
  Buffer.allocUnsafe = ((n: number) => { biggest = Math.max(biggest, n); return realAllocUnsafe(n) }) as typeof Buffer.allocUnsafe
  Buffer.allocUnsafeSlow = ((n: number) => { biggest = Math.max(biggest, n); return realAllocUnsafeSlow(n) }) as typeof Buffer.allocUnsafeSlow
}
function unwatch (): void {
  Buffer.alloc = realAlloc
  Buffer.allocUnsafe = realAllocUnsafe
  Buffer.allocUnsafeSlow = realAllocUnsafeSlow
}

function once (f: () => unknown): { ms: number, err: unknown } {
  const start = process.hrtime.bigint()
  let err: unknown
  try { f() } catch (e) { err = e }
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, err }
}

/**
 * Runs `f` on one input: a throw must be a coded BeckonError (with a code matching
 * `codes` when given), the call must take < 10 ms (re-run once to rule out a GC pause),
 * and no buffer over `maxAlloc` bytes may be allocated.
 */
export function contract (f: () => unknown, o: { codes?: RegExp, maxAlloc?: number } = {}): void {
  biggest = 0
  watch()
  let r: { ms: number, err: unknown }
  try { r = once(f) } finally { unwatch() }
  if (r.err !== undefined) {
    if (!(r.err instanceof BeckonError)) throw new Error(`uncoded ${(r.err as Error)?.name}: ${(r.err as Error)?.message ?? String(r.err)}`)
    if (o.codes !== undefined && !o.codes.test(r.err.code)) throw new Error(`unexpected code ${r.err.code}: ${r.err.message}`)
  }
  // A GC pause or a busy CPU does not repeat three times; a slow parser does.
  if (r.ms > SLOW_MS && once(f).ms > SLOW_MS && once(f).ms > SLOW_MS) throw new Error(`slow input: ${r.ms.toFixed(1)} ms`)
  if (o.maxAlloc !== undefined && biggest > o.maxAlloc) throw new Error(`allocated ${biggest} bytes (bound ${o.maxAlloc})`)
}

/** fc.assert inside a tap test, printing the seed to replay. */
export function check<T> (t: Test, name: string, prop: fc.IPropertyWithHooks<T> | fc.IProperty<T>, extra: fc.Parameters<T> = {}): void {
  try {
    fc.assert(prop, params(extra))
    t.pass(`${name}: ${extra.numRuns ?? RUNS} inputs (seed ${SEED})`)
  } catch (err) {
    t.fail(`${name}: ${(err as Error).message.slice(0, 3000)}`)
  }
}

export const bytes = (maxLength = 600): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength, size: 'max' }).map((a) => Buffer.from(a))
