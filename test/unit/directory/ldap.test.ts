// LdapDirectory and ChainDirectory against a real slapd (Debian's) on 127.0.0.1, one
// private instance per test file run, seeded by src/lab/ldap.ts:
//
//   LdapDirectory ──ldap:// (StartTLS) / ldaps://──▶ slapd 127.0.0.1:<free ports>
//                                                     dc=lab,dc=beckon,dc=example
//                                                     ├ ou=people  dr-grey, dr-house
//                                                     └ ou=groups  physicians, cardiologists
//
// A second slapd is frozen (SIGSTOP) and stopped to show outages: 503-class, bounded in time.
import t from 'tap'
import type { Test } from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../../../src/core/exec.js'
import { createLogger } from '../../../src/core/log.js'
import { ChainDirectory } from '../../../src/directory/chain.js'
import { LocalDirectory, hashPassword, type Directory } from '../../../src/directory/directory.js'
import { LdapDirectory, escapeFilterValue, fillTemplate, firstRdnValue, ldapLookupChannel, testLdap, type LdapLookupEvent } from '../../../src/directory/ldap.js'
import { LAB_LDAP_SUFFIX, startSlapd, writeLdapConfig, type SlapdProcess } from '../../../src/lab/ldap.js'
import type { LdapSettings } from '../../../src/store/records.js'

const SUFFIX = LAB_LDAP_SUFFIX
const ADMIN_PW = 'admin-secret-1'
const USERS = [
  { uid: 'dr-grey', password: 'grey-pass-1', groups: ['physicians'] },
  { uid: 'dr-house', password: 'house-pass-2', groups: ['cardiologists'] },
]

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => { typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port')) })
    })
  })
}

/**
 * A CA, a server certificate for 127.0.0.1 signed by it, one for another name signed by it
 * too, and an unrelated CA.
 */
async function makeCerts (dir: string): Promise<{ ca: string, cert: string, key: string, wrongCa: string, otherCert: string, otherKey: string }> {
  const p = (f: string): string => join(dir, f)
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']
  await run('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=Beckon Test LDAP CA', ...caExt])
  await run('openssl', ['req', '-x509', ...ec, '-keyout', p('wrong-ca.key'), '-out', p('wrong-ca.pem'), '-days', '2', '-subj', '/CN=Beckon Test LDAP CA', ...caExt])
  await run('openssl', ['req', ...ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=127.0.0.1'])
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('server.ext')])
  await run('openssl', ['req', ...ec, '-keyout', p('other.key'), '-out', p('other.csr'), '-subj', '/CN=ldap.elsewhere.example'])
  writeFileSync(p('other.ext'), 'subjectAltName=DNS:ldap.elsewhere.example\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', p('other.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('other.pem'), '-days', '2', '-extfile', p('other.ext')])
  return { ca: p('ca.pem'), cert: p('server.pem'), key: p('server.key'), wrongCa: p('wrong-ca.pem'), otherCert: p('other.pem'), otherKey: p('other.key') }
}

interface Lab { dir: string, ldapUrl: string, ldapsUrl: string, slapd: SlapdProcess }

async function startLab (t: Test, certs: { ca: string, cert: string, key: string }, name: string): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), `beckon-ldap-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ldapUrl = `ldap://127.0.0.1:${await freePort()}`
  const ldapsUrl = `ldaps://127.0.0.1:${await freePort()}`
  await writeLdapConfig(dir, { listen: [`${ldapUrl}/`, `${ldapsUrl}/`], suffix: SUFFIX, tls: certs, users: USERS, adminPassword: ADMIN_PW })
  const slapd = await startSlapd({ dir, dieWithParent: true })
  // Registered after the dir's removal, so it runs first (teardowns run in reverse).
  t.teardown(() => slapd.stop())
  return { dir, ldapUrl, ldapsUrl, slapd }
}

