// DNS codec and TSIG: golden bytes with a comment per field, round trips, garbage.
import t from 'tap'
import fc from 'fast-check'
import { createHmac } from 'node:crypto'
import { CLASS, OPCODE, TYPE, decodeMessage, emptyMessage, encodeMessage, encodeName, type Message, type Rr } from '../../../src/dns/codec.js'
import { TsigStream, signMessage, verifyResponse, type TsigKey } from '../../../src/dns/tsig.js'
import { bytes, check, contract } from '../../fuzz/helpers.js'

const hex = (parts: string[]): Buffer => Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex')
const LAB = '036c6162 076578616d706c65 00' // 3 "lab" 7 "example" 0

t.test('an UPDATE: zone, one SRV added, one AAAA RRset deleted', async (t) => {
  const m: Message = {
    ...emptyMessage(0x1234, OPCODE.UPDATE),
    questions: [{ name: 'lab.example', type: TYPE.SOA, class: CLASS.IN }],
    authority: [
      { name: '_beckon._tcp.p.lab.example', type: TYPE.SRV, class: CLASS.IN, ttl: 30, data: { type: 'SRV', priority: 10, weight: 0, port: 8443, target: 'r.lab.example' } },
      { name: 'p.lab.example', type: TYPE.AAAA, class: CLASS.ANY, ttl: 0, data: null },
    ],
  }
  const want = hex([
    '1234', // ID
    '2800', // flags: QR 0, OPCODE 5 (UPDATE), all else 0
    '0001', // ZOCOUNT 1
    '0000', // PRCOUNT 0
    '0002', // UPCOUNT 2
    '0000', // ARCOUNT 0
    LAB, '0006', '0001', // zone: lab.example SOA IN
    '075f6265636b6f6e 045f746370 0170', LAB, // _beckon._tcp.p.lab.example
    '0021', // TYPE SRV (33)
    '0001', // CLASS IN: add
    '0000001e', // TTL 30
    '0015', // RDLENGTH 21
    '000a', // priority 10
    '0000', // weight 0
    '20fb', // port 8443
    '0172', LAB, // target r.lab.example
    '0170', LAB, // p.lab.example
    '001c', // TYPE AAAA (28)
    '00ff', // CLASS ANY: delete the RRset
    '00000000', // TTL 0
    '0000', // RDLENGTH 0: no RDATA
  ])
  t.equal(encodeMessage(m).toString('hex'), want.toString('hex'))
  const back = decodeMessage(want)
  t.same({ ...back }, { ...m })
})

t.test('decoding follows a backwards name pointer; A, AAAA, TXT, SOA', async (t) => {
  const msg = hex([
    'abcd', '8400', // ID; QR 1, AA 1, NOERROR
    '0001', '0004', '0000', '0000',
    LAB, '00fc', '0001', // question at offset 12: lab.example AXFR IN
    'c00c', '0006', '0001', '0000001e', '001d', // lab.example (pointer to 12) SOA IN TTL 30, RDLENGTH 29
    '026e73 c00c', // mname ns.lab.example (label + pointer)
    '01 68 c00c', // rname h.lab.example
    '00000001', '0000003c', '0000001e', '00000258', '0000001e', // serial 1, refresh 60, retry 30, expire 600, minimum 30
    '0170 c00c', '0001', '0001', '0000001e', '0004', 'c6336435', // p.lab.example A 198.51.100.53
    '0170 c00c', '001c', '0001', '0000001e', '0010', 'fd00beca000000020000000000000001', // p AAAA
    '0170 c00c', '0010', '0001', '0000001e', '0006', '02 6869 02 6f6b', // p TXT "hi" "ok"
  ])
  const d = decodeMessage(msg)
  t.match(d, { id: 0xabcd, qr: true, aa: true, rcode: 0, questions: [{ name: 'lab.example', type: TYPE.AXFR }] })
  t.same(d.answers[0]!.data, { type: 'SOA', mname: 'ns.lab.example', rname: 'h.lab.example', serial: 1, refresh: 60, retry: 30, expire: 600, minimum: 30 })
  t.same(d.answers[1], { name: 'p.lab.example', type: TYPE.A, class: CLASS.IN, ttl: 30, data: { type: 'A', address: '198.51.100.53' } })
  t.same(d.answers[2]!.data, { type: 'AAAA', address: 'fd00:beca:0:2::1' })
  t.same(d.answers[3]!.data, { type: 'TXT', strings: [Buffer.from('hi'), Buffer.from('ok')] })
})

