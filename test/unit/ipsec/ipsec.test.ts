// Permanent addresses, PSK sealing, IPsec descriptors, and the charon config we generate.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { generateRawKeyPair, privateKeyFromRaw, publicKeyFromRaw } from '../../../src/core/keys.js'
import { ipv6Bytes, ipv6String, permanentAddress, ulaPrefix } from '../../../src/ipsec/addresses.js'
import { connConfig, terminalSelectors } from '../../../src/ipsec/tunnels.js'
import { signDescriptor, verifyDescriptor, type IpsecParams } from '../../../src/proto/descriptor/descriptor.js'
import { seal, unseal } from '../../../src/proto/descriptor/seal.js'
import { parseRelayConfig } from '../../../src/roles/relay/config.js'
import { ipsecGrant } from '../../../src/roles/relay/ipsec.js'
import { Catalog } from '../../../src/roles/relay/catalog.js'
import { authorize } from '../../../src/roles/relay/policy.js'
import { memoryStore } from '../../../src/store/memory.js'
import { silentLogger } from '../../../src/core/log.js'

t.test('permanent addresses: stable, distinct, inside the ULA prefix', async (t) => {
  const a = permanentAddress('fd00:beca::/48', 'user', 'dr-grey')
  t.equal(a, permanentAddress('fd00:beca::/48', 'user', 'dr-grey'), 'same name, same address, every time')
  t.match(a, /^fd00:beca:0:1:/, 'users in subnet 1')
  t.match(permanentAddress('fd00:beca::/48', 'device', 'dr-grey'), /^fd00:beca:0:2:/, 'devices in subnet 2')
  t.not(a, permanentAddress('fd00:beca::/48', 'user', 'dr-house'))
  t.equal(ipv6String(ipv6Bytes('fd00:0:0:0:1:0:0:1')), 'fd00::1:0:0:1')
  for (const bad of ['2001:db8::/48', 'fd00:beca::/64', 'fd00:beca::1/48', 'nonsense']) t.throws(() => ulaPrefix(bad), { code: 'BECKON_ERR_CONFIG' }, bad)
})

