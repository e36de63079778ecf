// The control plane in the namespace lab: users from slapd, a device and its IPsec
// policy made by an engineer with the CLI, policy changes applied to live sessions,
// operator kills that leave nothing in either charon, the directory down → 503, and an
// audit log that shows all of it.
//
//   [client] beckon connect ──TLS CONNECT (Basic: LDAP user)──▶ [relay] ──LDAP StartTLS──▶ [ldap] slapd
//                                                               │  management API 127.0.0.1:8444
//                                                               │  (beckon device|policy|session|audit …)
//                                                               └──SMS──▶ [gateway] ──▶ [terminal] agent + charon
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { waitFor } from '../../src/core/exec.js'
import { labCli, startRole, stopRole } from '../../src/lab/lab.js'
import { ViciSession } from '../../src/proto/vici/session.js'
import { requireRoot } from '../helpers/charon-pair.js'
import { LabHarness } from '../helpers/lab-session.js'

if (!requireRoot(t)) process.exit(1)

const lab = new LabHarness(t, 'bkc')
const cli = (args: string[]): Promise<any> => labCli(lab.st, args)
const grey = (): { name: string, password: string } => lab.st.user
const house = (): { name: string, password: string } => lab.st.user2

async function leftovers (uri: string): Promise<{ sas: number, conns: string[], shared: string[] }> {
  const v = await ViciSession.open({ uri, reconnect: false })
  try {
    const sas = await v.listSas()
    const conns = (await v.getConns()).filter((c) => c.startsWith('beckon-'))
    const shared = (await v.getShared()).filter((k) => k.startsWith('beckon-'))
    return { sas: sas.length, conns, shared }
  } finally { await v.close() }
}

t.test('lab up with the ldap node', async (t) => {
  const r = await lab.up()
  t.equal(r.status, 0, r.stderr)
  t.equal(lab.st.ldap.url, 'ldap://198.51.100.50:389')
})

t.test('an engineer creates the device and its policy through the CLI', async (t) => {
  const seed = parseYaml(readFileSync(join(lab.stateDir, 'etc', 'seed.yaml'), 'utf8')) as { devices: Array<Record<string, any>> }
  const agentKey = seed.devices[0]!.agent_public_key as string
  // Start from nothing: the lab's seeded device goes, then comes back by hand.
  await cli(['device', 'rm', 'patient-phone'])
  const dev = await cli(['device', 'add', 'patient-phone', '--gateway', 'carrier-gw', '--msisdn', '+15550100',
    '--agent-key', agentKey, '--wake-timeout', '10s', '--service', 'glucose:8080'])
  t.equal(dev.name, 'patient-phone')
  t.equal(dev.address, lab.st.terminal.permanentAddress, 'the permanent address is derived from the name, as before')
  const pol = await cli(['policy', 'set', 'patient-phone', '--allow', 'group:physicians tcp/8080', '--dpd', '10s'])
  t.same(pol.rules[0].groups, ['physicians'])
  const check = await cli(['policy', 'check', 'patient-phone'])
  t.equal(check.ok, true, 'the relay\'s charon loaded the generated connection')
  await t.rejects(cli(['policy', 'set', 'patient-phone', '--allow', 'group:physicians tcp/8080', '--esp', 'aes256gcm16,aes257gcm16']),
    { code: 'BECKON_ERR_POLICY_INVALID', message: /esp_proposals\[1\]: unknown algorithm "aes257gcm16"/ })
})

let greySession: string | undefined

t.test('the LDAP physician reaches the glucose log over IPsec; the cardiologist gets 403', async (t) => {
  const s = await lab.connect(grey())
  const got = await lab.get()
  t.equal(got.status, 0, got.stdout)
  t.match(got.stdout, /mmol/, 'glucose readings arrived')
  const live = await cli(['session', 'list', '--live']) as Array<Record<string, any>>
  t.equal(live.length, 1)
  t.match(live[0], { user: 'dr-grey', device: 'patient-phone', mode: 'ipsec', stage: 'connected', channel: 'sms', relay: 'relay-1' })
  t.ok(live[0]!.bytes_up > 0 && live[0]!.bytes_down > 0, 'live byte counters move')
  greySession = live[0]!.id as string
  t.match(await lab.refused(house()), { code: 'BECKON_ERR_FORBIDDEN' })

  // The policy now admits cardiologists only: dr-grey's live session ends, at once.
  await cli(['policy', 'set', 'patient-phone', '--allow', 'group:cardiologists tcp/8080'])
  // A CONNECT is what reads the new revision; dr-house's is the one the new policy admits.
  const h = await lab.connect(house())
  const code = await Promise.race([s.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000))])
  t.not(code, 'still running', 'dr-grey\'s tunnel closed when the policy dropped him')
  const ended = await cli(['session', 'show', greySession])
  t.match(ended, { outcome: 'BECKON_ERR_SESSION_ENDED', reason: /policy change/ })
  t.match(await lab.refused(grey()), { code: 'BECKON_ERR_FORBIDDEN' }, 'and the next CONNECT gets 403')
  await lab.stop(h)
})

