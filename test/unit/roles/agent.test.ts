// The agent: configuration refusals and a replay cache bounded in entries and time.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import net, { type AddressInfo } from 'node:net'
import { generateRawKeyPair, privateKeyFromRaw } from '../../../src/core/keys.js'
import { silentLogger } from '../../../src/core/log.js'
import { readReply, signDescriptor, type Descriptor } from '../../../src/proto/descriptor/descriptor.js'
import { Agent, MAX_SEEN, parseAgentConfig } from '../../../src/roles/agent/agent.js'

const ed = generateRawKeyPair('ed25519')
const base = { device: 'patient-phone', relay_keys: [ed.publicKey] }

t.test('unknown keys are refused, naming the key, at every level', async (t) => {
  t.doesNotThrow(() => parseAgentConfig({ ...base, ipsec: { vici: 'unix:///v', nat_t_port: 4500, pubkey: { cert: 'c', key: 'k', ca: 'a' } } }))
  t.throws(() => parseAgentConfig({ ...base, descriptor_timout: '5s' }), { code: 'BECKON_ERR_CONFIG', message: /agent\.yaml\.descriptor_timout: unknown key/ })
  t.throws(() => parseAgentConfig({ ...base, ipsec: { vici: 'unix:///v', natt_port: 4500 } }), { message: /agent\.yaml\.ipsec\.natt_port: unknown key/ })
  t.throws(() => parseAgentConfig({ ...base, ipsec: { pubkey: { cert: 'c', key: 'k', ca: 'a', crl: 'x' } } }), { message: /agent\.yaml\.ipsec\.pubkey\.crl: unknown key/ })
  t.throws(() => parseAgentConfig({ ...base, keys: { ed25519_private: 'x' } }), { message: /agent\.yaml\.keys\.ed25519_private: unknown key/ })
  t.throws(() => parseAgentConfig({ ...base, tcp_ports: ['8080', 'http'] }), { message: /agent\.yaml\.tcp_ports: http is not a port/ })
  t.throws(() => parseAgentConfig({ ...base, descriptor_timeout: '1000h' }), { message: /descriptor_timeout must be a duration of at most/ })
})

const NOW = 1_900_000_000

function descriptor (over: Partial<Descriptor> = {}): Descriptor {
  return { v: 1, session: randomBytes(12).toString('hex'), device: 'patient-phone', user: 'dr-grey', expires: NOW + 60, mode: 'tcp', port: 9, ...over }
}

async function send (port: number, d: Descriptor): Promise<{ ready: boolean, code?: string, message?: string }> {
  const s = net.connect(port, '127.0.0.1')
  s.on('error', () => {})
  s.write(signDescriptor(d, privateKeyFromRaw('ed25519', ed.privateKey)))
  try { return await readReply(s, 2000) as { ready: boolean, code?: string } } finally { s.destroy() }
}

t.test('replayed and far-future descriptors are refused', async (t) => {
  const agent = new Agent(parseAgentConfig({ ...base, listen: '127.0.0.1:0', tcp_ports: [] }), silentLogger, () => NOW * 1000)
  const { port } = await agent.listen() as AddressInfo
  t.teardown(() => agent.close())
  const d = descriptor()
  t.match(await send(port, d), { ready: false, code: 'BECKON_ERR_FORBIDDEN' }, 'first use gets past the replay check (port not exposed)')
  t.match(await send(port, d), { ready: false, code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /already signalled/ }, 'a replay is refused')
  t.match(await send(port, descriptor({ expires: NOW + 86_400 * 365 })), { ready: false, code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /more than 3600 s/ },
    'a descriptor that would pin a replay entry for a year is refused')
})

t.test('the replay cache is bounded in entries: full means refuse, never forget', async (t) => {
  const agent = new Agent(parseAgentConfig({ ...base, listen: '127.0.0.1:0' }), silentLogger, () => NOW * 1000)
  const admit = (d: Descriptor, now: number): void => (agent as unknown as { admit: (d: Descriptor, n: number) => void }).admit(d, now)
  const first = descriptor()
  admit(first, NOW)
  for (let i = 1; i < MAX_SEEN; i++) admit(descriptor(), NOW)
  t.throws(() => admit(descriptor(), NOW), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /cache full/ })
  t.throws(() => admit(first, NOW), { code: 'BECKON_ERR_DESCRIPTOR_INVALID', message: /already/ }, 'the oldest entry was not forgotten')
  t.doesNotThrow(() => admit(descriptor({ expires: NOW + 200 }), NOW + 61), 'expired entries make room')
})