function settings (url: string, extra: Partial<LdapSettings> = {}): LdapSettings {
  return {
    url,
    starttls: false,
    bind_dn: `cn=admin,${SUFFIX}`,
    bind_password: ADMIN_PW,
    base_dn: `ou=people,${SUFFIX}`,
    user_filter: '(&(objectClass=inetOrgPerson)(uid={user}))',
    group_attribute: 'memberOf',
    timeout_ms: 2_000,
    ...extra,
  }
}

const basic = (user: string, password: string): { scheme: 'basic', user: string, password: string } => ({ scheme: 'basic', user, password })

/** Counts LDAP lookups (cache misses) while `fn` runs. */
async function countLookups<T> (fn: () => Promise<T>): Promise<{ value: T, lookups: LdapLookupEvent[] }> {
  const seen: LdapLookupEvent[] = []
  const on = (m: unknown): void => { seen.push(m as LdapLookupEvent) }
  subscribe(ldapLookupChannel.name, on)
  try {
    return { value: await fn(), lookups: seen }
  } finally {
    unsubscribe(ldapLookupChannel.name, on)
  }
}

const root = mkdtempSync(join(tmpdir(), 'beckon-ldap-certs-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
const certs = await makeCerts(root)
const caPem = readFileSync(certs.ca, 'utf8')
const wrongCaPem = readFileSync(certs.wrongCa, 'utf8')
const lab = await startLab(t, certs, 'main')

t.test('helpers: RFC 4515 escaping, one-pass templates, first RDN values', async (t) => {
  t.equal(escapeFilterValue('a*b(c)d\\e\0f'), 'a\\2ab\\28c\\29d\\5ce\\00f')
  t.equal(escapeFilterValue('Zoë'), 'Zoë', 'UTF-8 stays as it is')
  t.equal(fillTemplate('(&(uid={user})(x={dn}))', { user: '{dn}', dn: 'D' }), '(&(uid={dn})(x=D))', 'substituted text is not substituted again')
  t.equal(firstRdnValue('cn=physicians,ou=groups,dc=lab'), 'physicians')
  t.equal(firstRdnValue('CN=Smith\\, J.,OU=Users,DC=corp'), 'Smith, J.')
  t.equal(firstRdnValue('cn=Z\\C3\\ABe+uid=z,ou=g'), 'Zëe')
  t.equal(firstRdnValue('cn=#04024869,ou=g'), undefined)
  t.equal(firstRdnValue('nonsense'), undefined)
})

t.test('dr-grey authenticates with her groups; dr-house with his', async (t) => {
  const d = new LdapDirectory(settings(lab.ldapUrl))
  t.same(await d.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] })
  t.same(await d.authenticate(basic('dr-house', 'house-pass-2')), { name: 'dr-house', groups: ['cardiologists'] })
  const anon = new LdapDirectory(settings(lab.ldapUrl, { bind_dn: undefined, bind_password: undefined }))
  t.same(await anon.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] }, 'anonymous search works too')
  t.same(await d.authenticate(basic('DR-GREY', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] }, 'the directory spells the name')
})

t.test('wrong password, unknown user, empty password, bearer: AUTH_FAILED', async (t) => {
  const d = new LdapDirectory(settings(lab.ldapUrl))
  await t.rejects(d.authenticate(basic('dr-grey', 'house-pass-2')), { code: 'BECKON_ERR_AUTH_FAILED' }, 'wrong password')
  await t.rejects(d.authenticate(basic('dr-nobody', 'grey-pass-1')), { code: 'BECKON_ERR_AUTH_FAILED' }, 'unknown user')
  const { lookups } = await countLookups(async () => {
    await t.rejects(d.authenticate(basic('dr-grey', '')), { code: 'BECKON_ERR_AUTH_FAILED', message: /empty password/ }, 'empty password')
    await t.rejects(d.authenticate({ scheme: 'bearer', token: 'abc' }), { code: 'BECKON_ERR_AUTH_FAILED' }, 'bearer')
    await t.rejects(d.authenticate(basic('', 'x')), { code: 'BECKON_ERR_AUTH_FAILED' }, 'empty user')
  })
  t.equal(lookups.length, 0, 'refused before reaching the directory')
  const several = new LdapDirectory(settings(lab.ldapUrl, { user_filter: '(|(uid={user})(uid=dr-house))' }))
  await t.rejects(several.authenticate(basic('dr-grey', 'grey-pass-1')), { code: 'BECKON_ERR_AUTH_FAILED', message: /several/ }, 'two entries match: nobody')
})

