// Defects an outside fuzz run found in the VICI codec and connection, one test each.
import t from 'tap'
import { once } from 'node:events'
import { ViciConnection } from '../../../../src/proto/vici/conn.js'
import { ElementType, MAX_DEPTH, PacketType, decodeMessage, encodeMessage, toPlain, toSection, type ViciInput } from '../../../../src/proto/vici/codec.js'
import { FakeVici, echoHandler, segment, type FakePeer } from '../../../helpers/fake-vici.js'

t.test('nesting without a depth bound: deep sections are refused, not recursed into', async (t) => {
  // 01 SECTION_START 01 "a" … (170,000 deep fits one 512 KiB segment); decoding was
  // iterative, but toPlain/re-encoding then overflowed the stack with a RangeError.
  const deep = Buffer.concat([Buffer.alloc(3 * 100_000, 0), Buffer.alloc(100_000, ElementType.SECTION_END)])
  for (let i = 0; i < 100_000; i++) deep.set([ElementType.SECTION_START, 1, 0x61], i * 3)
  t.throws(() => decodeMessage(deep), { code: 'BECKON_ERR_VICI_MALFORMED', message: /nested deeper than 64/ })
  // At the bound: decodes, prints and re-encodes.
  const ok = Buffer.concat([Buffer.alloc(3 * MAX_DEPTH, 0), Buffer.alloc(MAX_DEPTH, ElementType.SECTION_END)])
  for (let i = 0; i < MAX_DEPTH; i++) ok.set([ElementType.SECTION_START, 1, 0x61], i * 3)
  const m = decodeMessage(ok)
  t.ok(encodeMessage(m).equals(ok), 'round-trips')
  t.ok(toPlain(m))
  let input: ViciInput = {}
  for (let i = 0; i < 10_000; i++) input = { a: input }
  t.throws(() => toSection(input), { code: 'BECKON_ERR_VICI_LIMIT', message: /nested deeper/ })
})

t.test('reassembly is linear: a 512 KiB segment in 1-byte chunks', async (t) => {
  let peer: FakePeer | undefined
  const srv = new FakeVici((p, pr) => { peer = pr; if (p.type !== PacketType.CMD_REQUEST) echoHandler(p, pr) })
  await srv.start()
  const conn = new ViciConnection({ uri: srv.uri, timeoutMs: 20_000, reconnect: false })
  t.teardown(async () => { await conn.close(); await srv.cleanup() })
  await conn.connect()
  const big = { blob: Buffer.alloc(60_000, 1), more: Array.from({ length: 7 }, () => Buffer.alloc(60_000, 2)) }
  const answer = conn.request('big')
  while (peer === undefined) await new Promise((resolve) => setTimeout(resolve, 5))
  const seg = segment(Buffer.concat([Buffer.from([PacketType.CMD_RESPONSE]), encodeMessage(big)]))
  // Feed the connection directly, as the socket would in the worst case.
  const c = conn as unknown as { onData: (s: unknown, b: Buffer) => void, socket: unknown }
  const start = process.hrtime.bigint()
  for (let i = 0; i < seg.length; i++) c.onData(c.socket, seg.subarray(i, i + 1))
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  const m = await answer
  t.equal((m.get('more') as Buffer[]).length, 7)
  // Concatenating per chunk copied ~seg.length²/2 = 130 GB here; linear takes well under 2 s.
  t.ok(ms < 2000, `${seg.length} one-byte chunks in ${ms.toFixed(0)} ms`)
})

t.test('a connection that tears itself down dispatches nothing more', async (t) => {
  let events = 0
  const srv = new FakeVici((p, peer) => {
    if (p.type === PacketType.CMD_REQUEST) {
      // An EVENT_CONFIRM nobody asked for (desync → teardown), then an event in the same write.
      peer.raw(Buffer.concat([segment(Buffer.from([PacketType.EVENT_CONFIRM])), segment(Buffer.concat([Buffer.from([PacketType.EVENT, 3]), Buffer.from('log'), encodeMessage({ msg: 'late' })]))]))
    } else echoHandler(p, peer)
  })
  await srv.start()
  const conn = new ViciConnection({ uri: srv.uri, timeoutMs: 2000, reconnect: false })
  t.teardown(async () => { await conn.close(); await srv.cleanup() })
  await conn.connect()
  conn.on('event', () => events++)
  const disconnected = once(conn, 'disconnect')
  await t.rejects(conn.request('version'), { code: 'BECKON_ERR_VICI_CLOSED', message: /out of sync/ })
  await disconnected
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(events, 0, 'the event after the teardown was not dispatched')
  t.equal(conn.isConnected, false)
})
