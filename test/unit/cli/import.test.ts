// `beckon import`: relay.yaml's devices, users, groups, gateways and policies move into
// the store; a second run changes nothing; afterwards a relay with devices in both the
// YAML and the store refuses to start, naming the conflict. Unknown keys are refused.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { generateRawKeyPair } from '../../../src/core/keys.js'
import { hashPassword } from '../../../src/directory/directory.js'
import { openStore } from '../../../src/store/open.js'
import { beckon } from '../../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'beckon-import-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

async function relayYaml (extra: Record<string, unknown> = {}): Promise<string> {
  const p = join(dir, 'relay.yaml')
  writeFileSync(p, stringify({
    client_listen: '127.0.0.1:0',
    dialback_listen: '127.0.0.1:0',
    public_address: '127.0.0.1',
    state_dir: join(dir, 'state'),
    keys: { x25519_private: generateRawKeyPair('x25519').privateKey, ed25519_private: generateRawKeyPair('ed25519').privateKey },
    users: { 'dr-grey': { password_hash: await hashPassword('pw-12345678'), groups: ['physicians'] } },
    devices: {
      'patient-phone': { msisdn: '+15550100', gateway_public_key: generateRawKeyPair('x25519').publicKey, wake_timeout: '20s', allow: [{ groups: ['physicians'], tcp: [8080], ipsec: true }] },
    },
    ...extra,
  }))
  return p
}

t.test('import moves the YAML into the store, once', async (t) => {
  const cfg = await relayYaml()
  const first = await beckon(['import', cfg, '--json'])
  t.equal(first.status, 0, first.stderr)
  const r1 = JSON.parse(first.stdout) as { store: string, report: Record<string, { created: number, updated: number, unchanged: number }> }
  t.match(r1.store, /^sqlite:.*beckon\.db$/)
  t.same(r1.report.device, { created: 1, updated: 0, unchanged: 0 })
  t.same(r1.report.policy, { created: 1, updated: 0, unchanged: 0 })
  t.same(r1.report.user, { created: 1, updated: 0, unchanged: 0 })
  t.same(r1.report.group, { created: 1, updated: 0, unchanged: 0 })
  t.same(r1.report.gateway, { created: 1, updated: 0, unchanged: 0 })
  const second = JSON.parse((await beckon(['import', cfg, '--json'])).stdout) as typeof r1
  for (const kind of ['device', 'policy', 'user', 'group', 'gateway']) t.same(second.report[kind], { created: 0, updated: 0, unchanged: 1 }, `${kind}: unchanged the second time`)

  const store = await openStore({ sqlite: join(dir, 'state', 'beckon.db') })
  t.teardown(() => store.close())
  t.match(await store.get('device', 'patient-phone'), { msisdn: '+15550100', wake_timeout_ms: 20_000, channels: ['sms'] })
  t.match(await store.get('policy', 'patient-phone'), { rules: [{ groups: ['physicians'], ports: [8080], ipsec: true }] })
  const audit = await store.queryAudit({ actor: `import:${cfg}` })
  t.equal(audit.entries.length, 5, 'one audit entry per imported record, none for the second run')
})

t.test('the relay refuses devices in both relay.yaml and the store', async (t) => {
  const cfg = await relayYaml()
  const r = await beckon(['relay', '--config', cfg], { timeoutMs: 15_000 })
  t.equal(r.status, 1)
  t.match(JSON.parse(r.stderr.trim().split('\n').pop()!), { error: { code: 'BECKON_ERR_IMPORT_CONFLICT', message: /relay\.yaml lists 1 device.*holds 1.*beckon import/ } })
})

t.test('unknown keys and rules without ports are refused, naming them', async (t) => {
  const typo = await beckon(['import', await relayYaml({ wake_timout: '5m' }), '--json'])
  t.equal(typo.status, 1)
  t.match(typo.stderr, /relay\.yaml\.wake_timout: unknown key/)
  const cfg = await relayYaml({ devices: { phone: { msisdn: '+15550101', gateway_public_key: generateRawKeyPair('x25519').publicKey, allow: [{ groups: ['physicians'], ipsec: true }] } } })
  const noPorts = await beckon(['import', cfg, '--json'])
  t.equal(noPorts.status, 1)
  t.match(noPorts.stderr, /devices\.phone\.allow\[0\]\.tcp: list the ports/)
})
