// Units, example configs and the installer stay consistent with the code.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { parseAgentConfig } from '../../src/roles/agent/agent.js'
import { parseGatewayConfig } from '../../src/roles/gateway/gateway.js'
import { parseRelayConfig } from '../../src/roles/relay/config.js'
import { generateRawKeyPair } from '../../src/core/keys.js'

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url))

t.test('one unit per role with the conventions', async (t) => {
  const units = readdirSync(root('systemd')).filter((f) => f.endsWith('.service')).sort()
  t.same(units, ['beckon-agent.service', 'beckon-gateway.service', 'beckon-relay.service'])
  for (const u of units) {
    const role = /beckon-(\w+)\.service/.exec(u)![1]!
    const text = readFileSync(root(`systemd/${u}`), 'utf8')
    t.match(text, new RegExp(`^ExecStart=/usr/local/bin/beckon ${role} --config /etc/beckon/${role}\\.yaml$`, 'm'), `${u}: ExecStart`)
    t.match(text, /^StateDirectory=\S+/m, `${u}: StateDirectory`)
    t.match(text, /^RuntimeDirectory=\S+/m, `${u}: RuntimeDirectory`)
    t.match(text, new RegExp(`^EnvironmentFile=-/etc/default/beckon-${role}$`, 'm'), `${u}: EnvironmentFile`)
    t.match(text, /^CapabilityBoundingSet=/m, `${u}: capabilities bounded`)
  }
})

t.test('example configs parse once their REPLACE markers are filled', async (t) => {
  const x = generateRawKeyPair('x25519')
  const e = generateRawKeyPair('ed25519')
  const fill = (file: string, subst: Record<string, string>): Record<string, unknown> => {
    let text = readFileSync(root(`appliance/defaults/${file}`), 'utf8')
    for (const [k, v] of Object.entries(subst)) text = text.replace(new RegExp(`(${k}:\\s*)\\[?REPLACE\\]?`), `$1${v}`)
    text = text.replace(/password_hash: scrypt\$\.\.\./, 'password_hash: scrypt$16384$8$1$c2FsdA$aGFzaA')
    text = text.replaceAll('REPLACE', 'secret')
    return parse(text) as Record<string, unknown>
  }
  t.ok(parseRelayConfig(fill('relay.yaml', { x25519_private: x.privateKey, ed25519_private: e.privateKey, gateway_public_key: x.publicKey })).devices.has('patient-phone'))
  t.equal(parseGatewayConfig(fill('gateway.yaml', { x25519_private: x.privateKey, trusted_relays: `[${x.publicKey}]` })).terminals.size, 1)
  t.same(parseAgentConfig(fill('agent.yaml', { relay_keys: `[${e.publicKey}]` })).tcpPorts, [8080])
})

t.test('config errors name the key', async (t) => {
  t.throws(() => parseAgentConfig({ device: 'x', relay_keys: ['short'] }), { code: 'BECKON_ERR_CONFIG', message: /agent\.yaml\.relay_keys\[0\] must be 32 bytes/ })
  t.throws(() => parseAgentConfig({ relay_keys: [generateRawKeyPair('ed25519').publicKey] }), { code: 'BECKON_ERR_CONFIG', message: /agent\.yaml\.device must be a string/ })
  t.throws(() => parseGatewayConfig({ trusted_relays: [] }), { code: 'BECKON_ERR_CONFIG', message: /trusted_relays/ })
  t.throws(() => parseRelayConfig({ public_address: 'not-ip' }), { code: 'BECKON_ERR_CONFIG', message: /relay\.yaml\.public_address must be an IP address/ })
})
