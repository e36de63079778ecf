// Fuzz: configuration — Fields readers, YAML loading, the gateway's and agent's parsers.
import t from 'tap'
import fc from 'fast-check'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Fields, MAX_TIMER_MS, readYamlFile } from '../../src/core/config.js'
import { parseAgentConfig } from '../../src/roles/agent/agent.js'
import { parseGatewayConfig } from '../../src/roles/gateway/gateway.js'
import { RUNS, check, contract } from './helpers.js'

const value = fc.oneof(fc.anything({ maxDepth: 3 }), fc.double(), fc.string({ maxLength: 30 }), fc.stringMatching(/^\d{1,20}(\.\d{1,8})?(ms|s|m|h)$/), fc.constantFrom(Infinity, -Infinity, NaN, 2 ** 31, 1e300, -0))

t.test('Fields readers: coded errors only; values that pass are usable', async (t) => {
  check(t, 'readers', fc.property(value, (v) => {
    const f = new Fields({ k: v }, 'fuzz.yaml')
    contract(() => { const ms = f.ms('k'); if (!(Number.isInteger(ms) && ms >= 0 && ms <= MAX_TIMER_MS)) throw new Error(`duration ${ms} accepted`) }, { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => { const n = f.num('k'); if (!Number.isFinite(n)) throw new Error(`number ${n} accepted`) }, { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.str('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.bool('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.hostPort('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.ip('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.strList('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.sub('k').only(['a']), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.list('k'), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => f.entries('k'), { codes: /^BECKON_ERR_CONFIG$/ })
  }))
})

t.test('role parsers over arbitrary mappings: coded errors only', async (t) => {
  const keys = fc.constantFrom('smpp', 'imap', 'keys', 'trusted_relays', 'terminals', 'connect_timeout', 'max_signal_lifetime_s', 'state_dir', 'listen', 'device', 'relay_keys', 'tcp_ports', 'service_host', 'descriptor_timeout', 'ipsec')
  check(t, 'mappings', fc.property(fc.dictionary(keys, value, { maxKeys: 6 }), (o) => {
    contract(() => parseGatewayConfig(structuredClone(o), 'g', {}), { codes: /^BECKON_ERR_CONFIG$/ })
    contract(() => parseAgentConfig(structuredClone(o)), { codes: /^BECKON_ERR_CONFIG$/ })
  }))
})

t.test('YAML files, aliases included: coded errors only, fast', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'fuzz.yaml')
  const yamlish = fc.array(fc.oneof(
    fc.constantFrom('a: ', '&x ', '*x', '[', ']', '{', '}', ', ', '\n', '  ', '- ', 'b: ', '<<: *x', '!!binary ', '"', "'", '? ', ': ', '#', '%YAML 1.2\n', '---\n'),
    fc.string({ maxLength: 8 }),
  ), { maxLength: 40 }).map((p) => p.join(''))
  check(t, 'yaml', fc.property(yamlish, (text) => {
    writeFileSync(path, text)
    contract(() => readYamlFile(path), { codes: /^BECKON_ERR_CONFIG$/ })
  }), { numRuns: RUNS >= 1_000_000 ? RUNS : Math.max(200, Math.floor(RUNS / 2)) })
})
