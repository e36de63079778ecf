// Role commands refuse bad configurations at start, naming the problem.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { generateRawKeyPair } from '../../../src/core/keys.js'
import { beckon } from '../../helpers/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'beckon-roles-'))

t.test('a gateway without any signal channel does not start', async (t) => {
  const p = join(dir, 'gateway.yaml')
  writeFileSync(p, stringify({ keys: { x25519_private: generateRawKeyPair('x25519').privateKey }, trusted_relays: [generateRawKeyPair('x25519').publicKey] }))
  const r = await beckon(['gateway', '--config', p])
  t.equal(r.status, 1)
  t.match(JSON.parse(r.stderr.trim().split('\n').pop()!), { error: { code: 'BECKON_ERR_CONFIG', message: /at least one signal channel/ } })
})

t.test('a missing config file and a bad key name the problem', async (t) => {
  const missing = await beckon(['relay', '--config', join(dir, 'nope.yaml')])
  t.equal(missing.status, 1)
  t.match(missing.stderr, /BECKON_ERR_CONFIG.*cannot read/)
  const p = join(dir, 'agent.yaml')
  writeFileSync(p, stringify({ device: 'x', relay_keys: ['not-a-key'] }))
  const bad = await beckon(['agent', '--config', p])
  t.match(bad.stderr, /agent\.yaml\.relay_keys\[0\] must be 32 bytes/)
})
