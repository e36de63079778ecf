// Device policies: every semantic rule with the exact field path, and the per-user grant.
import t from 'tap'
import { grantFor, validatePolicy, type PolicyContext } from '../../../src/ipsec/policy.js'
import type { Device, Policy, PolicyRule } from '../../../src/store/records.js'

const device: Device = {
  name: 'patient-phone',
  gateway: 'gw1',
  port: 7400,
  channels: ['sms'],
  wake_timeout_ms: 15_000,
  agent_public_key: 'A'.repeat(43),
  services: [],
}
const withServices: Device = {
  ...device,
  services: [
    { name: 'glucose', protocol: 'tcp', port: 8080 },
    { name: 'ecg', protocol: 'tcp', port: 8443 },
    { name: 'telemetry', protocol: 'udp', port: 5684 },
  ],
}

function rule (r: Partial<PolicyRule>): PolicyRule {
  return { users: [], groups: [], protocol: 'tcp', ports: [8080], ipsec: true, raw_tcp: false, ...r }
}

function policy (p: Partial<Policy> = {}): Policy {
  return {
    auth: 'psk',
    rules: [rule({ groups: ['physicians'] })],
    ike_proposals: ['aes256gcm16-prfsha256-x25519'],
    esp_proposals: ['aes256gcm16'],
    ike_rekey_s: 14_400,
    child_rekey_s: 3_600,
    dpd_s: 30,
    raw_tcp: false,
    ...p,
  }
}

const ctx: PolicyContext = { device, knownUsers: new Set(['dr-grey', 'dr-house']), knownGroups: new Set(['physicians', 'nurses']) }
const invalid = (detail: string | RegExp): { code: string, detail: string | RegExp } => ({ code: 'BECKON_ERR_POLICY_INVALID', detail })

t.test('a sound policy passes', async (t) => {
  t.doesNotThrow(() => validatePolicy(policy(), ctx))
  t.doesNotThrow(() => validatePolicy(policy({
    raw_tcp: true,
    rules: [
      rule({ groups: ['physicians'], ports: [8080, 8443] }),
      rule({ users: ['dr-grey'], ports: [8080], raw_tcp: true, ipsec: false }),
      rule({ groups: ['nurses'], protocol: 'udp', ports: [5684] }),
      rule({ groups: ['physicians'], protocol: 'udp', ports: [8080] }), // another protocol, another selector
    ],
  }), ctx))
  t.doesNotThrow(() => validatePolicy(policy({ rules: [] }), ctx), 'no rules: nobody may connect')
  t.doesNotThrow(() => validatePolicy(policy({ child_rekey_s: 14_400 }), ctx), 'child rekey may equal IKE rekey')
})

t.test('proposals: grammar errors name the list and the index', async (t) => {
  t.throws(() => validatePolicy(policy({ esp_proposals: ['aes256gcm16', 'aes257gcm16'] }), ctx),
    invalid('policy.esp_proposals[1]: unknown algorithm "aes257gcm16"'))
  t.throws(() => validatePolicy(policy({ ike_proposals: ['aes256gcm16-x25519'] }), ctx), invalid(/^policy\.ike_proposals\[0\]: "aes256gcm16-x25519" has no PRF/))
  t.throws(() => validatePolicy(policy({ ike_proposals: ['aes256gcm16'] }), ctx), invalid(/^policy\.ike_proposals\[0\]: .* has no PRF/))
  t.throws(() => validatePolicy(policy({ esp_proposals: ['aes128'] }), ctx), invalid(/^policy\.esp_proposals\[0\]: "aes128" has a classic cipher but no integrity/))
})

t.test('every rule names a principal, and it exists when the directory is known', async (t) => {
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'] }), rule({})] }), ctx),
    invalid('policy.rules[1]: names no user or group, so it grants nothing'))
  t.throws(() => validatePolicy(policy({ rules: [rule({ users: ['dr-grey', 'dr-who'], ports: [1] })] }), ctx),
    invalid('policy.rules[0].users[1]: unknown user dr-who'))
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['surgeons'] })] }), ctx),
    invalid('policy.rules[0].groups[0]: unknown group surgeons'))
  t.doesNotThrow(() => validatePolicy(policy({ rules: [rule({ users: ['ldap-only-user'] })] }), { device, knownGroups: ctx.knownGroups }),
    'LDAP: users unknown to the store are not checked')
  t.doesNotThrow(() => validatePolicy(policy({ rules: [rule({ groups: ['ldap-group'] })] }), { device }))
})

t.test('rules need ports: an empty list would become protocol any', async (t) => {
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], ports: [] })] }), ctx),
    invalid('policy.rules[0].ports: empty; a rule without ports would make the traffic selector protocol "any" (every port of the terminal), which the agent always refuses — list the ports'))
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], ports: [8080, 8080] })] }), ctx),
    invalid('policy.rules[0].ports[1]: tcp/8080 listed twice'))
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], ipsec: false })] }), ctx),
    invalid('policy.rules[0]: grants neither ipsec nor raw_tcp'))
})

t.test('raw TCP needs policy.raw_tcp and protocol tcp', async (t) => {
  t.throws(() => validatePolicy(policy({ rules: [rule({ users: ['dr-grey'], raw_tcp: true })] }), ctx),
    invalid('policy.rules[0].raw_tcp: needs policy.raw_tcp (raw TCP is off for this device)'))
  t.throws(() => validatePolicy(policy({ raw_tcp: true, rules: [rule({ users: ['dr-grey'], raw_tcp: true, protocol: 'udp' })] }), ctx),
    invalid('policy.rules[0].raw_tcp: needs protocol tcp, not udp'))
})