t.test('filter injection finds nothing', async (t) => {
  const d = new LdapDirectory(settings(lab.ldapUrl))
  for (const user of ['*', 'dr-gr*', '*grey', 'dr-grey)(uid=*', ')(uid=*', '*)(|(uid=*', 'dr-grey\0', 'dr-grey\\2a', 'dr-grey)(|(objectClass=*)']) {
    await t.rejects(d.authenticate(basic(user, 'grey-pass-1')), { code: 'BECKON_ERR_AUTH_FAILED' }, JSON.stringify(user))
  }
})

t.test('group_search gives the same groups', async (t) => {
  const d = new LdapDirectory(settings(lab.ldapUrl, {
    group_attribute: 'doesNotExist',
    group_search: { base_dn: `ou=groups,${SUFFIX}`, filter: '(&(objectClass=groupOfNames)(member={dn}))', name_attribute: 'cn' },
  }))
  t.same(await d.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] })
  t.same(await d.authenticate(basic('dr-house', 'house-pass-2')), { name: 'dr-house', groups: ['cardiologists'] })
  await t.rejects(d.authenticate(basic('dr-house', 'grey-pass-1')), { code: 'BECKON_ERR_AUTH_FAILED' })
})

t.test('StartTLS and LDAPS with the CA; a wrong CA is an outage, not a login failure', async (t) => {
  const cases: Array<[string, Partial<LdapSettings> & { url: string }]> = [
    ['StartTLS', { url: lab.ldapUrl, starttls: true }],
    ['LDAPS', { url: lab.ldapsUrl }],
  ]
  for (const [what, s] of cases) {
    const good = new LdapDirectory(settings(s.url, { ...s, ca_pem: caPem }))
    t.same(await good.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] }, `${what} with the CA`)
    await t.rejects(good.authenticate(basic('dr-grey', 'nope')), { code: 'BECKON_ERR_AUTH_FAILED' }, `${what}: wrong password`)
    const bad = new LdapDirectory(settings(s.url, { ...s, ca_pem: wrongCaPem }))
    await t.rejects(bad.authenticate(basic('dr-grey', 'grey-pass-1')), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE' }, `${what} with a wrong CA`)
    const system = new LdapDirectory(settings(s.url, { ...s, ca_pem: undefined }))
    await t.rejects(system.authenticate(basic('dr-grey', 'grey-pass-1')), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE' }, `${what} with the system store (test CA unknown)`)
    t.match(await testLdap(settings(s.url, { ...s, ca_pem: caPem })), { ok: true })
    t.match(await testLdap(settings(s.url, { ...s, ca_pem: wrongCaPem })), { ok: false, error: /certificate/ })
  }
  t.throws(() => new LdapDirectory(settings(lab.ldapsUrl, { starttls: true })), { code: 'BECKON_ERR_CONFIG', message: /starttls/ })
})

