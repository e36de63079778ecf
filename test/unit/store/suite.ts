/**
 * The Store contract, run against every back end (sqlite.test.ts, postgres.test.ts):
 * record round trips, the audit/revision/transaction rules, conflicts and not-found,
 * cascades and references, import idempotency, audit paging and filters, secret
 * redaction in audit copies, sessions, bad input, concurrency and a second instance
 * on the same database.
 *
 * One invariant is checked after nearly every test: the revision equals the number of
 * change entries in the audit log (every changed record is one entry and one bump).
 */
import type { Test } from 'tap'
import type { Device, Gateway, Group, LdapSettings, Policy, SessionRecord, TokenRecord, User } from '../../../src/store/records.js'
import type { Store } from '../../../src/store/store.js'

export interface StoreFactory {
  /** A fresh, empty store closed at the end of `t`; `again` opens another instance on the same database. */
  fresh: (t: Test) => Promise<{ store: Store, again: () => Promise<Store> }>
}

const KEY = (c: string): string => c.repeat(43)
export const gateway = (name: string, extra: Partial<Gateway> = {}): Gateway => ({ name, public_key: KEY('g'), ...extra })
export const group = (name: string, extra: Partial<Group> = {}): Group => ({ name, ...extra })
export const user = (name: string, extra: Partial<User> = {}): User => ({ name, groups: [], ...extra })
export const device = (name: string, gw: string, extra: Partial<Device> = {}): Device => ({
  name,
  msisdn: '+4915112345678',
  gateway: gw,
  port: 7400,
  channels: ['sms', 'email'],
  email: `${name}@gw.example`,
  wake_timeout_ms: 15_000,
  agent_public_key: KEY('a'),
  services: [{ name: 'glucose', protocol: 'tcp', port: 8080, address: 'fd00::1' }],
  ...extra,
})
export const policy = (ports: number[] = [22]): Policy => ({
  auth: 'psk',
  rules: [{ users: ['alice'], groups: ['ops'], protocol: 'tcp', ports, ipsec: true, raw_tcp: false }],
  ike_proposals: ['aes256gcm16-prfsha256-x25519'],
  esp_proposals: ['aes256gcm16'],
  ike_rekey_s: 14_400,
  child_rekey_s: 3600,
  dpd_s: 30,
  raw_tcp: false,
})
const token = (id: string): TokenRecord => ({ id, name: 'ci', scopes: ['read', 'write'], hash: 'f'.repeat(64), created_at: 1_700_000_000_123 })
const ldap = (): LdapSettings => ({
  url: 'ldaps://ldap.example:636',
  starttls: false,
  bind_dn: 'cn=beckon,dc=example',
  bind_password: 'hunter2-very-secret',
  base_dn: 'dc=example',
  user_filter: '(uid={user})',
  group_attribute: 'memberOf',
  group_search: { base_dn: 'ou=groups,dc=example', filter: '(member={dn})', name_attribute: 'cn' },
  timeout_ms: 3000,
})
let sessionSeq = 0
export const session = (extra: Partial<SessionRecord> = {}): SessionRecord => ({
  id: (++sessionSeq).toString(16).padStart(24, '0'),
  relay: 'relay-a',
  user: 'alice',
  device: 'pump-1',
  mode: 'ipsec',
  stage: 'authorized',
  fallback: [],
  bytes_up: 0,
  bytes_down: 0,
  started_at: 1_700_000_000_000 + sessionSeq,
  ...extra,
})

/** All audit entries, oldest first (pages through queryAudit). */
export async function allAudit (s: Store): Promise<Awaited<ReturnType<Store['queryAudit']>>['entries']> {
  const out = []
  let before: number | undefined
  for (let i = 0; i < 1000; i++) {
    const page = await s.queryAudit({ limit: 500, ...(before === undefined ? {} : { before }) })
    out.push(...page.entries)
    if (page.next === undefined) break
    before = page.next
  }
  return out.reverse()
}

const CHANGE_TARGET = /^(device|policy|user|group|gateway|token|setting)\//

/** revision == number of audit entries that record a change to a record. */
export async function checkRevisionInvariant (t: Test, s: Store): Promise<void> {
  const changes = (await allAudit(s)).filter((e) => CHANGE_TARGET.test(e.target)).length
  t.equal(await s.revision(), changes, `revision (${changes}) equals the number of change entries`)
}