t.test('overlapping selectors for the same principal name both rules', async (t) => {
  t.throws(() => validatePolicy(policy({
    rules: [
      rule({ groups: ['physicians'], ports: [8080, 8443] }),
      rule({ groups: ['nurses'], ports: [8080] }),
      rule({ groups: ['nurses', 'physicians'], ports: [8080] }),
    ],
  }), ctx), invalid('policy.rules[2].ports[0]: tcp/8080 already granted to group nurses by policy.rules[1]'))
  t.throws(() => validatePolicy(policy({
    rules: [rule({ groups: ['physicians'], ports: [8080] }), rule({ users: ['dr-grey'], ports: [1] }), rule({ groups: ['physicians'], ports: [8080] })],
  }), ctx), invalid('policy.rules[2].ports[0]: tcp/8080 already granted to group physicians by policy.rules[0]'))
  t.throws(() => validatePolicy(policy({
    raw_tcp: true,
    rules: [rule({ users: ['dr-grey'], ports: [22, 8080] }), rule({ users: ['dr-grey'], ports: [8080], ipsec: false, raw_tcp: true })],
  }), ctx), invalid('policy.rules[1].ports[0]: tcp/8080 already granted to user dr-grey by policy.rules[0]'), 'also across modes: merge them into one rule')
  t.doesNotThrow(() => validatePolicy(policy({
    rules: [rule({ groups: ['physicians'], ports: [8080] }), rule({ users: ['dr-grey'], ports: [8080] })],
  }), ctx), 'a user and a group: membership is unknown here, the grant is a union')
})

t.test('lifetimes', async (t) => {
  t.throws(() => validatePolicy(policy({ ike_rekey_s: 3_600, child_rekey_s: 7_200 }), ctx),
    invalid('policy.child_rekey_s: 7200 s exceeds policy.ike_rekey_s (3600 s); the CHILD_SA must rekey no later than its IKE_SA'))
  t.throws(() => validatePolicy(policy({ child_rekey_s: 60, dpd_s: 60 }), ctx),
    invalid('policy.dpd_s: 60 s must be below policy.child_rekey_s (60 s)'))
})

t.test('ports must be the device\'s services when it lists any', async (t) => {
  const c = { ...ctx, device: withServices }
  t.doesNotThrow(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], ports: [8080, 8443] }), rule({ groups: ['nurses'], protocol: 'udp', ports: [5684] })] }), c))
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], ports: [8443, 9000] })] }), c),
    invalid('policy.rules[0].ports[1]: tcp/9000 is not a service of device patient-phone (glucose tcp/8080, ecg tcp/8443, telemetry udp/5684)'))
  t.throws(() => validatePolicy(policy({ rules: [rule({ groups: ['physicians'], protocol: 'udp', ports: [8080] })] }), c),
    invalid(/^policy\.rules\[0\]\.ports\[0\]: udp\/8080 is not a service of device patient-phone/), 'the protocol must match too')
})

t.test('grantFor: the union of the matching rules', async (t) => {
  const p = policy({
    raw_tcp: true,
    rules: [
      rule({ groups: ['physicians'], ports: [8443, 8080] }),
      rule({ users: ['dr-grey'], ports: [22], ipsec: false, raw_tcp: true }),
      rule({ groups: ['nurses'], protocol: 'udp', ports: [5684] }),
      rule({ users: ['dr-house'], ports: [9000, 1000] }),
    ],
  })
  t.same(grantFor(p, device, { name: 'dr-grey', groups: ['physicians'] }), { protocol: 'tcp', ports: [22, 8080, 8443], ipsec: [8080, 8443], rawTcp: [22] })
  t.same(grantFor(p, device, { name: 'dr-house', groups: ['physicians'] }), { protocol: 'tcp', ports: [1000, 8080, 8443, 9000], ipsec: [1000, 8080, 8443, 9000], rawTcp: [] })
  t.same(grantFor(p, device, { name: 'nina', groups: ['nurses'] }), { protocol: 'udp', ports: [5684], ipsec: [5684], rawTcp: [] })
  t.same(grantFor(p, device, { name: 'nobody', groups: [] }), { protocol: 'tcp', ports: [], ipsec: [], rawTcp: [] }, 'nothing granted')
  t.same(grantFor(p, device, { name: 'x', groups: ['nurses', 'physicians'] }), { protocol: 'tcp', ports: [8080, 8443], ipsec: [8080, 8443], rawTcp: [] }, 'tcp wins over udp: one protocol per session')
  t.same(grantFor({ ...p, raw_tcp: false }, device, { name: 'dr-grey', groups: [] }), { protocol: 'tcp', ports: [], ipsec: [], rawTcp: [] }, 'raw TCP off for the device')
  t.same(grantFor(p, withServices, { name: 'dr-house', groups: ['physicians'] }), { protocol: 'tcp', ports: [8080, 8443], ipsec: [8080, 8443], rawTcp: [] }, 'ports that are no longer services are left out')
})

t.test('psk mode needs the agent\'s key: PSKs are sealed for it', async (t) => {
  const { agent_public_key: _k, ...keyless } = device
  const p = policy({ auth: 'psk' })
  t.throws(() => validatePolicy(p, { device: keyless }), { code: 'BECKON_ERR_POLICY_INVALID', message: /policy\.auth: psk needs device patient-phone's agent_public_key/ })
  t.doesNotThrow(() => validatePolicy({ ...p, auth: 'pubkey' }, { device: keyless }), 'pubkey mode needs no agent key')
  t.doesNotThrow(() => validatePolicy({ ...p, rules: p.rules.map((r) => ({ ...r, ipsec: false, raw_tcp: true })), raw_tcp: true }, { device: keyless }), 'raw TCP only needs no agent key')
})
