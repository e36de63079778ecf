/**
 * checkPolicy against a real charon (5.9.8), alone in its own namespace:
 *
 *   ns bkpc<pid>-c
 *   lo only (nothing is negotiated: load-conn / get-algorithms / unload-conn)
 *   charon (kernel-libipsec → ipsec0), VICI on unix://<tmp>/charon.vici
 *
 * The namespace, charon, its /run tmpfs and the temp dir go in a teardown that runs
 * when a test fails too (and NetnsSet's exit hook on a crash).
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CharonProcess } from '../../src/lab/charon.js'
import { NetnsSet } from '../../src/lab/netns.js'
import type { ViciInput } from '../../src/proto/vici/codec.js'
import { ViciSession } from '../../src/proto/vici/session.js'
import { checkPolicy } from '../../src/ipsec/check.js'
import { validatePolicy } from '../../src/ipsec/policy.js'
import { validateProposals } from '../../src/ipsec/proposals.js'
import type { Device, Policy } from '../../src/store/records.js'
import { cleanUpAlways, requireRoot } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

const device: Device = {
  name: 'patient-phone',
  gateway: 'gw1',
  port: 7400,
  channels: ['sms'],
  wake_timeout_ms: 15_000,
  agent_public_key: 'A'.repeat(43),
  address: 'fd00:beca:0:2::2',
  services: [],
}

function policy (p: Partial<Policy> = {}): Policy {
  return {
    auth: 'psk',
    rules: [{ users: [], groups: ['physicians'], protocol: 'tcp', ports: [8443, 8080], ipsec: true, raw_tcp: false }],
    ike_proposals: ['aes256gcm16-prfsha256-x25519', 'aes256-sha256-ecp256'],
    esp_proposals: ['aes256gcm16', 'aes128-sha256-x25519'],
    ike_rekey_s: 14_400,
    child_rekey_s: 3_600,
    dpd_s: 30,
    raw_tcp: false,
    ...p,
  }
}

t.test('policy checks against charon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'beckon-pc-'))
  const set = new NetnsSet(`bkpc${process.pid % 100000}`)
  let charon: CharonProcess | undefined
  let vici: ViciSession | undefined
  const cleanup = async (): Promise<void> => {
    await vici?.close().catch(() => {})
    await charon?.stop().catch(() => {})
    await set.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
  cleanUpAlways(t, cleanup)

  const ns = await set.create('c')
  charon = new CharonProcess(ns.name, { dir })
  await charon.start()
  const v = vici = await ViciSession.open({ uri: charon.viciUri, reconnect: false })
  t.equal((await v.version()).version, '5.9.8', 'the charon these facts were read for')

  // Records, just before each unload, whether charon really held the connection.
  const held: Array<{ name: string, listed: boolean }> = []
  const unload = v.unloadConn.bind(v)
  v.unloadConn = async (name: string) => {
    held.push({ name, listed: (await v.getConns()).includes(name) })
    await unload(name)
  }

  await t.test('a valid psk policy loads, and nothing is left afterwards', async (t) => {
    const p = policy()
    validatePolicy(p, { device })
    held.length = 0
    const r = await checkPolicy(v, p, device)
    t.equal(r.ok, true)
    t.equal(held.length, 1, 'unloaded once')
    t.match(held[0]!.name, /^beckon-check-[0-9a-f]{12}$/, 'a unique name')
    t.equal(held[0]!.listed, true, 'charon held it before the unload')
    t.same(await v.getConns(), [], 'get-conns is empty afterwards')
    const c = r.connection as { proposals: string[], local: { auth: string }, children: { svc: { local_ts: string[], remote_ts: string[], esp_proposals: string[], rekey_time: string } } }
    t.same(c.proposals, p.ike_proposals)
    t.equal(c.local.auth, 'psk')
    t.same(c.children.svc.esp_proposals, p.esp_proposals)
    t.same(c.children.svc.remote_ts, ['fd00:beca:0:2::2/128[tcp/8080]', 'fd00:beca:0:2::2/128[tcp/8443]'], 'selectors from the rules, sorted')
    t.equal(c.children.svc.rekey_time, '3600s')
    t.same((r.responder as { remote_addrs: string[] }).remote_addrs, ['%any'], 'the responder side was generated too')
  })

  await t.test('pubkey mode: a throwaway CA made with pki', async (t) => {
    held.length = 0
    const r = await checkPolicy(v, policy({ auth: 'pubkey' }), device)
    const c = r.connection as { local: { auth: string, certs: string[] }, remote: { cacerts: string[] } }
    t.equal(c.local.auth, 'pubkey')
    t.match(c.local.certs[0], /^-----BEGIN CERTIFICATE-----/)
    t.match(c.remote.cacerts[0], /^-----BEGIN CERTIFICATE-----/)
    t.equal(held[0]?.listed, true, 'charon took the certificates with the connection')
    t.same(await v.getConns(), [])
  })

  await t.test('charon also takes a pubkey connection without certificates (a fact, not our path)', async (t) => {
    const r = await checkPolicy(v, policy({ auth: 'pubkey' }), device)
    const conf = r.connection as { local: Record<string, unknown>, remote: Record<string, unknown> }
    delete conf.local.certs
    delete conf.remote.cacerts
    await v.loadConn('beckon-check-nocerts', conf as unknown as ViciInput)
    await unload('beckon-check-nocerts')
    t.same(await v.getConns(), [])
  })

  await t.test('two checks at once do not collide', async (t) => {
    held.length = 0
    const [a, b] = await Promise.all([checkPolicy(v, policy(), device), checkPolicy(v, policy({ esp_proposals: ['chacha20poly1305'] }), device)])
    t.ok(a.ok && b.ok)
    t.equal(new Set(held.map((h) => h.name)).size, 2)
    t.same(await v.getConns(), [])
  })

  await t.test('our grammar accepts it, charon\'s plugins cannot run it: POLICY_REJECTED', async (t) => {
    // load-conn takes these (it only parses keywords); get-algorithms shows no plugin for them.
    const cases: Array<[Partial<Policy>, RegExp]> = [
      [{ esp_proposals: ['aes256gcm16', 'aes128-aesxcbc'] },
        /^policy\.esp_proposals\[1\] "aes128-aesxcbc": charon's loaded plugins provide no integrity algorithm AES_XCBC_96 \(get-algorithms integrity: .*HMAC_SHA2_256_128/],
      [{ ike_proposals: ['aes256gcm16-prfaescmac-x25519'] }, /^policy\.ike_proposals\[0\] .*: charon's loaded plugins provide no PRF PRF_AES128_CMAC/],
      [{ esp_proposals: ['camellia256ccm16'] }, /provide no AEAD algorithm CAMELLIA_CCM_16/],
      [{ ike_proposals: ['serpent256-sha256-x25519'] }, /provide no encryption algorithm SERPENT_CBC/],
      [{ ike_proposals: ['aes256gcm16-prfsha256-ntru128'] }, /provide no key exchange method NTRU_128/],
    ]
    for (const [patch, message] of cases) {
      const p = policy(patch)
      t.doesNotThrow(() => validatePolicy(p, { device }), `grammar: ${JSON.stringify(patch)}`)
      held.length = 0
      await t.rejects(checkPolicy(v, p, device), { code: 'BECKON_ERR_POLICY_REJECTED', detail: message }, `charon: ${JSON.stringify(patch)}`)
      t.equal(held[0]?.listed, true, 'load-conn had taken it')
      t.same(await v.getConns(), [], 'and it was unloaded')
    }
  })

  await t.test('a load-conn refusal carries charon\'s errmsg and its logged reason', async (t) => {
    // Our grammar refuses these too; checkPolicy shows that charon agrees, in its words.
    t.throws(() => validateProposals('p', ['aes256gcm16-x25519'], 'ike'), { code: 'BECKON_ERR_POLICY_INVALID' })
    held.length = 0
    await t.rejects(checkPolicy(v, policy({ ike_proposals: ['aes256gcm16-x25519'] }), device), {
      code: 'BECKON_ERR_POLICY_REJECTED',
      detail: 'initiator connection: load-conn: invalid value for: proposals, config discarded (charon: a PRF algorithm is mandatory in IKE proposals)',
    })
    await t.rejects(checkPolicy(v, policy({ esp_proposals: ['aes256gcm16', 'aes257gcm16'] }), device), {
      code: 'BECKON_ERR_POLICY_REJECTED',
      detail: 'initiator connection: load-conn: invalid value for: esp_proposals, config discarded (charon: algorithm \'aes257gcm16\' not recognized)',
    })
    await t.rejects(checkPolicy(v, policy({ esp_proposals: ['aes128gcm16-aes128-sha256'] }), device), {
      code: 'BECKON_ERR_POLICY_REJECTED',
      detail: /^initiator connection: load-conn: invalid value for: esp_proposals, config discarded \(charon: classic and combined-mode \(AEAD\) encryption algorithms can't be contained in the same ESP proposal\)$/,
    })
    t.same(held, [], 'nothing was loaded, so nothing to unload')
    t.same(await v.getConns(), [])
  })

  await t.test('charon accepts what Beckon refuses (ESP without integrity)', async (t) => {
    const p = policy({ esp_proposals: ['aes128'] })
    t.throws(() => validatePolicy(p, { device }), { code: 'BECKON_ERR_POLICY_INVALID' })
    t.equal((await checkPolicy(v, p, device)).ok, true, 'charon loads it: the stricter rule is ours')
    t.same(await v.getConns(), [])
  })

  t.same(await v.getConns(), [], 'charon holds no connection at the end')
})