export function storeSuite (t: Test, f: StoreFactory): void {
  const open = async (t: Test): Promise<Store> => (await f.fresh(t)).store

  t.test('an empty store', async (t) => {
    const s = await open(t)
    t.equal(await s.revision(), 0)
    t.same(await s.list('device'), [])
    t.equal(await s.get('device', 'nope'), undefined)
    t.same(await s.queryAudit({}), { entries: [] })
    t.same(await s.listSessions({}), [])
    t.equal(await s.getSession('0'.repeat(24)), undefined)
    await s.ping()
  })

  t.test('every kind round-trips equal, lists sort by key', async (t) => {
    const s = await open(t)
    const values = {
      gateway: gateway('gw1', { description: 'Zürich ☃ 𝄞 "quoted" \\ back\nslash' }),
      group: group('ops', { description: 'operators' }),
      user: user('alice', { groups: ['ops'], password_hash: 'scrypt$16384$8$1$c2FsdA$aGFzaA', address: 'fd00::a' }),
      device: device('pump-1', 'gw1'),
      policy: policy([22, 443]),
      token: token('0123456789abcdef'),
      setting: ldap(),
    } as const
    const keys = { gateway: 'gw1', group: 'ops', user: 'alice', device: 'pump-1', policy: 'pump-1', token: '0123456789abcdef', setting: 'ldap' } as const
    for (const kind of Object.keys(values) as Array<keyof typeof values>) {
      t.equal(await s.put(kind, keys[kind], values[kind] as never, 'admin'), undefined, `${kind}: no previous value`)
      t.strictSame(await s.get(kind, keys[kind]), values[kind], `${kind} round-trips`)
    }
    t.strictSame(await s.get('setting', 'ldap'), ldap(), 'the record itself keeps the bind password')
    t.strictSame(await s.get('token', '0123456789abcdef'), token('0123456789abcdef'), 'the record itself keeps the hash')

    for (const name of ['b', 'a', 'Z', 'a-1', 'a.1', '0']) await s.put('group', name, group(name), 'admin')
    t.strictSame((await s.list('group')).map((g) => g.name), ['0', 'Z', 'a', 'a-1', 'a.1', 'b', 'ops'], 'byte order')
    t.equal((await s.list('device')).length, 1)
    t.equal(await s.get('device', 'gw1'), undefined, 'kinds are separate namespaces')
    await checkRevisionInvariant(t, s)
  })

  t.test('put: audit entry, previous value, revision; create and replace', async (t) => {
    const s = await open(t)
    const v1 = gateway('gw1')
    const v2 = gateway('gw1', { description: 'second' })
    t.equal(await s.put('gateway', 'gw1', v1, 'alice'), undefined)
    t.equal(await s.revision(), 1)
    t.strictSame(await s.put('gateway', 'gw1', v2, 'bob'), v1, 'returns the previous value')
    t.equal(await s.revision(), 2)
    const { entries } = await s.queryAudit({})
    t.match(entries, [
      { actor: 'bob', action: 'gateway.update', target: 'gateway/gw1', before: v1, after: v2 },
      { actor: 'alice', action: 'gateway.create', target: 'gateway/gw1', after: v1 },
    ])
    t.notOk('before' in entries[1]!, 'a create has no before')
    t.ok(entries[0]!.id > entries[1]!.id)
    t.ok(Math.abs(entries[0]!.at - Date.now()) < 60_000, 'at is ms since the epoch')

    await t.rejects(s.put('gateway', 'gw1', v1, 'carol', { create: true }), { code: 'BECKON_ERR_CONFLICT' })
    await t.rejects(s.put('gateway', 'gw2', gateway('gw2'), 'carol', { replace: true }), { code: 'BECKON_ERR_NOT_FOUND' })
    t.equal(await s.get('gateway', 'gw2'), undefined, 'a refused replace writes nothing')
    t.strictSame(await s.get('gateway', 'gw1'), v2, 'a refused create writes nothing')
    t.equal(await s.revision(), 2, 'refused writes do not bump the revision')
    t.equal((await s.queryAudit({})).entries.length, 2, 'refused writes are not audited')

    t.strictSame(await s.put('gateway', 'gw1', v1, 'carol', { replace: true }), v2)
    t.equal(await s.put('gateway', 'gw3', gateway('gw3'), 'carol', { create: true, action: 'gateway.register' }), undefined)
    t.match((await s.queryAudit({ limit: 1 })).entries[0], { action: 'gateway.register', target: 'gateway/gw3', actor: 'carol' })
    await checkRevisionInvariant(t, s)
  })

  t.test('delete: audited, NOT_FOUND, a device takes its policy, a used gateway is refused', async (t) => {
    const s = await open(t)
    await s.put('gateway', 'gw1', gateway('gw1'), 'admin')
    await s.put('gateway', 'gw2', gateway('gw2'), 'admin')
    await s.put('device', 'pump-1', device('pump-1', 'gw1'), 'admin')
    await s.put('device', 'pump-2', device('pump-2', 'gw1'), 'admin')
    await s.put('policy', 'pump-1', policy(), 'admin')
    await s.put('policy', 'other', policy([80]), 'admin')
    const rev = await s.revision()

    await t.rejects(s.delete('device', 'nope', 'admin'), { code: 'BECKON_ERR_NOT_FOUND' })
    const refused = s.delete('gateway', 'gw1', 'admin')
    await t.rejects(refused, { code: 'BECKON_ERR_CONFLICT', message: /pump-1/ })
    t.ok(await s.get('gateway', 'gw1'), 'the used gateway stays')
    t.equal(await s.revision(), rev, 'refused deletes change nothing')

    t.strictSame(await s.delete('device', 'pump-1', 'bob'), device('pump-1', 'gw1'), 'returns what was removed')
    t.equal(await s.get('device', 'pump-1'), undefined)
    t.equal(await s.get('policy', 'pump-1'), undefined, 'its policy went with it')
    t.ok(await s.get('policy', 'other'), 'other policies stay')
    t.equal(await s.revision(), rev + 2, 'two records changed')
    const { entries } = await s.queryAudit({ limit: 2 })
    t.match(entries, [
      { action: 'policy.delete', target: 'policy/pump-1', actor: 'bob', before: policy() },
      { action: 'device.delete', target: 'device/pump-1', actor: 'bob', before: device('pump-1', 'gw1') },
    ])
    t.notOk('after' in entries[1]!, 'a delete has no after')

    await t.rejects(s.delete('gateway', 'gw1', 'admin'), { code: 'BECKON_ERR_CONFLICT', message: /pump-2/ })
    await s.delete('device', 'pump-2', 'admin', 'device.retire')
    t.match((await s.queryAudit({ limit: 1 })).entries[0], { action: 'device.retire', target: 'device/pump-2' })
    t.strictSame(await s.delete('gateway', 'gw1', 'admin'), gateway('gw1'), 'unused now')
    await s.delete('gateway', 'gw2', 'admin')
    await t.rejects(s.delete('gateway', 'gw2', 'admin'), { code: 'BECKON_ERR_NOT_FOUND' })
    await checkRevisionInvariant(t, s)
  })

  t.test('audit copies never hold a token hash or the LDAP bind password', async (t) => {
    const s = await open(t)
    const tok = token('00000000000000aa')
    await s.put('token', tok.id, tok, 'admin')
    await s.put('token', tok.id, { ...tok, revoked_at: 1_700_000_001_000 }, 'admin', { action: 'token.revoke' })
    t.strictSame(await s.delete('token', tok.id, 'admin'), { ...tok, revoked_at: 1_700_000_001_000 }, 'delete returns the full record')
    await s.put('setting', 'ldap', ldap(), 'admin')
    await s.put('setting', 'ldap', { ...ldap(), timeout_ms: 5000 }, 'admin')
    await s.delete('setting', 'ldap', 'admin')
    await s.import({ gateways: [gateway('gw1')] }, 'admin')

    const entries = await allAudit(s)
    t.equal(entries.length, 7)
    const text = JSON.stringify(entries)
    t.notMatch(text, /f{64}/, 'no token hash anywhere in the audit log')
    t.notMatch(text, /hunter2/, 'no bind password anywhere in the audit log')
    t.match(entries[0], { action: 'token.create', after: { id: tok.id, name: 'ci', scopes: ['read', 'write'] } })
    t.notOk('hash' in (entries[0]!.after as object))
    t.match(entries[1], { action: 'token.revoke', before: { id: tok.id }, after: { revoked_at: 1_700_000_001_000 } })
    t.match(entries[3], { action: 'setting.create', after: { bind_password: '[redacted]', bind_dn: 'cn=beckon,dc=example' } })
    t.match(entries[4], { before: { bind_password: '[redacted]' }, after: { bind_password: '[redacted]', timeout_ms: 5000 } })
    t.match(entries[5], { action: 'setting.delete', before: { bind_password: '[redacted]' } })
    t.strictSame(await s.get('setting', 'ldap'), undefined)
    await checkRevisionInvariant(t, s)
  })

  t.test('import: dependency order, one transaction, idempotent', async (t) => {
    const s = await open(t)
    const bundle = {
      gateways: [gateway('gw1'), gateway('gw2')],
      groups: [group('ops')],
      users: [user('alice', { groups: ['ops'] }), user('bob')],
      devices: [device('pump-1', 'gw1'), device('pump-2', 'gw2')],
      policies: { 'pump-1': policy(), 'pump-2': policy([80, 443]) },
    }
    const first = await s.import(bundle, 'importer')
    t.strictSame(first, {
      gateway: { created: 2, updated: 0, unchanged: 0 },
      group: { created: 1, updated: 0, unchanged: 0 },
      user: { created: 2, updated: 0, unchanged: 0 },
      device: { created: 2, updated: 0, unchanged: 0 },
      policy: { created: 2, updated: 0, unchanged: 0 },
    })
    t.strictSame(await s.get('device', 'pump-2'), device('pump-2', 'gw2'))
    t.strictSame(await s.get('policy', 'pump-2'), policy([80, 443]))
    const entries = await allAudit(s)
    t.strictSame(entries.map((e) => e.target), ['gateway/gw1', 'gateway/gw2', 'group/ops', 'user/alice', 'user/bob', 'device/pump-1', 'device/pump-2', 'policy/pump-1', 'policy/pump-2'], 'gateways, groups, users, devices, policies')
    t.ok(entries.every((e) => e.actor === 'importer' && e.action.endsWith('.create')))
    const rev = await s.revision()
    t.equal(rev, 9)

    const again = await s.import(bundle, 'importer')
    t.strictSame(again, {
      gateway: { created: 0, updated: 0, unchanged: 2 },
      group: { created: 0, updated: 0, unchanged: 1 },
      user: { created: 0, updated: 0, unchanged: 2 },
      device: { created: 0, updated: 0, unchanged: 2 },
      policy: { created: 0, updated: 0, unchanged: 2 },
    }, 'everything unchanged the second time')
    t.equal(await s.revision(), rev, 'an unchanged import does not bump the revision')
    t.equal((await allAudit(s)).length, 9, 'an unchanged import writes no audit entry')

    // Same values, keys written in another order: still unchanged (jsonb reorders keys).
    const reordered = { gateways: [{ public_key: KEY('g'), name: 'gw1' }] }
    t.match(await s.import(reordered, 'importer'), { gateway: { unchanged: 1, created: 0, updated: 0 } })

    const changed = await s.import({ ...bundle, users: [user('alice', { groups: [] }), user('carol')], policies: {} }, 'second')
    t.match(changed, { user: { created: 1, updated: 1, unchanged: 0 }, gateway: { unchanged: 2 }, policy: { created: 0, updated: 0, unchanged: 0 } })
    t.equal(await s.revision(), rev + 2)
    t.match((await s.queryAudit({ actor: 'second' })).entries, [
      { action: 'user.create', target: 'user/carol' },
      { action: 'user.update', target: 'user/alice', before: { groups: ['ops'] }, after: { groups: [] } },
    ])
    t.strictSame(await s.import({}, 'x'), Object.fromEntries(['gateway', 'group', 'user', 'device', 'policy'].map((k) => [k, { created: 0, updated: 0, unchanged: 0 }])), 'an empty bundle')

    // One bad item refuses the whole bundle before anything is written.
    await t.rejects(s.import({ gateways: [gateway('gw9')], devices: [{ nope: true } as never] }, 'x'), { code: 'BECKON_ERR_VALIDATION' })
    await t.rejects(s.import({ groups: 'ops' as never }, 'x'), { code: 'BECKON_ERR_VALIDATION' })
    t.equal(await s.get('gateway', 'gw9'), undefined)
    await checkRevisionInvariant(t, s)
  })

  t.test('queryAudit: newest first, filters, prefix, paging, limits', async (t) => {
    const s = await open(t)
    await s.audit({ actor: 'relay-a', action: 'session.kill', target: 'session/1', at: 1000, detail: { why: 'admin' } })
    await s.audit({ actor: 'alice', action: 'session.end', target: 'session/2', at: 2000, outcome: 'ok' })
    await s.audit({ actor: 'alice', action: 'sessions.purge', target: 'sessions', at: 3000, before: 'x', after: [1, 'two', null, { three: 3.5 }] })
    await s.audit({ actor: 'bob', action: 'Session.odd', target: 'session/3', at: 4000 })
    await s.audit({ actor: 'bob', action: 'session_x', target: 'session/4', at: 5000 })
    t.equal(await s.revision(), 0, 'free audit entries do not bump the revision')

    const all = (await s.queryAudit({})).entries
    t.strictSame(all.map((e) => e.at), [5000, 4000, 3000, 2000, 1000], 'newest first')
    t.strictSame(all[2], { id: all[2]!.id, at: 3000, actor: 'alice', action: 'sessions.purge', target: 'sessions', before: 'x', after: [1, 'two', null, { three: 3.5 }] }, 'JSON values round-trip, absent fields stay absent')
    t.strictSame(all[4]!.detail, { why: 'admin' })
    t.equal(all[3]!.outcome, 'ok')

    const actions = async (q: Parameters<Store['queryAudit']>[0]): Promise<string[]> => (await s.queryAudit(q)).entries.map((e) => e.action)
    t.strictSame(await actions({ action: 'session.' }), ['session.end', 'session.kill'], 'a prefix ends in a dot; case-sensitive; _ is no wildcard')
    t.strictSame(await actions({ action: 'session_' }), [], 'without the dot it is exact')
    t.strictSame(await actions({ action: 'session.end' }), ['session.end'])
    t.strictSame(await actions({ action: 'session' }), [])
    t.strictSame(await actions({ actor: 'alice' }), ['sessions.purge', 'session.end'])
    t.strictSame(await actions({ target: 'session/3' }), ['Session.odd'])
    t.strictSame(await actions({ since: 2000, until: 4000 }), ['Session.odd', 'sessions.purge', 'session.end'], 'since and until are inclusive')
    t.strictSame(await actions({ actor: 'bob', since: 4500 }), ['session_x'])
    t.strictSame(await actions({ before: all[1]!.id }), ['sessions.purge', 'session.end', 'session.kill'])

    // 130 more entries in one import (one transaction), then page through them.
    await s.import({ groups: Array.from({ length: 130 }, (_, i) => group(`g${String(i).padStart(3, '0')}`)) }, 'bulk')
    const firstPage = await s.queryAudit({})
    t.equal(firstPage.entries.length, 100, 'default page: 100')
    t.equal(firstPage.next, firstPage.entries[99]!.id)
    const seen: number[] = []
    let before: number | undefined
    for (let i = 0; i < 100; i++) {
      const page = await s.queryAudit({ limit: 7, ...(before === undefined ? {} : { before }) })
      seen.push(...page.entries.map((e) => e.id))
      if (page.next === undefined) break
      t.equal(page.entries.length, 7)
      before = page.next
    }
    t.equal(seen.length, 135, 'paging returns every entry')
    t.equal(new Set(seen).size, 135, 'exactly once')
    t.strictSame(seen, [...seen].sort((a, b) => b - a), 'in descending id order')
    const exact = await s.queryAudit({ limit: 135 })
    t.equal(exact.entries.length, 135)
    t.equal(exact.next, undefined, 'no next page when the last one is exactly full')
    t.equal((await s.queryAudit({ actor: 'bulk', limit: 3 })).entries.length, 3)

    await s.import({ groups: Array.from({ length: 400 }, (_, i) => group(`h${String(i).padStart(3, '0')}`)) }, 'bulk')
    const capped = await s.queryAudit({ limit: 10_000 })
    t.equal(capped.entries.length, 500, 'at most 500 per page')
    t.type(capped.next, 'number')
    t.equal((await s.queryAudit({ limit: 0 })).entries.length, 1, 'a limit below 1 means 1')
    await t.rejects(s.queryAudit({ limit: Number.NaN }), { code: 'BECKON_ERR_VALIDATION' })
    await t.rejects(s.queryAudit({ before: 'x' as never }), { code: 'BECKON_ERR_VALIDATION' })
    await checkRevisionInvariant(t, s)
  })

  t.test('sessions: open, update, list, end with its audit entry', async (t) => {
    const s = await open(t)
    const a = session({ started_at: 1000, port: 22, channel: 'sms', fallback: ['email'], ike_state: 'CONNECTING', kill_requested: undefined })
    const b = session({ started_at: 2000, device: 'pump-2', user: 'bob', mode: 'tcp', relay: 'relay-b' })
    const c = session({ started_at: 3000 })
    for (const x of [a, b, c]) await s.sessionOpen(x)
    const { kill_requested: _unused, ...aStored } = a
    t.strictSame(await s.getSession(a.id), aStored, 'round-trips, absent fields stay absent')
    t.strictSame(await s.getSession(b.id), b)
    await t.rejects(s.sessionOpen(a), { code: 'BECKON_ERR_CONFLICT' })

    await s.sessionUpdate(a.id, { stage: 'connected', bytes_up: 10, bytes_down: 20, child_state: 'INSTALLED', fallback: ['email', 'sms'] })
    t.match(await s.getSession(a.id), { stage: 'connected', bytes_up: 10, bytes_down: 20, child_state: 'INSTALLED', ike_state: 'CONNECTING', fallback: ['email', 'sms'], channel: 'sms' })
    await s.sessionUpdate(a.id, { kill_requested: 'admin' })
    t.equal((await s.getSession(a.id))!.kill_requested, 'admin')
    await s.sessionUpdate(a.id, {})
    await t.rejects(s.sessionUpdate('f'.repeat(24), { stage: 'closed' }), { code: 'BECKON_ERR_NOT_FOUND' })
    await t.rejects(s.sessionUpdate('f'.repeat(24), {}), { code: 'BECKON_ERR_NOT_FOUND' })

    const ids = async (q: Parameters<Store['listSessions']>[0]): Promise<string[]> => (await s.listSessions(q)).map((x) => x.id)
    t.strictSame(await ids({}), [c.id, b.id, a.id], 'newest first')
    t.strictSame(await ids({ live: true }), [c.id, b.id, a.id])
    t.strictSame(await ids({ device: 'pump-2' }), [b.id])
    t.strictSame(await ids({ user: 'alice' }), [c.id, a.id])
    t.strictSame(await ids({ relay: 'relay-b' }), [b.id])
    t.strictSame(await ids({ before: 3000 }), [b.id, a.id], 'before pages by started_at')
    t.strictSame(await ids({ limit: 1 }), [c.id])

    const rev = await s.revision()
    await s.sessionEnd(a.id, { outcome: 'ok', reason: 'client closed', bytes_up: 1234, bytes_down: 5_000_000_000, at: 61_000 })
    t.strictSame(await s.getSession(a.id), { ...aStored, stage: 'closed', kill_requested: 'admin', bytes_up: 1234, bytes_down: 5_000_000_000, child_state: 'INSTALLED', fallback: ['email', 'sms'], ended_at: 61_000, outcome: 'ok', reason: 'client closed' }, 'ended_at, outcome, reason, bytes (beyond 32 bits)')
    const end = (await s.queryAudit({ action: 'session.end' })).entries
    t.equal(end.length, 1)
    t.match(end[0], {
      action: 'session.end',
      target: `session/${a.id}`,
      outcome: 'ok',
      at: 61_000,
      detail: { user: 'alice', device: 'pump-1', mode: 'ipsec', channel: 'sms', fallback: ['email', 'sms'], bytes_up: 1234, bytes_down: 5_000_000_000, duration_ms: 60_000 },
    })
    await t.rejects(s.sessionEnd(a.id, { outcome: 'ok', bytes_up: 0, bytes_down: 0 }), { code: 'BECKON_ERR_SESSION_ENDED' })
    t.equal((await s.queryAudit({ action: 'session.end' })).entries.length, 1, 'ending twice writes one entry')
    await t.rejects(s.sessionUpdate(a.id, { bytes_up: 1 }), { code: 'BECKON_ERR_SESSION_ENDED' })
    await t.rejects(s.sessionEnd('e'.repeat(24), { outcome: 'ok', bytes_up: 0, bytes_down: 0 }), { code: 'BECKON_ERR_NOT_FOUND' })

    await s.sessionEnd(b.id, { outcome: 'BECKON_ERR_WAKE_TIMEOUT', bytes_up: 0, bytes_down: 0 })
    const bEnded = await s.getSession(b.id)
    t.equal(bEnded!.outcome, 'BECKON_ERR_WAKE_TIMEOUT')
    t.notOk('reason' in bEnded!, 'no reason given, none stored')
    t.ok(Math.abs(bEnded!.ended_at! - Date.now()) < 60_000, 'ended now by default')
    t.match((await s.queryAudit({ target: `session/${b.id}` })).entries[0], { outcome: 'BECKON_ERR_WAKE_TIMEOUT', detail: { mode: 'tcp', channel: null, user: 'bob' } })

    t.strictSame(await ids({ live: true }), [c.id], 'live: not ended')
    t.strictSame(await ids({ live: false }), [b.id, a.id], 'live false: ended only')
    t.equal(await s.revision(), rev, 'sessions do not bump the revision')
    await checkRevisionInvariant(t, s)
  })

  t.test('sessions: a live session moves to another relay once; the old holder can no longer end it', async (t) => {
    const s = await open(t)
    const a = session({ started_at: 1000, relay: 'relay-1' })
    await s.sessionOpen(a)
    const moved = await s.sessionTakeover(a.id, 'relay-1', 'relay-2', 5000)
    t.match(moved, { id: a.id, relay: 'relay-2', user: a.user, device: a.device })
    t.equal((await s.getSession(a.id))!.relay, 'relay-2')
    t.match((await s.queryAudit({ action: 'session.takeover' })).entries, [{ actor: 'relay:relay-2', target: `session/${a.id}`, at: 5000, detail: { from: 'relay-1', to: 'relay-2' } }])
    // A second taker that still thinks relay-1 holds it loses (two survivors racing).
    await t.rejects(s.sessionTakeover(a.id, 'relay-1', 'relay-3'), { code: 'BECKON_ERR_CONFLICT', message: /held by relay relay-2/ })
    // relay-1 comes back (or never died) and its re-join window closes: it cannot end the session.
    await t.rejects(s.sessionEnd(a.id, { outcome: 'BECKON_ERR_PATH_LOST', bytes_up: 0, bytes_down: 0, relay: 'relay-1' }), { code: 'BECKON_ERR_CONFLICT' })
    t.equal((await s.getSession(a.id))!.ended_at, undefined, 'still live')
    await s.sessionEnd(a.id, { outcome: 'ok', bytes_up: 1, bytes_down: 2, relay: 'relay-2' })
    t.match((await s.queryAudit({ action: 'session.end' })).entries, [{ detail: { relay: 'relay-2' } }], 'ended by its holder, audited once')
    await t.rejects(s.sessionTakeover(a.id, 'relay-2', 'relay-1'), { code: 'BECKON_ERR_SESSION_ENDED' })
    await t.rejects(s.sessionTakeover('e'.repeat(24), 'relay-1', 'relay-2'), { code: 'BECKON_ERR_NOT_FOUND' })
    await t.rejects(s.sessionTakeover(a.id, 7 as never, 'relay-2'), { code: 'BECKON_ERR_VALIDATION' })
    await checkRevisionInvariant(t, s)
  })

  t.test('bad input is a coded error, never a crash', async (t) => {
    const s = await open(t)
    const V = { code: 'BECKON_ERR_VALIDATION' }
    await t.rejects(s.get('bogus' as never, 'x'), V)
    await t.rejects(s.get('device', ''), V)
    await t.rejects(s.get('device', 'x'.repeat(300)), V)
    await t.rejects(s.put('device', 'x', null as never, 'a'), V)
    await t.rejects(s.put('device', 'x', [] as never, 'a'), V)
    await t.rejects(s.put('group', 'x', { name: 'x', n: 10n } as never, 'a'), V)
    const circular: Record<string, unknown> = { name: 'x' }
    circular.self = circular
    await t.rejects(s.put('group', 'x', circular as never, 'a'), V)
    await t.rejects(s.put('group', 'x', { name: 'nul\u0000' }, 'a'), V)
    await t.rejects(s.put('group', 'x', group('x'), undefined as never), V)
    await t.rejects(s.delete('group', undefined as never, 'a'), V)
    await t.rejects(s.audit({ actor: 'a', action: 5 as never, target: 't' }), V)
    await t.rejects(s.sessionOpen({ id: 'x' } as never), V)
    await t.rejects(s.sessionUpdate('x', { bytes_up: 1.5 }), V)
    await t.rejects(s.sessionEnd('x', { outcome: 'ok', bytes_up: -Infinity, bytes_down: 0 }), V)
    await t.rejects(s.import(null as never, 'a'), V)
    await t.rejects(s.import({ policies: { '': policy() } }, 'a'), V)
    t.equal(await s.revision(), 0, 'nothing was written')
    t.same((await s.queryAudit({})).entries, [])
    await s.ping()
  })

  t.test('concurrency: one create wins, parallel writers all counted', async (t) => {
    const s = await open(t)
    const racers = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => s.put('group', 'race', group('race', { description: `writer ${i}` }), `w${i}`, { create: true })))
    t.equal(racers.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one create succeeds')
    t.ok(racers.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'BECKON_ERR_CONFLICT'), 'the others get CONFLICT')
    t.equal(await s.revision(), 1)

    await Promise.all(Array.from({ length: 25 }, async (_, i) => await s.put('group', `g${i}`, group(`g${i}`), 'w')))
    await Promise.all(Array.from({ length: 10 }, async (_, i) => await s.put('group', 'same', group('same', { description: String(i) }), 'w')))
    t.equal(await s.revision(), 36)
    t.match((await s.queryAudit({ target: 'group/same' })).entries.map((e) => e.action).sort(), ['group.create', ...Array(9).fill('group.update')].sort(), 'one create, then updates')
    await checkRevisionInvariant(t, s)
  })

  t.test('a second instance on the same database sees changes and the revision; reopening migrates idempotently', async (t) => {
    const { store: a, again } = await f.fresh(t)
    const b = await again()
    await a.put('gateway', 'gw1', gateway('gw1'), 'via-a')
    t.strictSame(await b.get('gateway', 'gw1'), gateway('gw1'), 'read through the other instance')
    t.equal(await b.revision(), 1)
    await b.put('device', 'pump-1', device('pump-1', 'gw1'), 'via-b')
    t.equal(await a.revision(), 2, 'both see the same revision')
    await t.rejects(a.put('device', 'pump-1', device('pump-1', 'gw1'), 'via-a', { create: true }), { code: 'BECKON_ERR_CONFLICT' })
    await t.rejects(b.delete('gateway', 'gw1', 'via-b'), { code: 'BECKON_ERR_CONFLICT' })

    const racers = await Promise.allSettled([a, b, a, b].map(async (x, i) => await x.put('user', 'dup', user('dup'), `r${i}`, { create: true })))
    t.equal(racers.filter((r) => r.status === 'fulfilled').length, 1, 'one create across instances')
    await Promise.all(Array.from({ length: 20 }, async (_, i) => await (i % 2 === 0 ? a : b).put('group', `g${i}`, group(`g${i}`), 'x')))
    t.equal(await a.revision(), 23)
    t.equal(await b.revision(), 23)
    await b.close()
    await b.close()
    await t.rejects(b.get('gateway', 'gw1'), { code: 'BECKON_ERR_STORE_UNAVAILABLE' }, 'a closed store refuses with a coded error')
    await t.rejects(b.ping(), { code: 'BECKON_ERR_STORE_UNAVAILABLE' })
    t.strictSame(await a.get('gateway', 'gw1'), gateway('gw1'), 'closing one leaves the other working')

    const c = await again()
    t.equal(await c.revision(), 23, 'reopened: migrations already applied, data kept')
    t.equal((await c.list('group')).length, 20)
    await checkRevisionInvariant(t, c)
  })
}