t.test('malformed messages raise coded errors naming the offset', async (t) => {
  const code = { code: 'BECKON_ERR_DNS_MALFORMED' }
  const head = (qd: number, an: number): string => `0000 0000 ${qd.toString(16).padStart(4, '0')} ${an.toString(16).padStart(4, '0')} 0000 0000`
  t.throws(() => decodeMessage(Buffer.alloc(11)), code, 'short header')
  t.throws(() => decodeMessage(hex([head(1, 0), 'c00c 0001 0001'])), { ...code, message: /does not point backwards/ }, 'a pointer to itself')
  t.throws(() => decodeMessage(hex([head(1, 0), '03 6c61 00'])), code, 'label past the end')
  t.throws(() => decodeMessage(hex([head(1, 0), '8001 0001 0001'])), { ...code, message: /label type/ }, 'reserved label type')
  t.throws(() => decodeMessage(hex([head(0, 1), '00 0001 0001 00000000 0005 01020304'])), { ...code, message: /RDLENGTH 5/ }, 'RDATA past the end')
  t.throws(() => decodeMessage(hex([head(0, 1), '00 0001 0001 00000000 0003 010203'])), { ...code, message: /A RDATA is 3/ }, 'short A')
  t.throws(() => decodeMessage(hex([head(0, 1), '00 0021 0001 00000000 0007 000a0000 20fb 02'])), code, 'SRV target past its RDATA')
  t.throws(() => decodeMessage(hex([head(0xffff, 0)])), { ...code, message: /counts/ }, 'counts larger than the message')
  t.throws(() => decodeMessage(hex([head(0, 0), '00'])), { ...code, message: /after the last record/ }, 'trailing bytes')
  t.throws(() => encodeMessage({ ...emptyMessage(1, 0), questions: [{ name: 'a..b', type: 1, class: 1 }] }), code, 'empty label')
  t.throws(() => encodeMessage({ ...emptyMessage(1, 0), questions: [{ name: `${'a'.repeat(64)}.b`, type: 1, class: 1 }] }), code, 'label over 63')
  t.throws(() => encodeMessage({ ...emptyMessage(1, 0), answers: [{ name: 'a', type: TYPE.A, class: 1, ttl: 0, data: { type: 'AAAA', address: '::1' } }] }), code, 'data of another type')
})

t.test('escaped labels survive a round trip', async (t) => {
  const name = 'a\\.b.c\\\\d.\\000x'
  t.equal(encodeName(name).toString('hex'), '03612e62' + '03635c64' + '020078' + '00')
  const m = { ...emptyMessage(7, 0), questions: [{ name, type: 1, class: 1 }] }
  t.equal(decodeMessage(encodeMessage(m)).questions[0]!.name, name)
})