t.test('sealed secrets open only with the recipient key and the same session', async (t) => {
  const k = generateRawKeyPair('x25519')
  const priv = privateKeyFromRaw('x25519', k.privateKey)
  const pub = publicKeyFromRaw('x25519', k.publicKey)
  const psk = randomBytes(32)
  const sealed = seal(psk, pub, Buffer.from('session-a'))
  t.equal(sealed.length, 32 + 32 + 16)
  t.ok(unseal(sealed, priv, Buffer.from('session-a')).equals(psk))
  t.notOk(seal(psk, pub, Buffer.from('session-a')).equals(sealed), 'fresh ephemeral key each time')
  t.throws(() => unseal(sealed, priv, Buffer.from('session-b')), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' }, 'bound to its session')
  t.throws(() => unseal(sealed, privateKeyFromRaw('x25519', generateRawKeyPair('x25519').privateKey), Buffer.from('session-a')), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
  t.throws(() => unseal(sealed.subarray(0, 40), priv, Buffer.from('session-a')), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' })
})

const params: IpsecParams = {
  auth: 'psk',
  client: { id: 'dr-grey@abc.beckon', address: 'fd00:beca:0:1::1' },
  terminal: { id: 'patient-phone.abc.beckon', address: 'fd00:beca:0:2::2' },
  protocol: 'tcp',
  ports: [8080, 8443],
  ikeProposals: ['aes256gcm16-prfsha256-x25519'],
  espProposals: ['aes256gcm16'],
  ikeRekeyS: 14400,
  childRekeyS: 3600,
  dpdS: 30,
  pskSealed: 'A'.repeat(64),
}

t.test('charon configs from a descriptor', async (t) => {
  t.same(terminalSelectors(params), ['fd00:beca:0:2::2/128[tcp/8080]', 'fd00:beca:0:2::2/128[tcp/8443]'])
  t.same(terminalSelectors({ ...params, protocol: 'any' }), ['fd00:beca:0:2::2/128'])
  const init = connConfig({ session: 's', side: 'initiator', ipsec: params, bridgePort: 40001 }, 4500) as Record<string, any>
  t.same([init.remote_addrs, init.local_port, init.remote_port, init.encap], [['127.0.0.1'], 4500, 40001, 'yes'], 'initiator: from port_nat_t to the bridge, UDP-encapsulated')
  t.same(init.children.svc.local_ts, ['fd00:beca:0:1::1/128'])
  t.same(init.children.svc.remote_ts, ['fd00:beca:0:2::2/128[tcp/8080]', 'fd00:beca:0:2::2/128[tcp/8443]'])
  t.same([init.local.id, init.remote.id], ['dr-grey@abc.beckon', 'patient-phone.abc.beckon'])
  const resp = connConfig({ session: 's', side: 'responder', ipsec: params }, 4500) as Record<string, any>
  t.same(resp.remote_addrs, ['%any'])
  t.equal(resp.remote_port, undefined)
  t.same(resp.children.svc.local_ts, init.children.svc.remote_ts, 'the two ends mirror each other')
  t.throws(() => connConfig({ session: 's', side: 'initiator', ipsec: { ...params, auth: 'pubkey' }, bridgePort: 1 }, 4500), { code: 'BECKON_ERR_IPSEC_FAILED' })
})

t.test('IPsec descriptors are validated', async (t) => {
  const k = generateRawKeyPair('ed25519')
  const priv = privateKeyFromRaw('ed25519', k.privateKey)
  const base = { v: 1 as const, session: 'ab'.repeat(12), device: 'patient-phone', user: 'dr-grey', expires: 2_000_000_000, mode: 'ipsec' as const }
  const ok = signDescriptor({ ...base, ipsec: params }, priv)
  t.same(verifyDescriptor(ok, { keys: [publicKeyFromRaw('ed25519', k.publicKey)], now: 1_900_000_000, device: 'patient-phone' }).ipsec, params)
  const bad: Array<[string, Partial<IpsecParams>]> = [
    ['v4 address', { client: { id: 'x', address: '192.0.2.1' } }],
    ['bad id', { client: { id: 'a b', address: 'fd00::1' } }],
    ['no proposals', { ikeProposals: [] }],
    ['bad port', { ports: [0] }],
    ['psk without seal', { pskSealed: undefined }],
    ['bad protocol', { protocol: 'icmp' as 'tcp' }],
  ]
  for (const [what, patch] of bad) t.throws(() => signDescriptor({ ...base, ipsec: { ...params, ...patch } }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID' }, what)
  t.throws(() => signDescriptor({ ...base }, priv), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /ipsec parameters/ })
})

t.test('relay grant: selectors from policy, PSK sealed for the agent and never in clear', async (t) => {
  const relayX = generateRawKeyPair('x25519')
  const relayEd = generateRawKeyPair('ed25519')
  const agent = generateRawKeyPair('x25519')
  const cfg = parseRelayConfig({
    public_address: '198.51.100.20',
    keys: { x25519_private: relayX.privateKey, ed25519_private: relayEd.privateKey },
    ipsec: { prefix: 'fd00:beca::/48', domain: 'lab' },
    users: { 'dr-grey': { groups: ['physicians'] } },
    devices: { 'patient-phone': { msisdn: '+15550100', gateway_public_key: relayX.publicKey, agent_public_key: agent.publicKey, allow: [{ groups: ['physicians'], tcp: [8080], ipsec: true }, { users: ['dr-grey'], tcp: [22] }] } },
  })
  const store = await memoryStore()
  t.teardown(() => store.close())
  await store.import(cfg.seed, 'test')
  const snap = await new Catalog({ store, prefix: cfg.ipsec.prefix, log: silentLogger }).current()
  const entry = snap.devices.get('patient-phone')!
  const user = { name: 'dr-grey', groups: ['physicians'] }
  const selectors = authorize(user, entry.device, entry.policy, { device: 'patient-phone', mode: 'ipsec' })!
  const id = randomBytes(12)
  const key = randomBytes(32)
  const g = ipsecGrant(cfg.ipsec, entry, user, snap.userAddress('dr-grey'), selectors, id, key)
  t.same(g.params.ports, [8080], 'only rules that grant IPsec count (port 22 is raw-only)')
  t.equal(g.params.client.address, permanentAddress('fd00:beca::/48', 'user', 'dr-grey'))
  t.equal(g.params.client.id, `dr-grey@${id.toString('hex')}.lab`, 'psk identities are per session')
  const json = JSON.stringify(g.params)
  t.notOk(json.includes(g.psk!.toString('base64url')) || json.includes(g.psk!.toString('hex')), 'the PSK is not in the descriptor in clear')
  t.ok(unseal(Buffer.from(g.params.pskSealed!, 'base64url'), privateKeyFromRaw('x25519', agent.privateKey), Buffer.from(id.toString('hex'))).equals(g.psk!), 'the agent opens it')
  const g2 = ipsecGrant(cfg.ipsec, entry, user, snap.userAddress('dr-grey'), selectors, id, key)
  t.notOk(g2.psk!.equals(g.psk!), 'the session key alone does not determine the PSK (secret salt)')
})
