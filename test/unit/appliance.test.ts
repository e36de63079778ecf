// Units, example configs and the installer stay consistent with the code.
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { parseAgentConfig } from '../../src/roles/agent/agent.js'
import { parseGatewayConfig } from '../../src/roles/gateway/gateway.js'
import { parseRelayConfig } from '../../src/roles/relay/config.js'
import { generateRawKeyPair } from '../../src/core/keys.js'

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url))

t.test('one unit per role with the conventions', async (t) => {
  const all = readdirSync(root('systemd')).filter((f) => f.endsWith('.service')).sort()
  t.same(all, ['beckon-agent.service', 'beckon-firewall.service', 'beckon-gateway.service', 'beckon-relay.service'])
  const units = all.filter((u) => u !== 'beckon-firewall.service')
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
  const relay = parseRelayConfig(fill('relay.yaml', { x25519_private: x.privateKey, ed25519_private: e.privateKey }))
  t.same(relay.seed.devices, [], 'devices live in the store, not in relay.yaml')
  t.same(relay.api?.listen, { host: '127.0.0.1', port: 8444 }, 'the management API listens on loopback only')
  t.same(relay.store, { sqlite: '/var/lib/beckon/beckon.db' })
  t.equal(parseGatewayConfig(fill('gateway.yaml', { x25519_private: x.privateKey, trusted_relays: `[${x.publicKey}]` })).terminals.size, 1)
  t.same(parseAgentConfig(fill('agent.yaml', { relay_keys: `[${e.publicKey}]` })).tcpPorts, [8080])
})

t.test('config errors name the key', async (t) => {
  t.throws(() => parseAgentConfig({ device: 'x', relay_keys: ['short'] }), { code: 'BECKON_ERR_CONFIG', message: /agent\.yaml\.relay_keys\[0\] must be 32 bytes/ })
  t.throws(() => parseAgentConfig({ relay_keys: [generateRawKeyPair('ed25519').publicKey] }), { code: 'BECKON_ERR_CONFIG', message: /agent\.yaml\.device must be a string/ })
  t.throws(() => parseGatewayConfig({ trusted_relays: [] }), { code: 'BECKON_ERR_CONFIG', message: /trusted_relays/ })
  t.throws(() => parseRelayConfig({ public_address: 'not-ip' }), { code: 'BECKON_ERR_CONFIG', message: /relay\.yaml\.public_address must be an IP address/ })
})

// ---- appliance/install.sh --root: a staged install per role ---------------------------------
const INSTALL = root('appliance/install.sh')
const UNINSTALL = root('appliance/uninstall.sh')
const ROLES = ['relay', 'gateway', 'agent', 'client'] as const
const have = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
const isRoot = process.getuid?.() === 0

function sh (script: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null, out: string } {
  const r = spawnSync('bash', [script, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, out: r.stdout + r.stderr }
}

/** Path, mode and content (or link target) of every entry: what "changes nothing" means. */
function treeHash (dir: string): string {
  const h = createHash('sha256')
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const p = join(rel, name)
      const st = lstatSync(join(dir, p))
      h.update(`${p} ${st.mode.toString(8)}\n`)
      if (st.isSymbolicLink()) h.update(readlinkSync(join(dir, p)))
      else if (st.isDirectory()) walk(p)
      else h.update(readFileSync(join(dir, p)))
    }
  }
  walk('')
  return h.digest('hex')
}

