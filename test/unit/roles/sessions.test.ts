// The relay's session records: a policy change reaches a quiet relay through its poll
// and ends the session it no longer admits; sessions a previous run left open are ended
// on record at start; refusals are audited.
import t from 'tap'
import { waitFor } from '../../../src/core/exec.js'
import { openSession } from '../../../src/roles/client/client.js'
import { rig } from '../../helpers/rendezvous.js'

t.test('a policy change ends a live session on the next poll, with no CONNECT needed', async (t) => {
  const r = await rig(t)
  const s = await openSession(r.client(), `patient-phone:${r.servicePort}`, () => {})
  await waitFor('the session to be connected', async () => (await r.store.getSession(s.session))?.stage === 'connected', 5_000)
  const ended = new Promise((resolve) => { s.socket.once('end', resolve); s.socket.once('close', resolve) })
  s.socket.resume()
  const policy = (await r.store.get('policy', 'patient-phone'))!
  await r.store.put('policy', 'patient-phone', { ...policy, rules: policy.rules.map((x) => ({ ...x, groups: ['visitors'] })) }, 'test')
  await r.relay.pollKills()
  await ended
  await waitFor('the end to be recorded', async () => (await r.store.getSession(s.session))?.ended_at !== undefined, 5_000)
  t.match(await r.store.getSession(s.session), { outcome: 'BECKON_ERR_SESSION_ENDED', reason: /policy change: .*alice may not reach patient-phone/ })
  const audit = await r.store.queryAudit({ action: 'session.end', target: `session/${s.session}` })
  t.equal(audit.entries.length, 1, 'the end is audited once')
})

t.test('sessions a previous run left open are ended on record', async (t) => {
  const r = await rig(t)
  const id = 'a'.repeat(24)
  await r.store.sessionOpen({ id, relay: 'rig', user: 'alice', device: 'patient-phone', mode: 'ipsec', stage: 'connected', fallback: [], bytes_up: 7, bytes_down: 9, started_at: Date.now() - 1000 })
  await r.store.sessionOpen({ id: 'b'.repeat(24), relay: 'another-relay', user: 'alice', device: 'patient-phone', mode: 'ipsec', stage: 'connected', fallback: [], bytes_up: 0, bytes_down: 0, started_at: Date.now() - 1000 })
  t.equal(await r.relay.reapStale(), 1, 'only this relay\'s')
  t.match(await r.store.getSession(id), { outcome: 'BECKON_ERR_INTERNAL', reason: 'the relay restarted', bytes_up: 7, bytes_down: 9 })
  t.equal((await r.store.getSession('b'.repeat(24)))?.ended_at, undefined, 'another relay\'s session is left alone')
})

t.test('refused CONNECTs are audited with the user and the code', async (t) => {
  const r = await rig(t)
  await t.rejects(openSession(r.client('mallory', 'mallory-pw'), `patient-phone:${r.servicePort}`, () => {}), { code: 'BECKON_ERR_FORBIDDEN' })
  await t.rejects(openSession(r.client('alice', 'wrong'), `patient-phone:${r.servicePort}`, () => {}), { code: 'BECKON_ERR_AUTH_FAILED' })
  await waitFor('the audit entries', async () => (await r.store.queryAudit({ action: 'session.refused' })).entries.length === 2, 5_000)
  const { entries } = await r.store.queryAudit({ action: 'session.refused' })
  t.match(entries.find((e) => e.actor === 'user:mallory'), { target: 'device/patient-phone', outcome: 'BECKON_ERR_FORBIDDEN' })
  t.match(entries.find((e) => e.outcome === 'BECKON_ERR_AUTH_FAILED'), { actor: /^peer:/ })
  t.notMatch(JSON.stringify(entries), /wrong|mallory-pw/, 'no password in the audit log')
})

t.test('a detached session another relay took over is forgotten at the next poll, not ended; one not taken over stays', async (t) => {
  const r = await rig(t)
  const taken = await openSession(r.client(), `patient-phone:${r.servicePort}`, () => {})
  const kept = await openSession(r.client(), `patient-phone:${r.servicePort}`, () => {})
  t.teardown(() => { taken.socket.destroy(); kept.socket.destroy() })
  for (const s of [taken, kept]) await waitFor('the session to be connected', async () => (await r.store.getSession(s.session))?.stage === 'connected', 5_000)
  // White-box: both stand as an IPsec session does after its path ended and before a
  // re-join (detached, the window running); the relay is alive, only cut off from the client.
  const relay = r.relay as unknown as { live: Map<string, unknown>, detach: (l: unknown, log: unknown, middle: boolean, moved: object) => void, log: unknown }
  for (const s of [taken, kept]) relay.detach(relay.live.get(s.session), relay.log, true, { aToB: 0, bToA: 0 })
  // The client re-joined through relay-2: its take-over is in the shared store.
  await r.store.sessionTakeover(taken.session, 'rig', 'relay-2')
  await r.relay.pollKills()
  t.notOk(relay.live.has(taken.session), 'the taken-over session is gone from this relay')
  t.ok(relay.live.has(kept.session), 'the one still ours is kept for its re-join')
  t.match(await r.store.getSession(taken.session), { relay: 'relay-2', ended_at: undefined }, 'and it goes on at relay-2, not ended')
  t.equal((await r.store.queryAudit({ action: 'session.end', target: `session/${taken.session}` })).entries.length, 0, 'no end recorded by the old holder')
})
