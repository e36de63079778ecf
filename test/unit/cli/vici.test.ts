// `beckon vici` against a scriptable VICI server.
import t from 'tap'
import { PacketType } from '../../../src/proto/vici/codec.js'
import { FakeVici } from '../../helpers/fake-vici.js'
import { beckon } from '../../helpers/cli.js'

t.test('commands, streamed events, coded failures, usage errors', async (t) => {
  const srv = new FakeVici((p, peer) => {
    if (p.type === PacketType.EVENT_REGISTER || p.type === PacketType.EVENT_UNREGISTER) return peer.send({ type: 5 })
    if (p.type !== PacketType.CMD_REQUEST) return
    if (p.name === 'version') return peer.send({ type: 1, message: { daemon: 'charon', version: '5.9.8' } })
    if (p.name === 'list-sas') {
      peer.send({ type: 7, name: 'list-sa', message: { ab: { state: 'ESTABLISHED' } } })
      return peer.send({ type: 1, message: {} })
    }
    if (p.name === 'load-conn') {
      const echoed = [...p.message.keys()].join(',')
      return peer.send({ type: 1, message: { success: 'no', errmsg: `unknown option in ${echoed}` } })
    }
    peer.send({ type: PacketType.CMD_UNKNOWN })
  })
  await srv.start()
  t.teardown(() => srv.cleanup())

  const v = await beckon(['vici', '--socket', srv.uri, 'version'])
  t.equal(v.status, 0)
  t.same(JSON.parse(v.stdout), { daemon: 'charon', version: '5.9.8' })

  const l = await beckon(['vici', 'list-sas'], { env: { BECKON_VICI_SOCKET: srv.uri } })
  t.equal(l.status, 0, 'socket from BECKON_VICI_SOCKET')
  const lines = l.stdout.trim().split('\n').map((s) => JSON.parse(s))
  t.same(lines, [{ event: 'list-sa', message: { ab: { state: 'ESTABLISHED' } } }, {}], 'event line, then the response')

  const f = await beckon(['vici', '--socket', srv.uri, 'load-conn', '--json', '{"x":{"bogus":1}}'])
  t.equal(f.status, 1)
  t.same(JSON.parse(f.stderr), { error: { code: 'BECKON_ERR_VICI_COMMAND_FAILED', message: 'charon refused the command: load-conn: unknown option in x' } })

  const u = await beckon(['vici', '--socket', srv.uri, 'frobnicate'])
  t.equal(u.status, 1)
  t.match(JSON.parse(u.stderr), { error: { code: 'BECKON_ERR_VICI_UNKNOWN_COMMAND' } })

  for (const [args, re] of [
    [['--json', '{nope'], /not valid JSON/],
    [['--json', '"str"'], /must be a JSON object/],
    [['--timeout', '-5'], /--timeout/],
  ] as const) {
    const r = await beckon(['vici', '--socket', srv.uri, 'version', ...args])
    t.equal(r.status, 2, `usage error exits 2: ${args.join(' ')}`)
    t.match(JSON.parse(r.stderr), { error: { code: 'BECKON_ERR_USAGE', message: re } })
  }

  const d = await beckon(['vici', '--socket', 'unix:///nonexistent/x.vici', 'version'])
  t.equal(d.status, 1)
  t.match(JSON.parse(d.stderr), { error: { code: 'BECKON_ERR_VICI_CONNECT' } })
})