const label = fc.stringMatching(/^[a-z0-9_-]{1,20}$/)
const name = fc.array(label, { minLength: 0, maxLength: 5 }).map((l) => l.join('.'))
const u16 = fc.integer({ min: 0, max: 0xffff })
const rdata = fc.oneof(
  fc.ipV4().map((address) => ({ type: TYPE.A, data: { type: 'A' as const, address } })),
  fc.tuple(u16, u16, u16, name).map(([priority, weight, port, target]) => ({ type: TYPE.SRV, data: { type: 'SRV' as const, priority, weight, port, target } })),
  fc.array(bytes(30), { minLength: 1, maxLength: 4 }).map((strings) => ({ type: TYPE.TXT, data: { type: 'TXT' as const, strings } })),
  fc.tuple(name, name, fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 5, maxLength: 5 })).map(([mname, rname, n]) => ({ type: TYPE.SOA, data: { type: 'SOA' as const, mname, rname, serial: n[0]!, refresh: n[1]!, retry: n[2]!, expire: n[3]!, minimum: n[4]! } })),
  fc.tuple(fc.integer({ min: 3000, max: 3100 }), bytes(20).filter((b) => b.length > 0)).map(([type, b]) => ({ type, data: { type: 'RAW' as const, bytes: b } })),
  fc.constantFrom(TYPE.A, TYPE.AAAA, TYPE.SRV).map((type) => ({ type, data: null })),
)
const rr = fc.tuple(name, rdata, fc.constantFrom(CLASS.IN, CLASS.ANY, CLASS.NONE), fc.integer({ min: 0, max: 0xffffffff })).map(([n, r, c, ttl]): Rr => ({ name: n, type: r.type, class: c, ttl, data: r.data }))
const message = fc.record({
  id: u16, qr: fc.boolean(), opcode: fc.integer({ min: 0, max: 15 }), aa: fc.boolean(), tc: fc.boolean(), rd: fc.boolean(), ra: fc.boolean(), z: fc.integer({ min: 0, max: 7 }), rcode: fc.integer({ min: 0, max: 15 }),
  questions: fc.array(fc.record({ name, type: u16, class: u16 }), { maxLength: 3 }),
  answers: fc.array(rr, { maxLength: 4 }), authority: fc.array(rr, { maxLength: 4 }), additional: fc.array(rr, { maxLength: 2 }),
})

t.test('random messages: encode → decode → encode gives the same bytes', async (t) => {
  check(t, 'round trip', fc.property(message, (m) => {
    const b = encodeMessage(m)
    let again: Buffer | undefined
    contract(() => { again = encodeMessage(decodeMessage(b)) })
    if (again === undefined || !again.equals(b)) throw new Error('bytes changed')
  }))
})

t.test('garbage and mutated messages: coded errors only, fast, bounded allocation', async (t) => {
  check(t, 'garbage', fc.property(bytes(), (b) => { contract(() => decodeMessage(b), { codes: /^BECKON_ERR_DNS_MALFORMED$/, maxAlloc: b.length + 256 }) }))
  check(t, 'mutations', fc.property(message, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (m, flips, cut) => {
    const b = Buffer.from(encodeMessage(m))
    for (const [i, v] of flips) b[i % b.length] = v
    const c = b.subarray(0, b.length - (cut % 4))
    contract(() => decodeMessage(c), { codes: /^BECKON_ERR_DNS_MALFORMED$/, maxAlloc: c.length + 256 })
  }))
})

const key: TsigKey = { name: 'beckon-relay', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 7) }

