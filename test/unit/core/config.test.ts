// Config: env overrides and typed reads with key-naming errors.
import t from 'tap'
import { applyEnv, Fields } from '../../../src/core/config.js'

t.test('BECKON_<ROLE>_* overrides, nested with __, YAML scalars', async (t) => {
  const o = applyEnv({ smpp: { url: 'smpp://a:1' }, max_pending: 5 }, 'relay', {
    BECKON_RELAY_SMPP__URL: 'smpp://b:2', BECKON_RELAY_MAX_PENDING: '7', BECKON_RELAY_ALLOW_PLAIN_BASIC: 'true',
    BECKON_RELAY_TLS__CERT: '/x', BECKON_GATEWAY_MAX_PENDING: '9', BECKON_RELAY___BAD: 'ignored',
  })
  t.same(o, { smpp: { url: 'smpp://b:2' }, max_pending: 7, allow_plain_basic: true, tls: { cert: '/x' } })
  t.throws(() => applyEnv({ a: 1 }, 'relay', { BECKON_RELAY_A__B: 'x' }), { code: 'BECKON_ERR_CONFIG', message: /a is not a mapping/ })
})

t.test('typed reads', async (t) => {
  const f = new Fields({ d: '30s', m: '2m', ms: 250, bad: '3 weeks', hp: '[fd00::1]:80', ip4: '192.0.2.1:8443', list: 'a, b', n: '12' }, 'x.yaml')
  t.equal(f.ms('d'), 30_000)
  t.equal(f.ms('m'), 120_000)
  t.equal(f.ms('ms'), 250)
  t.throws(() => f.ms('bad'), { code: 'BECKON_ERR_CONFIG', message: /x\.yaml\.bad must be a duration/ })
  t.same(f.hostPort('hp'), { host: 'fd00::1', port: 80 })
  t.same(f.hostPort('ip4'), { host: '192.0.2.1', port: 8443 })
  t.throws(() => f.hostPort('list'), { code: 'BECKON_ERR_CONFIG', message: /host:port/ })
  t.same(f.strList('list'), ['a', 'b'])
  t.equal(f.num('n'), 12)
  t.throws(() => f.num('n', undefined, 0, 10), { code: 'BECKON_ERR_CONFIG', message: /in \[0, 10\]/ })
  t.throws(() => f.str('missing'), { code: 'BECKON_ERR_CONFIG', message: /x\.yaml\.missing must be a string \(got nothing\)/ })
  t.throws(() => Fields.of([], 'y'), { code: 'BECKON_ERR_CONFIG' })
})