function stage (t: Test, role: string, env: NodeJS.ProcessEnv = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `beckon-stage-${role}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const r = sh(INSTALL, ['--root', dir, role], { BECKON_KERNEL_ESP: 'no', ...env })
  t.equal(r.status, 0, r.out)
  return dir
}

const read = (dir: string, p: string): string => readFileSync(join(dir, p), 'utf8')

t.test('install.sh --root: each role gets what it needs and nothing it does not', async (t) => {
  const inbound: Record<string, RegExp> = {
    relay: /tcp dport \{ 8443, 7001 \} accept[^\n]*\n\s*tcp dport 8444 drop/,
    gateway: /# nothing: every connection this role makes is outbound/,
    agent: /ip saddr 203\.0\.113\.0\/24 tcp dport 7400 accept/,
    client: /# nothing: every connection this role makes is outbound/,
  }
  for (const role of ROLES) {
    const dir = stage(t, role)
    t.equal(read(dir, `etc/beckon/${role}.yaml`), readFileSync(root(`appliance/defaults/${role}.yaml`), 'utf8'), `${role}: config from defaults`)
    t.equal(lstatSync(join(dir, `etc/beckon/${role}.yaml`)).mode & 0o777, 0o640, `${role}: config 0640`)
    t.equal(readlinkSync(join(dir, 'usr/local/bin/beckon')), '/opt/beckon/dist/cli/main.js')
    t.ok(existsSync(join(dir, 'opt/beckon/src/cli/main.ts')), `${role}: code under /opt/beckon`)
    t.equal(existsSync(join(dir, `etc/systemd/system/beckon-${role}.service`)), role !== 'client', `${role}: its unit (the client has none)`)
    t.ok(existsSync(join(dir, 'etc/systemd/system/beckon-firewall.service')))
    const nft = read(dir, 'etc/beckon/nftables.nft')
    t.match(nft, inbound[role]!, `${role}: inbound rules`)
    t.match(nft, /policy drop;/)
    // Only these ports are opened: ssh plus the role's own.
    const opened = [...nft.matchAll(/tcp dport (\{[^}]*\}|\d+) accept/g)].map((m) => m[1])
    t.same(opened, { relay: ['22', '{ 8443, 7001 }'], gateway: ['22'], agent: ['22', '7400'], client: ['22'] }[role], `${role}: opened ports`)
    if (isRoot && have('nft') && have('unshare')) {
      const c = spawnSync('unshare', ['-n', 'nft', '-c', '-f', join(dir, 'etc/beckon/nftables.nft')], { encoding: 'utf8' })
      t.equal(c.status, 0, `${role}: nft -c accepts the rules: ${c.stderr}`)
    }
    const plan = read(dir, `var/lib/beckon-install/plan-${role}`)
    t.match(plan, /^useradd --system --user-group --home-dir \/var\/lib\/beckon --shell \/usr\/sbin\/nologin beckon$/m, `${role}: the beckon user (recorded, not run)`)
    t.match(plan, /^systemctl enable beckon-firewall\.service/m)
    const charon = role === 'agent' || role === 'client'
    t.equal(/libstrongswan-standard-plugins/.test(plan), charon, `${role}: openssl plugin package iff charon`)
    t.equal(existsSync(join(dir, 'etc/strongswan.d/beckon.conf')), charon, `${role}: strongSwan snippet iff charon`)
    if (charon) {
      const conf = read(dir, 'etc/strongswan.d/beckon.conf')
      t.match(conf, /^charon \{\n(?:\s*#[^\n]*\n)*\s*group = beckon$/m, `${role}: VICI socket group`)
      t.match(conf, /socket = unix:\/\/\/var\/run\/charon\.vici/)
      t.match(conf, /kernel-libipsec \{\s*load = yes\s*\}/, `${role}: no kernel ESP → kernel-libipsec`)
      t.match(plan, /charon-systemd/)
      t.match(plan, /strongswan\.service/)
    }
  }
})

t.test('a kernel with ESP gets kernel-netlink only', async (t) => {
  const conf = read(stage(t, 'agent', { BECKON_KERNEL_ESP: 'yes' }), 'etc/strongswan.d/beckon.conf')
  t.notMatch(conf, /kernel-libipsec \{/)
  t.match(conf, /kernel-netlink does ESP/)
})

t.test('installing twice changes nothing; an edited config survives', async (t) => {
  for (const role of ROLES) {
    const dir = stage(t, role)
    const before = treeHash(dir)
    const again = sh(INSTALL, ['--root', dir, role], { BECKON_KERNEL_ESP: 'no' })
    t.equal(again.status, 0, again.out)
    t.match(again.out, /\(0 changes\)/, `${role}: second run reports no change`)
    t.equal(treeHash(dir), before, `${role}: tree hash unchanged`)
  }
  const dir = stage(t, 'gateway')
  writeFileSync(join(dir, 'etc/beckon/gateway.yaml'), 'edited: true\n')
  t.equal(sh(INSTALL, ['--root', dir, 'gateway']).status, 0)
  t.equal(read(dir, 'etc/beckon/gateway.yaml'), 'edited: true\n', 'never overwritten')
})

t.test('uninstall.sh removes it; --purge also the config', async (t) => {
  const dir = stage(t, 'agent')
  let r = sh(UNINSTALL, ['--root', dir, 'agent'])
  t.equal(r.status, 0, r.out)
  t.ok(existsSync(join(dir, 'etc/beckon/agent.yaml')), 'config kept without --purge')
  for (const p of ['opt/beckon', 'usr/local/bin/beckon', 'etc/systemd/system/beckon-agent.service', 'etc/systemd/system/beckon-firewall.service', 'etc/strongswan.d/beckon.conf', 'etc/beckon/nftables.nft']) {
    t.notOk(existsSync(join(dir, p)), `${p} removed`)
  }
  r = sh(UNINSTALL, ['--root', dir, '--purge', 'agent'])
  t.equal(r.status, 0, r.out)
  t.same(readdirSync(dir), [], 'nothing left')
  // Two roles on one host: removing one keeps what the other needs.
  const both = stage(t, 'agent')
  t.equal(sh(INSTALL, ['--root', both, 'client'], { BECKON_KERNEL_ESP: 'no' }).status, 0)
  t.equal(sh(UNINSTALL, ['--root', both, 'agent']).status, 0)
  t.ok(existsSync(join(both, 'etc/strongswan.d/beckon.conf')), 'the client still has its charon snippet')
  t.ok(existsSync(join(both, 'opt/beckon/src')), 'and the code')
})

// systemd-analyze reads units offline: no PID 1 needed. A staged root lacks the Debian
// system units and /usr/sbin/nft, so verify runs on the staged tree plus copies of those.
t.test('every unit passes systemd-analyze verify; exposure matches docs/operations.md', { skip: have('systemd-analyze') ? false : 'systemd-analyze absent (apt-get install systemd)' }, async (t) => {
  const staged = stage(t, 'agent')
  for (const role of ['relay', 'gateway']) t.equal(sh(INSTALL, ['--root', staged, role]).status, 0)
  cpSync('/usr/lib/systemd/system', join(staged, 'usr/lib/systemd/system'), { recursive: true })
  mkdirSync(join(staged, 'usr/sbin'), { recursive: true })
  cpSync('/usr/sbin/nft', join(staged, 'usr/sbin/nft'))
  t.ok(existsSync(join(staged, 'opt/beckon/dist/cli/main.js')), 'the staged tree carries the build (npm test builds dist/ first)')
  const units = readdirSync(root('systemd')).filter((f) => f.endsWith('.service'))
  for (const u of units) {
    const r = spawnSync('systemd-analyze', ['verify', `--root=${staged}`, `/etc/systemd/system/${u}`], { encoding: 'utf8', cwd: staged })
    t.equal(r.status, 0, `${u}: ${r.stderr}`)
    t.equal(r.stderr.trim(), '', `${u}: no warning`)
  }
  // The check is real: a unit whose command does not exist fails.
  writeFileSync(join(staged, 'etc/systemd/system/broken.service'), '[Service]\nExecStart=/usr/local/bin/nope\n')
  t.not(spawnSync('systemd-analyze', ['verify', `--root=${staged}`, '/etc/systemd/system/broken.service']).status, 0, 'a missing ExecStart fails verify')

  const docs = readFileSync(root('docs/operations.md'), 'utf8')
  for (const u of units) {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', root(`systemd/${u}`)], { encoding: 'utf8' })
    const level = /Overall exposure level for \S+: ([\d.]+) (\w+)/.exec(r.stdout)
    t.ok(level, `${u}: exposure printed`)
    t.ok(Number(level![1]) <= 3.0, `${u}: exposure ${level![1]} ≤ 3.0`)
    t.match(docs, new RegExp(`\\| \`${u.replace('.', '\\.')}\` \\| ${level![1]!.replace('.', '\\.')} ${level![2]} \\|`), `${u}: docs/operations.md says ${level![1]} ${level![2]}`)
  }
})

t.test('a public_address a gateway cannot dial back is refused, naming it', async (t) => {
  const keys = { x25519_private: generateRawKeyPair('x25519').privateKey, ed25519_private: generateRawKeyPair('ed25519').privateKey }
  for (const a of ['0.0.0.0', '::', '::ffff:198.51.100.20', '239.1.2.3', 'ff02::1']) {
    t.throws(() => parseRelayConfig({ public_address: a, keys }), { code: 'BECKON_ERR_CONFIG', message: /public_address: .* cannot be dialled back/ }, a)
  }
  t.equal(parseRelayConfig({ public_address: '2001:db8::20', keys }).publicAddress, '2001:db8::20')
})
