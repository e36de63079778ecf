// The VICI connection against a scriptable server on a real unix socket.
import type { Test } from 'tap'
import t from 'tap'
import { once } from 'node:events'
import { ViciConnection, parseUri } from '../../../../src/proto/vici/conn.js'
import { PacketType, str, type ViciSection } from '../../../../src/proto/vici/codec.js'
import { FakeVici, echoHandler, segment } from '../../../helpers/fake-vici.js'

async function setup (t: Test, handler = echoHandler, opts: ConstructorParameters<typeof ViciConnection>[0] = {}): Promise<{ srv: FakeVici, conn: ViciConnection }> {
  const srv = new FakeVici(handler)
  await srv.start()
  const conn = new ViciConnection({ uri: srv.uri, timeoutMs: 2000, reconnect: { initialMs: 10, maxMs: 50 }, ...opts })
  t.teardown(async () => { await conn.close(); await srv.cleanup() })
  await conn.connect()
  return { srv, conn }
}

t.test('parseUri', async (t) => {
  t.same(parseUri('unix:///var/run/charon.vici'), { path: '/var/run/charon.vici' })
  t.same(parseUri('/tmp/x.vici'), { path: '/tmp/x.vici' })
  t.same(parseUri('tcp://127.0.0.1:4502'), { host: '127.0.0.1', port: 4502 })
  t.same(parseUri('tcp://[::1]:4502'), { host: '::1', port: 4502 })
  for (const bad of ['unix://relative', 'tcp://host', 'tcp://h:70000', 'http://x', 'x']) {
    t.throws(() => parseUri(bad), { code: 'BECKON_ERR_CONFIG' }, bad)
  }
})

t.test('request/response, and a refused connect is coded', async (t) => {
  const { conn } = await setup(t)
  const m = await conn.request('version')
  t.equal(str(m, 'cmd'), 'version')
  const dead = new ViciConnection({ uri: 'unix:///nonexistent/charon.vici' })
  await t.rejects(dead.connect(), { code: 'BECKON_ERR_VICI_CONNECT', message: /nonexistent/ })
  await t.rejects(dead.request('version'), { code: 'BECKON_ERR_VICI_CLOSED' })
})

t.test('one command in flight: the server never sees a second before answering the first', async (t) => {
  let outstanding = 0
  let maxOutstanding = 0
  const { conn } = await setup(t, (p, peer) => {
    if (p.type !== PacketType.CMD_REQUEST) return
    outstanding++
    maxOutstanding = Math.max(maxOutstanding, outstanding)
    setTimeout(() => { outstanding--; peer.send({ type: 1, message: { cmd: p.name } }) }, 5)
  })
  const names = ['a', 'b', 'c', 'd', 'e']
  const got = await Promise.all(names.map((n) => conn.request(n)))
  t.same(got.map((m) => str(m, 'cmd')), names, 'responses matched in order')
  t.equal(maxOutstanding, 1)
})

t.test('events between a request and its response are routed as events', async (t) => {
  const { conn } = await setup(t, (p, peer) => {
    if (p.type !== PacketType.CMD_REQUEST) return
    peer.send({ type: PacketType.EVENT, name: 'log', message: { msg: 'interleaved' } })
    peer.send({ type: 1, message: { ok: 'yes' } })
  })
  const seen: string[] = []
  conn.on('event', (name: string, m: ViciSection) => seen.push(`${name}:${str(m, 'msg')}`))
  const m = await conn.request('x')
  t.equal(str(m, 'ok'), 'yes')
  t.same(seen, ['log:interleaved'])
})

t.test('streamed command: register, events, response, unregister', async (t) => {
  const { srv, conn } = await setup(t, (p, peer) => {
    if (p.type === PacketType.EVENT_REGISTER || p.type === PacketType.EVENT_UNREGISTER) peer.send({ type: 5 })
    if (p.type === PacketType.CMD_REQUEST) {
      for (let i = 0; i < 3; i++) peer.send({ type: PacketType.EVENT, name: 'list-sa', message: { [`sa${i}`]: { state: 'ESTABLISHED' } } })
      peer.send({ type: PacketType.EVENT, name: 'ike-updown', message: { other: 'x' } }) // not part of the stream
      peer.send({ type: 1, message: {} })
    }
  })
  const streamed: ViciSection[] = []
  const others: string[] = []
  conn.on('event', (name: string) => others.push(name))
  await conn.request('list-sas', {}, { stream: { event: 'list-sa', onEvent: (m) => streamed.push(m) } })
  t.equal(streamed.length, 3)
  t.same(others, ['ike-updown'])
  t.same(srv.received.map((p) => PacketType[p.type]), ['EVENT_REGISTER', 'CMD_REQUEST', 'EVENT_UNREGISTER'])
})

t.test('unknown command and unknown event are coded', async (t) => {
  const { conn } = await setup(t, (p, peer) => {
    if (p.type === PacketType.CMD_REQUEST) peer.send({ type: PacketType.CMD_UNKNOWN })
    else peer.send({ type: PacketType.EVENT_UNKNOWN })
  })
  await t.rejects(conn.request('nope'), { code: 'BECKON_ERR_VICI_UNKNOWN_COMMAND' })
  await t.rejects(conn.register('nope'), { code: 'BECKON_ERR_VICI_UNKNOWN_EVENT' })
  t.ok(conn.isConnected, 'still connected after coded refusals')
})

