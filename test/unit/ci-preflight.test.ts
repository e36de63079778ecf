// The CI preflight names a missing piece, and the package to install, within seconds.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CHARON_PLUGINS } from '../../src/lab/charon.js'

const preflight = fileURLToPath(new URL('../../.ci/preflight', import.meta.url))

/** A fake root with every file the preflight looks for (plain files stand in for devices). */
function fakeRoot (): string {
  const root = mkdtempSync(join(tmpdir(), 'beckon-preflight-'))
  const files = [
    'usr/lib/ipsec/charon', 'usr/sbin/swanctl', 'usr/bin/pki', 'usr/sbin/ip', 'usr/sbin/nft', 'usr/bin/tcpdump',
    'usr/sbin/postfix', 'usr/sbin/dovecot', 'usr/sbin/slapd', 'usr/bin/ldapsearch', 'usr/bin/systemd-analyze', 'usr/bin/vagrant', 'usr/bin/g++', 'usr/bin/make',
    'usr/lib/postgresql/15/bin/initdb', 'usr/lib/postgresql/15/bin/postgres', 'dev/net/tun', 'proc/net/xfrm_stat',
    ...CHARON_PLUGINS.map((p) => `usr/lib/ipsec/plugins/libstrongswan-${p}.so`),
  ]
  for (const f of files) {
    mkdirSync(join(root, f, '..'), { recursive: true })
    writeFileSync(join(root, f), '', { mode: 0o755 })
  }
  return root
}

function run (root: string): { status: number | null, stdout: string, stderr: string, ms: number } {
  const start = Date.now()
  const r = spawnSync('bash', [preflight], { env: { ...process.env, BECKON_PREFLIGHT_ROOT: root }, encoding: 'utf8', timeout: 10_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start }
}

t.test('a complete fake root passes', async (t) => {
  const root = fakeRoot()
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const r = run(root)
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /preflight: ok/)
})

t.test('a missing openssl plugin fails fast naming libstrongswan-standard-plugins', async (t) => {
  const root = fakeRoot()
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  rmSync(join(root, 'usr/lib/ipsec/plugins/libstrongswan-openssl.so'))
  const r = run(root)
  t.equal(r.status, 1)
  t.ok(r.ms < 5_000, `took ${r.ms} ms`)
  t.match(r.stderr, /charon plugin 'openssl'.*package libstrongswan-standard-plugins/)
  t.match(r.stderr, /fix: apt-get install --no-install-recommends libstrongswan-standard-plugins/)
  t.notMatch(r.stderr, /slapd|postgresql|tun/, 'only the missing piece is named')
})

t.test('each other missing piece names its package', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so', /'kernel-libipsec'.*libcharon-extra-plugins/],
    ['usr/lib/ipsec/plugins/libstrongswan-vici.so', /'vici'.*strongswan-swanctl/],
    ['usr/lib/ipsec/plugins/libstrongswan-kdf.so', /'kdf'.*package libstrongswan\)/],
    ['usr/lib/postgresql/15/bin/initdb', /PostgreSQL.*package postgresql/],
    ['usr/sbin/slapd', /slapd \(package slapd\)/],
    ['usr/bin/g++', /g\+\+ \(node-gyp builds native\/splice.c\) \(package g\+\+\)/],
    ['usr/bin/ldapsearch', /ldap-utils/],
    ['usr/sbin/nft', /nftables/],
    ['usr/bin/systemd-analyze', /systemd-analyze.*package systemd\)/],
    ['usr/bin/vagrant', /vagrant.*package vagrant\)/],
    ['dev/net/tun', /\/dev\/net\/tun/],
    ['proc/net/xfrm_stat', /XFRM/],
  ]
  for (const [file, re] of cases) {
    const root = fakeRoot()
    rmSync(join(root, file))
    const r = run(root)
    rmSync(root, { recursive: true, force: true })
    t.equal(r.status, 1, file)
    t.match(r.stderr, re, file)
  }
})

t.test('.ci/run installs the packages and runs the preflight before the tests', async (t) => {
  const run = readFileSync(fileURLToPath(new URL('../../.ci/run', import.meta.url)), 'utf8')
  // The list lives in .ci/packages (shared with appliance/demo.sh); .ci/run installs every line.
  const list = readFileSync(fileURLToPath(new URL('../../.ci/packages', import.meta.url)), 'utf8')
  const packages = list.split('\n').map((l) => l.replace(/#.*/, '').trim().split(/\s+/)[0]).filter(Boolean)
  t.match(run, /\.ci\/packages/, '.ci/run reads .ci/packages')
  for (const pkg of ['libstrongswan-standard-plugins', 'postgresql', 'slapd', 'ldap-utils', 'systemd']) t.ok(packages.includes(pkg), pkg)
  t.match(run, /slapd\/no_configuration boolean true/)
  t.ok(run.indexOf('.ci/preflight') < run.indexOf('npm test'), 'preflight before npm test')
  t.match(run, /^npm test 2>&1/m, 'runs the README test command')
})
