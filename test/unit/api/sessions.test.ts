// Sessions: the list (live filter, the holding relay's fresh counters), one session, and
// DELETE: 204 when this relay holds it, 202 + kill_requested when another one does, 410
// when it has ended, 404 when unknown. `SessionControl` is a fake here.
import t from 'tap'
import type { SessionControl } from '../../../src/api/deps.js'
import type { SessionRecord } from '../../../src/store/records.js'
import { harness, json, session } from './helpers.js'

function fakeRelay (held: Map<string, SessionRecord>): SessionControl & { kills: Array<[string, string, string]> } {
  const kills: Array<[string, string, string]> = []
  return {
    kills,
    kill: (id, reason, actor) => { kills.push([id, reason, actor]); return held.delete(id) },
    live: (id) => held.get(id),
  }
}

t.test('GET /v1/sessions: newest first, live filter, device filter, fresh counters', async (t) => {
  const held = new Map<string, SessionRecord>()
  const h = await harness(t, { sessions: fakeRelay(held) })
  const a = session({ device: 'phone1', started_at: 1000 })
  const b = session({ device: 'phone2', started_at: 2000 })
  const c = session({ device: 'phone1', started_at: 3000 })
  for (const s of [a, b, c]) await h.store.sessionOpen(s)
  await h.store.sessionEnd(b.id, { outcome: 'ok', bytes_up: 10, bytes_down: 20, at: 2500 })
  held.set(c.id, { ...c, bytes_up: 111, bytes_down: 222, ike_state: 'ESTABLISHED', child_state: 'INSTALLED' })

  const all = await h.req('GET', '/v1/sessions', { as: 'read' })
  t.equal(all.statusCode, 200)
  t.same(json(all).map((s: SessionRecord) => s.id), [c.id, b.id, a.id])
  t.match(json(all)[0], { bytes_up: 111, bytes_down: 222, ike_state: 'ESTABLISHED' }, 'the holder\'s live figures')
  t.match(json(all)[1], { ended_at: 2500, outcome: 'ok', stage: 'closed', bytes_up: 10 })

  const live = await h.req('GET', '/v1/sessions?live=true', { as: 'read' })
  t.same(json(live).map((s: SessionRecord) => s.id), [c.id, a.id])
  t.same(json(await h.req('GET', '/v1/sessions?device=phone1&live=true')).map((s: SessionRecord) => s.id), [c.id, a.id])
  t.same(json(await h.req('GET', '/v1/sessions?limit=1')).map((s: SessionRecord) => s.id), [c.id])
  t.same(json(await h.req('GET', '/v1/sessions?before=2000')).map((s: SessionRecord) => s.id), [a.id])

  const one = await h.req('GET', `/v1/sessions/${a.id}`, { as: 'read' })
  t.equal(one.statusCode, 200)
  t.same(json(one), a)
  const unknown = await h.req('GET', `/v1/sessions/${'f'.repeat(24)}`)
  t.equal(unknown.statusCode, 404)
  t.equal(json(unknown).code, 'BECKON_ERR_NOT_FOUND')

  for (const [q, message] of [['live=maybe', 'querystring.live: must be boolean'], ['limit=0', 'querystring.limit: must be >= 1'], ['relay=x', 'querystring.relay: unknown field']]) {
    const r = await h.req('GET', `/v1/sessions?${q!}`)
    t.equal(r.statusCode, 400, q)
    t.match(json(r), { code: 'BECKON_ERR_VALIDATION', message: message! })
  }
})

t.test('DELETE /v1/sessions/:id', async (t) => {
  const held = new Map<string, SessionRecord>()
  const relay = fakeRelay(held)
  const h = await harness(t, { sessions: relay })
  const mine = session()
  const theirs = session({ relay: 'relay-b' })
  const ended = session()
  for (const s of [mine, theirs, ended]) await h.store.sessionOpen(s)
  held.set(mine.id, mine)
  await h.store.sessionEnd(ended.id, { outcome: 'BECKON_ERR_WAKE_TIMEOUT', bytes_up: 0, bytes_down: 0 })

  const a = await h.req('DELETE', `/v1/sessions/${mine.id}`, { as: 'write' })
  t.equal(a.statusCode, 204)
  t.equal(a.body, '')
  t.same(relay.kills[0], [mine.id, 'ended by an operator', h.tokens.write.actor])
  t.equal((await h.store.getSession(mine.id))!.kill_requested, undefined, 'the holder ended it; no flag needed')

  const b = await h.req('DELETE', `/v1/sessions/${theirs.id}`, { as: 'write' })
  t.equal(b.statusCode, 202)
  t.same(json(b), { id: theirs.id, relay: 'relay-b' })
  t.equal((await h.store.getSession(theirs.id))!.kill_requested, h.tokens.write.actor, 'flagged for its holder')

  const c = await h.req('DELETE', `/v1/sessions/${ended.id}`, { as: 'write' })
  t.equal(c.statusCode, 410)
  t.same(json(c), { code: 'BECKON_ERR_SESSION_ENDED', message: `session ended: session ${ended.id} ended with BECKON_ERR_WAKE_TIMEOUT` })

  const d = await h.req('DELETE', `/v1/sessions/${'e'.repeat(24)}`, { as: 'write' })
  t.equal(d.statusCode, 404)
  t.equal(json(d).code, 'BECKON_ERR_NOT_FOUND')

  t.equal((await h.req('DELETE', `/v1/sessions/${theirs.id}`, { as: 'read' })).statusCode, 403)

  const kills = (await h.store.queryAudit({ action: 'session.kill' })).entries
  t.same(kills.map((e) => [e.actor, e.target]), [[h.tokens.write.actor, `session/${theirs.id}`], [h.tokens.write.actor, `session/${mine.id}`]])
  t.match(kills[0]!.detail, { user: 'alice', device: 'phone1', relay: 'relay-b' })
})

t.test('without a SessionControl every kill is a request to the holder (202)', async (t) => {
  const h = await harness(t)
  const s = session()
  await h.store.sessionOpen(s)
  const r = await h.req('DELETE', `/v1/sessions/${s.id}`, { as: 'write' })
  t.equal(r.statusCode, 202)
  t.equal((await h.store.getSession(s.id))!.kill_requested, h.tokens.write.actor)
})
