/** A small seeded PRNG (mulberry32) so property tests are reproducible. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function randInt (r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1))
}

export function randBytes (r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256)
  return b
}

/** The seed of this run: BECKON_SEED to replay one, otherwise fresh and printed. */
export function seedOf (): number {
  const env = process.env.BECKON_SEED
  return env !== undefined ? Number(env) : Math.floor(Math.random() * 2 ** 31)
}