t.test('beckon session kill closes the tunnel and leaves no SA and no secret on either charon', async (t) => {
  await cli(['policy', 'set', 'patient-phone', '--allow', 'group:physicians,group:cardiologists tcp/8080'])
  const s = await lab.connect(grey())
  t.equal((await lab.get()).status, 0)
  const [live] = await cli(['session', 'list', '--live', '--user', 'dr-grey']) as Array<{ id: string }>
  t.ok(live, 'the session is listed')
  const before = await leftovers(lab.st.ipsec.terminalVici)
  t.ok(before.sas > 0 && before.conns.length === 1 && before.shared.length === 1, 'the terminal holds the session\'s SA, connection and PSK')
  await cli(['session', 'kill', live!.id])
  await Promise.race([s.exited, new Promise((_r, reject) => setTimeout(() => reject(new Error('tunnel still up after kill')), 15_000))])
  for (const [end, uri] of [['client', lab.st.ipsec.clientVici], ['terminal', lab.st.ipsec.terminalVici]] as const) {
    await waitFor(`${end} charon to drop the session`, async () => {
      const l = await leftovers(uri)
      return l.sas === 0 && l.conns.length === 0 && l.shared.length === 0
    }, 10_000)
    t.pass(`${end}: no SA, no connection, no shared secret left`)
  }
  t.match(await cli(['session', 'show', live!.id]), { outcome: 'BECKON_ERR_SESSION_ENDED', reason: 'ended by an operator' })
  await t.rejects(cli(['session', 'kill', live!.id]), { code: 'BECKON_ERR_SESSION_ENDED' }, 'a second kill says it already ended')
})

t.test('slapd stopped → 503 BECKON_ERR_DIRECTORY_UNAVAILABLE, never a way in', async (t) => {
  // A change bumps the revision: the relay builds its directory afresh (no cached logins).
  await cli(['group', 'add', 'on-call'])
  await stopRole(lab.st, 'slapd')
  t.teardown(() => startRole(lab.st, 'slapd'))
  t.match(await lab.refused(grey()), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE' })
  const health = await lab.inNode('relay', ['curl', '-sk', 'https://127.0.0.1:8444/health'])
  t.match(JSON.parse(health.stdout), { status: 'degraded', checks: { store: { ok: true }, directory: { ok: false } } })
})

t.test('the audit log shows all of it', async (t) => {
  const { entries: all } = await cli(['audit', '--all']) as { entries: Array<Record<string, any>> }
  const has = (action: string, match: (e: Record<string, any>) => boolean = () => true): boolean => all.some((e) => e.action === action && match(e))
  t.ok(has('device.delete', (e) => e.target === 'device/patient-phone'), 'device removed')
  t.ok(has('device.create', (e) => e.target === 'device/patient-phone' && /^token:/.test(e.actor)), 'device created by a token')
  t.ok(has('policy.update', (e) => e.before !== undefined && e.after !== undefined), 'policy changes with before and after')
  t.ok(has('policy.check'), 'the charon check')
  t.ok(has('session.refused', (e) => e.outcome === 'BECKON_ERR_FORBIDDEN' && e.actor === 'user:dr-house'), '403 for dr-house')
  t.ok(has('session.end', (e) => e.outcome === 'BECKON_ERR_SESSION_ENDED' && /policy change/.test(JSON.stringify(e.detail))), 'the session the policy ended')
  t.ok(has('session.kill'), 'the operator\'s kill')
  t.ok(has('session.end', (e) => e.outcome === 'BECKON_ERR_SESSION_ENDED' && /operator/.test(JSON.stringify(e.detail))), 'the session the operator ended')
  t.ok(has('session.refused', (e) => e.outcome === 'BECKON_ERR_DIRECTORY_UNAVAILABLE'), 'the directory outage')
  t.notMatch(JSON.stringify(all), new RegExp(lab.st.user.password.replace(/[-_]/g, '.')), 'no password in the audit log')
})