t.test('a refused service bind is an outage; testLdap reports it', async (t) => {
  const wrong = settings(lab.ldapUrl, { bind_password: 'not-the-admin-password' })
  const d = new LdapDirectory(wrong)
  await t.rejects(d.authenticate(basic('dr-grey', 'grey-pass-1')), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE', message: /service bind refused/ })
  const res = await testLdap(wrong)
  t.match(res, { ok: false, error: /service bind refused/ })
  t.notMatch(res.error ?? '', /not-the-admin-password/, 'no password in the message')
  const ok = await testLdap(settings(lab.ldapUrl))
  t.match(ok, { ok: true })
  t.ok(ok.ms >= 0 && ok.ms < 2_000)
  t.throws(() => new LdapDirectory(settings(lab.ldapUrl, { bind_password: '' })), { code: 'BECKON_ERR_CONFIG', message: /bind_password/ }, 'service DN without password refused at start')
})

t.test('cache: short-lived, per password, failures never cached, concurrent logins collapse', async (t) => {
  let now = 1_000_000
  const d = new LdapDirectory(settings(lab.ldapUrl), undefined, { cacheMs: 5_000, now: () => now })
  const first = await countLookups(() => d.authenticate(basic('dr-grey', 'grey-pass-1')))
  t.equal(first.lookups.length, 1)
  const again = await countLookups(() => d.authenticate(basic('dr-grey', 'grey-pass-1')))
  t.same(again.value, { name: 'dr-grey', groups: ['physicians'] })
  t.equal(again.lookups.length, 0, 'cached within cacheMs')
  const other = await countLookups(() => t.rejects(d.authenticate(basic('dr-grey', 'grey-pass-1x')), { code: 'BECKON_ERR_AUTH_FAILED' }))
  t.equal(other.lookups.length, 1, 'a different password is never a cache hit')
  const fails = await countLookups(async () => {
    for (let i = 0; i < 2; i++) await t.rejects(d.authenticate(basic('dr-grey', 'wrong')), { code: 'BECKON_ERR_AUTH_FAILED' })
  })
  t.equal(fails.lookups.length, 2, 'a failure is not cached')
  now += 5_001
  const expired = await countLookups(() => d.authenticate(basic('dr-grey', 'grey-pass-1')))
  t.equal(expired.lookups.length, 1, 'the cache expired: asked again')

  const fresh = new LdapDirectory(settings(lab.ldapUrl), undefined, { cacheMs: 5_000, now: () => now })
  const burst = await countLookups(() => Promise.all(Array.from({ length: 8 }, () => fresh.authenticate(basic('dr-house', 'house-pass-2')))))
  t.equal(burst.lookups.length, 1, '8 concurrent identical logins, one lookup')
  t.ok(burst.value.every((u) => u.groups[0] === 'cardiologists'))
  const badBurst = await countLookups(() => Promise.allSettled(Array.from({ length: 4 }, () => fresh.authenticate(basic('dr-house', 'bad')))))
  t.equal(badBurst.lookups.length, 1)
  t.ok(badBurst.value.every((r) => r.status === 'rejected'))
  const afterBad = await countLookups(() => t.rejects(fresh.authenticate(basic('dr-house', 'bad')), { code: 'BECKON_ERR_AUTH_FAILED' }))
  t.equal(afterBad.lookups.length, 1, 'the shared failure left nothing behind')
})

t.test('outage: frozen and stopped slapd, alone and behind a local directory', async (t) => {
  // This one's certificate, from the right CA, names another host.
  const down = await startLab(t, { ca: certs.ca, cert: certs.otherCert, key: certs.otherKey }, 'outage')
  const TIMEOUT = 400
  const SLACK = 600
  let now = 2_000_000
  const s = settings(down.ldapUrl, { timeout_ms: TIMEOUT })
  const cached = new LdapDirectory(s, undefined, { cacheMs: 10_000, now: () => now })
  t.same(await cached.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] })
  const local = new LocalDirectory([{ name: 'nurse-joy', passwordHash: await hashPassword('joy-pass'), groups: ['nurses'] }])
  for (const [what, extra] of [['StartTLS', { starttls: true }], ['LDAPS', { url: down.ldapsUrl }]] as const) {
    await t.rejects(new LdapDirectory(settings(down.ldapUrl, { ca_pem: caPem, ...extra })).authenticate(basic('dr-grey', 'grey-pass-1')),
      { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE', message: /altnames/ }, `${what}: a certificate for another name, from the right CA`)
  }

  const timed = async (what: string, d: Directory, user: string, password: string): Promise<void> => {
    const started = Date.now()
    await t.rejects(d.authenticate(basic(user, password)), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE' }, what)
    const ms = Date.now() - started
    t.ok(ms < TIMEOUT + SLACK, `${what}: ${ms} ms < ${TIMEOUT} + ${SLACK}`)
  }

  process.kill(down.slapd.pid, 'SIGSTOP')
  try {
    await timed('frozen: the bind times out', new LdapDirectory(s), 'dr-grey', 'grey-pass-1')
    await timed('frozen, behind a local directory without the user', new ChainDirectory([local, new LdapDirectory(s)]), 'dr-grey', 'grey-pass-1')
    t.same(await cached.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] }, 'a cached success still holds inside cacheMs')
    await timed('frozen: a different password is not served from the cache', cached, 'dr-grey', 'grey-pass-2')
    t.match(await testLdap(s), { ok: false, error: /timed out/ })
  } finally {
    process.kill(down.slapd.pid, 'SIGCONT')
  }

  await down.slapd.stop()
  await timed('stopped', new LdapDirectory(s), 'dr-grey', 'grey-pass-1')
  await timed('stopped, LDAPS', new LdapDirectory(settings(down.ldapsUrl, { timeout_ms: TIMEOUT, ca_pem: caPem })), 'dr-grey', 'grey-pass-1')
  await timed('stopped, behind a local directory without the user', new ChainDirectory([local, new LdapDirectory(s)]), 'dr-grey', 'grey-pass-1')
  now += 10_001
  await timed('stopped: the cached success expired', cached, 'dr-grey', 'grey-pass-1')

  const chain = new ChainDirectory([local, new LdapDirectory(s)])
  t.same(await chain.authenticate(basic('nurse-joy', 'joy-pass')), { name: 'nurse-joy', groups: ['nurses'] }, 'the local directory still answers for its own users')
  t.match(await testLdap(s), { ok: false, error: /ECONNREFUSED/ })
})