t.test('a timed-out request drops the socket so its late answer cannot desync the next', async (t) => {
  let n = 0
  const { srv, conn } = await setup(t, (p, peer) => {
    if (p.type !== PacketType.CMD_REQUEST) return
    n++
    const delay = p.name === 'slow' ? 300 : 0
    setTimeout(() => { if (!peer.sock.destroyed) peer.send({ type: 1, message: { cmd: p.name } }) }, delay)
  }, { timeoutMs: 100 })
  await t.rejects(conn.request('slow'), { code: 'BECKON_ERR_VICI_TIMEOUT', message: /slow got no answer within 100 ms/ })
  const m = await conn.request('fast', {}, { timeoutMs: 2000 })
  t.equal(str(m, 'cmd'), 'fast', 'the next request got its own answer')
  t.equal(srv.connections, 2, 'reconnected once')
  t.equal(n, 2)
})

t.test('an oversized or garbage segment from the server is refused and survived', async (t) => {
  let mode: 'huge' | 'garbage' | 'ok' = 'huge'
  const { conn } = await setup(t, (p, peer) => {
    if (p.type !== PacketType.CMD_REQUEST) return
    if (mode === 'huge') { const h = Buffer.alloc(4); h.writeUInt32BE(512 * 1024 + 1); peer.raw(h) }
    else if (mode === 'garbage') peer.raw(segment(Buffer.from('01090000', 'hex')))
    else peer.send({ type: 1, message: { fine: 'yes' } })
  })
  await t.rejects(conn.request('a'), { code: 'BECKON_ERR_VICI_CLOSED' })
  await once(conn, 'connect')
  mode = 'garbage'
  await t.rejects(conn.request('b'), { code: 'BECKON_ERR_VICI_CLOSED' })
  await once(conn, 'connect')
  mode = 'ok'
  t.equal(str(await conn.request('c'), 'fine'), 'yes')
})

t.test('an unsolicited response is treated as a desync', async (t) => {
  const { srv, conn } = await setup(t)
  await conn.request('warmup')
  const [peerSock] = [...(srv as any).socks] as any[]
  peerSock.write(segment(Buffer.from([1])))
  const [err] = await once(conn, 'disconnect') as [Error]
  t.match(err, { code: 'BECKON_ERR_VICI_CLOSED' })
  await once(conn, 'connect')
  t.equal(str(await conn.request('again'), 'cmd'), 'again')
})

t.test('server restart: reconnect with backoff, registrations restored, queued work resumes', async (t) => {
  const { srv, conn } = await setup(t)
  await conn.register('ike-updown')
  await srv.stop()
  await once(conn, 'disconnect')
  const pending = conn.request('while-down', {}, { timeoutMs: 3000 })
  await new Promise((resolve) => setTimeout(resolve, 120)) // let a few attempts fail
  srv.received.length = 0
  await srv.start()
  const [reconnected] = await once(conn, 'connect') as [boolean]
  t.equal(reconnected, true)
  t.equal(str(await pending, 'cmd'), 'while-down', 'queued request ran after reconnect')
  t.same(srv.received.slice(0, 2).map((p) => PacketType[p.type]), ['EVENT_REGISTER', 'CMD_REQUEST'],
    're-registration goes out before queued commands')
})

t.test('reconnect disabled: queued requests fail at once when the server goes', async (t) => {
  const { srv, conn } = await setup(t, () => {}, { reconnect: false })
  const pending = conn.request('never')
  await new Promise((resolve) => setTimeout(resolve, 20))
  await srv.stop()
  await t.rejects(pending, { code: 'BECKON_ERR_VICI_CLOSED' })
  await t.rejects(conn.request('after'), { code: 'BECKON_ERR_VICI_CLOSED' })
})

t.test('close() fails queued work and refuses new work', async (t) => {
  const { conn } = await setup(t, () => {})
  const checks = [
    t.rejects(conn.request('hang'), { code: 'BECKON_ERR_VICI_CLOSED' }),
    t.rejects(conn.request('queued'), { code: 'BECKON_ERR_VICI_CLOSED' }),
  ]
  await conn.close()
  await Promise.all(checks)
  await t.rejects(conn.request('late'), { code: 'BECKON_ERR_VICI_CLOSED', message: /closed/ })
})

t.test('tcp:// endpoints work the same, including reconnect', async (t) => {
  const srv = new FakeVici(echoHandler, true)
  await srv.start()
  const conn = new ViciConnection({ uri: srv.uri, reconnect: { initialMs: 10, maxMs: 50 } })
  t.teardown(async () => { await conn.close(); await srv.cleanup() })
  t.match(srv.uri, /^tcp:\/\/127\.0\.0\.1:\d+$/)
  await conn.connect()
  t.equal(str(await conn.request('version'), 'cmd'), 'version')
  await srv.stop()
  await once(conn, 'disconnect')
  await srv.start()
  await once(conn, 'connect')
  t.equal(str(await conn.request('stats'), 'cmd'), 'stats', 'same port, reconnected')
})