t.test('TSIG: the MAC covers the message and the TSIG variables (RFC 8945 §4.3.3)', async (t) => {
  const m = { ...emptyMessage(0x0102, OPCODE.UPDATE), questions: [{ name: 'lab.example', type: TYPE.SOA, class: CLASS.IN }] }
  const { bytes: signed, mac } = signMessage(m, key, 1_700_000_000)
  const unsigned = encodeMessage(m)
  const vars = hex([
    '0c6265636b6f6e2d72656c617900', // key name beckon-relay (canonical)
    '00ff', // CLASS ANY
    '00000000', // TTL 0
    '0b686d61632d73686132353600', // algorithm hmac-sha256
    '00006553f100', // time signed 1700000000 (u48)
    '012c', // fudge 300
    '0000', // error 0
    '0000', // other len 0
  ])
  const want = createHmac('sha256', key.secret).update(unsigned).update(vars).digest()
  t.equal(mac.toString('hex'), want.toString('hex'))
  t.equal(signed.subarray(0, 12).readUInt16BE(10), 1, 'ARCOUNT 1: the TSIG RR')
  t.equal(signed.subarray(unsigned.length).toString('hex'), hex([
    '0c6265636b6f6e2d72656c617900', '00fa', '00ff', '00000000', // beckon-relay TSIG ANY TTL 0
    '003d', // RDLENGTH 61
    '0b686d61632d73686132353600', '00006553f100', '012c', // algorithm, time, fudge
    '0020', want.toString('hex'), // MAC size 32, MAC
    '0102', '0000', '0000', // original ID, error, other len
  ]).toString('hex'))
  // The requester verifies a response signed over our MAC; any change breaks it.
  const resp = { ...m, qr: true }
  const r = signMessage(resp, key, 1_700_000_010, mac)
  t.ok(verifyResponse(r.bytes, decodeMessage(r.bytes), key, mac, 1_700_000_020).equals(r.mac))
  const tampered = Buffer.from(r.bytes); tampered[3] ^= 1
  t.throws(() => verifyResponse(tampered, decodeMessage(tampered), key, mac, 1_700_000_020), { code: 'BECKON_ERR_DNS_TSIG', message: /MAC/ })
  t.throws(() => verifyResponse(r.bytes, decodeMessage(r.bytes), { ...key, secret: Buffer.alloc(32, 8) }, mac, 1_700_000_020), { code: 'BECKON_ERR_DNS_TSIG' })
  t.throws(() => verifyResponse(r.bytes, decodeMessage(r.bytes), key, mac, 1_700_001_000), { code: 'BECKON_ERR_DNS_TSIG', message: /outside 300 s/ })
  t.throws(() => verifyResponse(encodeMessage(resp), decodeMessage(encodeMessage(resp)), key, mac, 1_700_000_020), { code: 'BECKON_ERR_DNS_TSIG', message: /not signed/ })
})

t.test('TSIG over a multi-message transfer: later messages chain the prior MAC', async (t) => {
  const req = signMessage({ ...emptyMessage(9, 0), questions: [{ name: 'lab.example', type: TYPE.AXFR, class: CLASS.IN }] }, key, 1000)
  const a1 = signMessage({ ...emptyMessage(9, 0), qr: true }, key, 1000, req.mac)
  const unsigned = encodeMessage({ ...emptyMessage(9, 0), qr: true, answers: [{ name: 'x.lab.example', type: TYPE.A, class: 1, ttl: 1, data: { type: 'A', address: '192.0.2.1' } }] })
  // Message 3, signed over a1's MAC, the unsigned message 2 and its own bytes, with timers only.
  const m3 = { ...emptyMessage(9, 0), qr: true }
  const m3bytes = encodeMessage(m3)
  const timers = hex(['0000000003e8', '012c'])
  const mac3 = createHmac('sha256', key.secret).update(hex(['0020'])).update(a1.mac).update(unsigned).update(m3bytes).update(timers).digest()
  const a3 = encodeMessage({ ...m3, additional: [{ name: key.name, type: TYPE.TSIG, class: CLASS.ANY, ttl: 0, data: { type: 'TSIG', algorithm: 'hmac-sha256', timeSigned: 1000, fudge: 300, mac: mac3, originalId: 9, error: 0, other: Buffer.alloc(0) } }] })
  const s = new TsigStream(key, req.mac)
  s.feed(a1.bytes, decodeMessage(a1.bytes), 1000, false)
  s.feed(unsigned, decodeMessage(unsigned), 1000, false)
  t.doesNotThrow(() => s.feed(a3, decodeMessage(a3), 1000, true))
  const s2 = new TsigStream(key, req.mac)
  s2.feed(a1.bytes, decodeMessage(a1.bytes), 1000, false)
  t.throws(() => s2.feed(a3, decodeMessage(a3), 1000, true), { code: 'BECKON_ERR_DNS_TSIG' }, 'skipping the unsigned message breaks the chain')
  t.throws(() => new TsigStream(key, req.mac).feed(unsigned, decodeMessage(unsigned), 1000, true), { code: 'BECKON_ERR_DNS_TSIG' }, 'the first message must be signed')
})