t.test('passwords never reach the log', async (t) => {
  const lines: string[] = []
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => { lines.push(s) } } })
  const d = new LdapDirectory(settings(lab.ldapUrl), log)
  await d.authenticate(basic('dr-grey', 'grey-pass-1'))
  await t.rejects(d.authenticate(basic('dr-grey', 'wrong-pass-zz')))
  await t.rejects(d.authenticate(basic('dr-nobody', 'nobody-pass-zz')))
  const refused = new LdapDirectory(settings(lab.ldapUrl, { bind_password: 'wrong-admin-zz' }), log)
  await t.rejects(refused.authenticate(basic('dr-grey', 'grey-pass-1')))
  const text = lines.join('')
  t.ok(lines.length >= 3, 'failures are logged')
  t.match(text, /service bind refused/)
  for (const secret of ['grey-pass-1', 'wrong-pass-zz', 'nobody-pass-zz', 'wrong-admin-zz', ADMIN_PW]) t.notOk(text.includes(secret), `${secret} not logged`)
})

t.test('ChainDirectory: the next directory on AUTH_FAILED; AUTH_FAILED when all say so', async (t) => {
  const local = new LocalDirectory([{ name: 'nurse-joy', passwordHash: await hashPassword('joy-pass'), groups: ['nurses'] }])
  const chain = new ChainDirectory([local, new LdapDirectory(settings(lab.ldapUrl))])
  t.same(await chain.authenticate(basic('dr-grey', 'grey-pass-1')), { name: 'dr-grey', groups: ['physicians'] })
  t.same(await chain.authenticate(basic('nurse-joy', 'joy-pass')), { name: 'nurse-joy', groups: ['nurses'] })
  await t.rejects(chain.authenticate(basic('dr-grey', 'wrong')), { code: 'BECKON_ERR_AUTH_FAILED' })
  await t.rejects(chain.authenticate({ scheme: 'bearer', token: 'nope' }), { code: 'BECKON_ERR_AUTH_FAILED' })
  await t.rejects(new ChainDirectory([]).authenticate(basic('a', 'b')), { code: 'BECKON_ERR_AUTH_FAILED' })
  const broken: Directory = { authenticate: async () => { throw new Error('boom') } }
  await t.rejects(new ChainDirectory([broken, local]).authenticate(basic('dr-grey', 'x')), { code: 'BECKON_ERR_DIRECTORY_UNAVAILABLE', message: /boom/ }, 'an uncoded error is an outage too')
})
