// Property tests for the VICI codec: random round-trips, garbage, truncation, limits.
import type { Test } from 'tap'
import t from 'tap'
import { BeckonError } from '../../../../src/core/errors.js'
import {
  PacketType, decodeMessage, decodePacket, encodeMessage, encodePacket, toSection,
  MAX_SEGMENT, type Packet, type ViciSection, type ViciItem,
} from '../../../../src/proto/vici/codec.js'
import { rng, randInt, randBytes, seedOf } from '../../../helpers/random.js'

const seed = seedOf()
t.comment(`seed ${seed} (replay with BECKON_SEED=${seed})`)
const r = rng(seed)

function randName (): string {
  const n = randInt(r, 0, 12)
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(randInt(r, 0x20, 0x7e))
  return s
}

function randSection (depth: number): ViciSection {
  const m: ViciSection = new Map()
  const n = randInt(r, 0, 6)
  for (let i = 0; i < n; i++) {
    const key = randName()
    if (m.has(key)) continue
    const kind = randInt(r, 0, depth > 3 ? 1 : 2)
    let v: ViciItem
    if (kind === 0) v = randBytes(r, randInt(r, 0, 40))
    else if (kind === 1) v = Array.from({ length: randInt(r, 0, 4) }, () => randBytes(r, randInt(r, 0, 20)))
    else v = randSection(depth + 1)
    m.set(key, v)
  }
  return m
}

/** Encodes, decodes, and checks both the value and the bytes survive. */
function roundTrips<T> (t: Test, n: number, make: () => T, encode: (v: T) => Buffer, decode: (b: Buffer) => T): void {
  for (let i = 0; i < n; i++) {
    const v = make()
    const bytes = encode(v)
    const back = decode(bytes)
    t.same(back, v, 'round-trip', { diagnostic: false })
    if (!encode(back).equals(bytes)) t.fail(`iteration ${i}: re-encoding differs`)
  }
  t.pass(`${n} random values round-tripped`)
}

/** Untrusted bytes either decode faithfully (re-encode to the same bytes) or raise a VICI code. */
function codedOrFaithful (t: Test, bytes: Buffer): 'decoded' | 'refused' {
  try {
    const p = decodePacket(bytes)
    if (!encodePacket(p).equals(bytes)) t.fail(`${bytes.toString('hex')}: decoded unfaithfully`)
    return 'decoded'
  } catch (err) {
    if (!(err instanceof BeckonError) || !err.code.startsWith('BECKON_ERR_VICI_')) t.fail(`${bytes.toString('hex')}: uncoded ${String(err)}`)
    return 'refused'
  }
}

t.test('random messages round-trip: section → bytes → same section → same bytes', async (t) => {
  roundTrips(t, 500, () => randSection(0), encodeMessage, decodeMessage)
})

t.test('random packets of every type round-trip', async (t) => {
  roundTrips(t, 300, () => {
    const type = randInt(r, 0, 7) as PacketType
    const p: any = { type }
    if ([0, 3, 4, 7].includes(type)) p.name = randName()
    if ([0, 1, 7].includes(type)) p.message = randSection(0)
    return p as Packet
  }, encodePacket, decodePacket)
})

t.test('random garbage yields coded errors or a faithful decode, never a crash', async (t) => {
  let decoded = 0
  for (let i = 0; i < 5000; i++) {
    if (codedOrFaithful(t, randBytes(r, randInt(r, 0, 64))) === 'decoded') decoded++
  }
  t.comment(`${decoded} of 5000 garbage inputs happened to be valid packets`)
  t.pass('no uncoded error')
})

t.test('every truncation of a valid packet is coded or faithful', async (t) => {
  for (let i = 0; i < 100; i++) {
    const bytes = encodePacket({ type: PacketType.EVENT, name: 'list-sa', message: randSection(0) })
    for (let n = 0; n < bytes.length; n++) codedOrFaithful(t, bytes.subarray(0, n))
  }
  t.pass('all prefixes handled')
})

t.test('malformed structures name what is wrong', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['02', 'section end at root', /section end outside of a section/],
    ['0101', 'truncated section name', /truncated section name/],
    ['010161', 'unterminated section', /unterminated section/],
    ['050000', 'item outside list', /list item outside of a list/],
    ['06', 'list end outside list', /list end outside of a list/],
    ['040161', 'unterminated list', /unterminated list/],
    ['0401610101', 'section inside list', /inside a list/],
    ['09', 'unknown element', /unknown element type 9/],
    ['030161 0005 6162', 'short value', /truncated a value/],
    ['030161000003016100 00', 'duplicate key', /duplicate key "a"/],
    ['0301 07 0000', 'non-printable name', /not printable/],
  ]
  for (const [h, what, re] of cases) {
    t.throws(() => decodeMessage(Buffer.from(h.replace(/\s/g, ''), 'hex')), { code: 'BECKON_ERR_VICI_MALFORMED', message: re }, what)
  }
  t.throws(() => decodePacket(Buffer.from('08', 'hex')), { code: 'BECKON_ERR_VICI_MALFORMED', message: /unknown packet type 8/ })
  t.throws(() => decodePacket(Buffer.from('0500', 'hex')), { code: 'BECKON_ERR_VICI_MALFORMED', message: /unexpected bytes/ })
  t.throws(() => decodePacket(Buffer.alloc(0)), { code: 'BECKON_ERR_VICI_MALFORMED', message: /truncated packet type/ })
})

t.test('encoder limits and shapes', async (t) => {
  t.throws(() => encodeMessage({ ['k'.repeat(256)]: 'v' }), { code: 'BECKON_ERR_VICI_LIMIT', message: /longer than 255/ })
  t.doesNotThrow(() => encodeMessage({ ['k'.repeat(255)]: 'v' }), '255-byte name is fine')
  t.throws(() => encodeMessage({ k: Buffer.alloc(65536) }), { code: 'BECKON_ERR_VICI_LIMIT', message: /longer than 65535/ })
  t.doesNotThrow(() => encodeMessage({ k: Buffer.alloc(65535) }), '65535-byte value is fine')
  t.throws(() => encodeMessage({ k: [Buffer.alloc(65536)] }), { code: 'BECKON_ERR_VICI_LIMIT' })
  t.throws(() => encodeMessage({ l: [{ a: 1 }] as any }), { code: 'BECKON_ERR_VICI_INVALID', message: /lists hold values only/ })
  t.throws(() => encodeMessage({ 'a\nb': 1 }), { code: 'BECKON_ERR_VICI_INVALID', message: /not printable/ })
  t.throws(() => encodeMessage({ n: NaN }), { code: 'BECKON_ERR_VICI_INVALID' })
  t.throws(() => encodeMessage({ f: (() => 1) as any }), { code: 'BECKON_ERR_VICI_INVALID' })
  const big: Record<string, Buffer> = {}
  for (let i = 0; i < 9; i++) big[`k${i}`] = Buffer.alloc(60_000)
  t.throws(() => encodePacket({ type: PacketType.CMD_REQUEST, name: 'load-cert', message: toSection(big) }),
    { code: 'BECKON_ERR_VICI_LIMIT', message: new RegExp(`${MAX_SEGMENT}-byte segment limit`) })
  t.same([...toSection({ a: undefined, b: null, c: 0 }).keys()], ['c'], 'null/undefined drop the key')
  t.equal(toSection({ yes: true, no: false }).get('no')!.toString(), 'no')
})
