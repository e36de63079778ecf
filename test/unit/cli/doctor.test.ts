// `beckon doctor`: each check fails alone on a fake root (a temp dir standing in for /usr/lib/ipsec,
// /proc, /dev, /etc), says how to fix it, and the command prints a JSON array and exits 1 on a miss.
import t, { type Test } from 'tap'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { stringify } from 'yaml'
import { generateRawKeyPair } from '../../../src/core/keys.js'
import { parseAgentConfig } from '../../../src/roles/agent/agent.js'
import { parseGatewayConfig } from '../../../src/roles/gateway/gateway.js'
import { parseRelayConfig } from '../../../src/roles/relay/config.js'
import { defaultEnv, detectKernelEsp, formatTable, portFree, runDoctor, type CheckResult, type DoctorEnv, type Role } from '../../../src/doctor/doctor.js'
import { beckon } from '../../helpers/cli.js'

const GID = 64990
const PLUGINS = ['openssl', 'kdf', 'nonce', 'random', 'socket-default', 'vici', 'kernel-libipsec', 'kernel-netlink']
const servers: Server[] = []
t.teardown(() => { for (const s of servers) s.close() })

function put (root: string, rel: string, data: string | Buffer = ''): void {
  mkdirSync(join(root, rel, '..'), { recursive: true })
  writeFileSync(join(root, rel), data)
}

function agentYaml (): string {
  return stringify({ listen: '127.0.0.1:0', device: 'patient-phone', relay_keys: [generateRawKeyPair('ed25519').publicKey], tcp_ports: [8080] })
}

/** A root where every agent check passes; `vici` is a real unix socket, root:beckon 0770. */
async function fakeRoot (t: Test, o: { esp?: boolean } = {}): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), 'beckon-doctor-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  put(root, 'usr/lib/ipsec/charon')
  for (const p of PLUGINS) put(root, `usr/lib/ipsec/plugins/libstrongswan-${p}.so`)
  put(root, 'dev/net/tun')
  put(root, 'proc/net/xfrm_stat')
  put(root, 'proc/config.gz', gzipSync(o.esp === true ? 'CONFIG_XFRM_USER=y\nCONFIG_INET_ESP=y\n' : 'CONFIG_XFRM_USER=y\n# CONFIG_INET_ESP is not set\n'))
  put(root, 'usr/sbin/nft')
  put(root, 'etc/passwd', `root:x:0:0:root:/root:/bin/bash\nbeckon:x:${GID}:${GID}::/var/lib/beckon:/usr/sbin/nologin\n`)
  put(root, 'etc/group', `root:x:0:\nbeckon:x:${GID}:\n`)
  put(root, 'etc/beckon/agent.yaml', agentYaml())
  mkdirSync(join(root, 'var/run'), { recursive: true })
  const sock = join(root, 'var/run/charon.vici')
  const s = createServer()
  servers.push(s)
  await new Promise<void>((resolve) => s.listen(sock, resolve))
  chownSync(sock, 0, GID)
  chmodSync(sock, 0o770)
  return root
}

function env (root: string, over: Partial<DoctorEnv> = {}): DoctorEnv {
  return defaultEnv({
    role: 'agent',
    root,
    kernelRelease: 'test',
    probeEsp: async () => undefined,
    portFree: async () => undefined,
    parseConfig: (role: Role, obj, source) => {
      if (role === 'agent') parseAgentConfig(obj, source)
      if (role === 'relay') parseRelayConfig(obj, source)
      if (role === 'gateway') parseGatewayConfig(obj, source)
    },
    ...over,
  })
}

const byId = (rs: CheckResult[], id: string): CheckResult | undefined => rs.find((r) => r.id === id)
const failed = (rs: CheckResult[]): string[] => rs.filter((r) => r.status === 'fail').map((r) => r.id)

t.test('a complete agent host passes every check', async (t) => {
  const rs = await runDoctor(env(await fakeRoot(t)))
  t.same(failed(rs), [], formatTable(rs))
  t.equal(byId(rs, 'vici-socket')?.status, 'ok')
  t.match(byId(rs, 'kernel-esp')?.found, /no: ESP runs in userspace.*config\.gz/)
})

t.test('each check fails alone and names its fix', async (t) => {
  const cases: Array<[string, (root: string) => void, string, RegExp]> = [
    ['openssl plugin', (r) => unlinkSync(join(r, 'usr/lib/ipsec/plugins/libstrongswan-openssl.so')), 'plugin:openssl', /apt-get install --no-install-recommends libstrongswan-standard-plugins/],
    ['kdf plugin', (r) => unlinkSync(join(r, 'usr/lib/ipsec/plugins/libstrongswan-kdf.so')), 'plugin:kdf', /install .*libstrongswan$/],
    ['vici plugin', (r) => unlinkSync(join(r, 'usr/lib/ipsec/plugins/libstrongswan-vici.so')), 'plugin:vici', /strongswan-swanctl/],
    ['kernel-libipsec without ESP', (r) => unlinkSync(join(r, 'usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so')), 'plugin:kernel-libipsec', /libcharon-extra-plugins/],
    ['charon', (r) => unlinkSync(join(r, 'usr/lib/ipsec/charon')), 'charon', /strongswan-charon/],
    ['tun', (r) => unlinkSync(join(r, 'dev/net/tun')), 'tun', /--device \/dev\/net\/tun/],
    ['xfrm', (r) => unlinkSync(join(r, 'proc/net/xfrm_stat')), 'xfrm', /CONFIG_XFRM_USER/],
    ['nftables', (r) => unlinkSync(join(r, 'usr/sbin/nft')), 'nftables', /install --no-install-recommends nftables/],
    ['vici socket absent', (r) => unlinkSync(join(r, 'var/run/charon.vici')), 'vici-socket', /systemctl start strongswan/],
    ['vici socket root-only', (r) => chmodSync(join(r, 'var/run/charon.vici'), 0o700), 'vici-socket', /charon \{ group = beckon \}/],
    ['vici socket other group', (r) => chownSync(join(r, 'var/run/charon.vici'), 0, 0), 'vici-socket', /group = beckon/],
    ['vici socket is a file', (r) => { unlinkSync(join(r, 'var/run/charon.vici')); put(r, 'var/run/charon.vici') }, 'vici-socket', /restart charon/],
    ['config missing', (r) => unlinkSync(join(r, 'etc/beckon/agent.yaml')), 'config', /install\.sh agent/],
    ['config YAML broken', (r) => put(r, 'etc/beckon/agent.yaml', 'device: [unclosed\n'), 'config', /YAML syntax/],
    ['config invalid', (r) => put(r, 'etc/beckon/agent.yaml', stringify({ device: 'x', relay_keys: ['short'] })), 'config', /agent\.yaml/],
    ['REPLACE left', (r) => put(r, 'etc/beckon/agent.yaml', stringify({ device: 'x', relay_keys: ['REPLACE'] })), 'config-replace', /keygen/],
    ['key missing', (r) => put(r, 'etc/beckon/agent.yaml', stringify({ relay_keys: [generateRawKeyPair('ed25519').publicKey] })), 'config-keys', /agent\.yaml/],
    ['certificate file missing', (r) => put(r, 'etc/beckon/agent.yaml', stringify({ device: 'x', relay_keys: [generateRawKeyPair('ed25519').publicKey], ipsec: { pubkey: { cert: '/etc/beckon/a.crt', key: '/etc/beckon/a.key', ca: '/etc/beckon/ca.crt' } } })), 'config-files', /beckon ca issue/],
    ['service user', (r) => put(r, 'etc/passwd', 'root:x:0:0:root:/root:/bin/bash\n'), 'service-user', /useradd --system/],
  ]
  for (const [name, breakIt, id, fix] of cases) {
    const root = await fakeRoot(t)
    breakIt(root)
    const rs = await runDoctor(env(root))
    const hit = byId(rs, id)
    t.equal(hit?.status, 'fail', `${name}: ${id} fails`)
    t.match(hit?.fix, fix, `${name}: fix`)
    // Knock-on failures: no service user means nobody may open the socket; a missing key
    // also fails the role's own parser. Everything else stays green.
    const expected = id === 'service-user' ? [id, 'vici-socket'] : id === 'config-keys' ? [id, 'config'] : [id]
    t.same(failed(rs).sort(), expected.sort(), `${name}: only ${id} fails`)
  }
})

t.test('REPLACE filled from the unit\'s EnvironmentFile or the environment counts as filled', async (t) => {
  const root = await fakeRoot(t)
  const key = generateRawKeyPair('ed25519').publicKey
  put(root, 'etc/beckon/agent.yaml', stringify({ device: 'REPLACE', relay_keys: [key] }))
  t.equal(byId(await runDoctor(env(root)), 'config-replace')?.status, 'fail')
  put(root, 'etc/default/beckon-agent', 'BECKON_AGENT_DEVICE="patient-phone"\n')
  t.same(failed(await runDoctor(env(root))), [])
  unlinkSync(join(root, 'etc/default/beckon-agent'))
  t.same(failed(await runDoctor(env(root, { environ: { BECKON_AGENT_DEVICE: 'patient-phone' } }))), [])
})

t.test('a kernel with ESP needs kernel-netlink and no TUN', async (t) => {
  const root = await fakeRoot(t, { esp: true })
  unlinkSync(join(root, 'dev/net/tun'))
  unlinkSync(join(root, 'usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so'))
  let rs = await runDoctor(env(root))
  t.same(failed(rs), [], formatTable(rs))
  t.match(byId(rs, 'kernel-esp')?.found, /yes: kernel-netlink/)
  t.equal(byId(rs, 'tun'), undefined)
  unlinkSync(join(root, 'usr/lib/ipsec/plugins/libstrongswan-kernel-netlink.so'))
  rs = await runDoctor(env(root))
  t.same(failed(rs), ['plugin:kernel-netlink'])
})

t.test('kernel ESP: loaded module, boot config, module tree, probe, unknown', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'beckon-esp-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const e = (probe: boolean | undefined): DoctorEnv => env(root, { probeEsp: async () => probe })
  t.same(await detectKernelEsp(e(undefined)), { esp: undefined, source: 'no kernel config, module list or probe answered' })
  t.match(await detectKernelEsp(e(false)), { esp: false, source: /probe/ })
  t.match(await detectKernelEsp(e(true)), { esp: true, source: /probe/ })
  put(root, 'lib/modules/test/kernel/net/ipv4/esp4.ko.xz')
  t.match(await detectKernelEsp(e(false)), { esp: true, source: 'esp4 module file' })
  put(root, 'boot/config-test', 'CONFIG_INET_ESP=m\n')
  t.match(await detectKernelEsp(e(false)), { esp: true, source: '/boot/config-test' })
  rmSync(join(root, 'lib'), { recursive: true })
  t.match(await detectKernelEsp(e(true)), { esp: false, source: '/boot/config-test' }, '=m without the module file: no ESP')
  put(root, 'proc/modules', 'esp4 24576 0 - Live 0x0000000000000000\n')
  t.match(await detectKernelEsp(e(false)), { esp: true, source: '/proc/modules lists esp4' })
  const rs = await runDoctor(env(mkdtempSync(join(tmpdir(), 'beckon-esp-')), { role: undefined }))
  t.equal(byId(rs, 'kernel-esp')?.status, 'warn', 'unknown ESP is a warning, not a failure')
})

t.test('a port in use fails (real bind)', async (t) => {
  const root = await fakeRoot(t)
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as { port: number }).port
  put(root, 'etc/beckon/agent.yaml', stringify({ listen: `127.0.0.1:${port}`, device: 'x', relay_keys: [generateRawKeyPair('ed25519').publicKey] }))
  const rs = await runDoctor(env(root, { portFree }))
  t.same(failed(rs), [`port:${port}`])
  t.match(byId(rs, `port:${port}`)?.fix, /ss -ltnp/)
  holder.close()
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(failed(await runDoctor(env(root, { portFree }))), [])
})

t.test('the clock: before 2024, or far from a fresh file\'s mtime', async (t) => {
  const root = await fakeRoot(t)
  let rs = await runDoctor(env(root, { now: () => Date.parse('2020-01-01T00:00:00Z') }))
  t.same(failed(rs), ['clock'])
  t.match(byId(rs, 'clock')?.found, /year 2020/)
  rs = await runDoctor(env(root, { now: () => Date.now() + 3_600_000 }))
  t.same(failed(rs), ['clock'])
  t.match(byId(rs, 'clock')?.found, /s from a fresh file's mtime/)
})

t.test('relay and gateway: no charon checks; relay listens on its ports', async (t) => {
  const root = await fakeRoot(t)
  const x = generateRawKeyPair('x25519')
  const e = generateRawKeyPair('ed25519')
  put(root, 'etc/beckon/relay.yaml', stringify({ client_listen: '0.0.0.0:8443', dialback_listen: '0.0.0.0:7001', public_address: '192.0.2.10', keys: { x25519_private: x.privateKey, ed25519_private: e.privateKey } }))
  const asked: string[] = []
  const rs = await runDoctor(env(root, { role: 'relay', portFree: async (h, p) => { asked.push(`${h}:${p}`); return undefined } }))
  t.same(failed(rs), [])
  t.equal(byId(rs, 'charon'), undefined)
  t.same(asked, ['0.0.0.0:8443', '0.0.0.0:7001'])
  put(root, 'etc/beckon/gateway.yaml', stringify({ keys: { x25519_private: x.privateKey }, trusted_relays: [] }))
  const g = await runDoctor(env(root, { role: 'gateway' }))
  t.same(failed(g).sort(), ['config', 'config-keys'])
})

t.test('--online: SMSC bind, dial-back port, store', async (t) => {
  const root = await fakeRoot(t)
  const x = generateRawKeyPair('x25519')
  put(root, 'etc/beckon/gateway.yaml', stringify({ smpp: { url: 'smpp://192.0.2.5:2775', system_id: 'gw', password: 'pw' }, keys: { x25519_private: x.privateKey }, trusted_relays: [x.publicKey] }))
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as { port: number }).port
  await new Promise((resolve) => closed.close(resolve))
  const open = createServer((s) => s.destroy())
  servers.push(open)
  await new Promise<void>((resolve) => open.listen(0, '127.0.0.1', resolve))
  const livePort = (open.address() as { port: number }).port
  const binds: string[] = []
  const run = (bind: boolean, dialback: string): Promise<CheckResult[]> => runDoctor(env(root, {
    role: 'gateway',
    timeoutMs: 2_000,
    online: {
      smppBind: async (o) => { binds.push(`${o.mode} ${o.systemId}`); if (!bind) throw new Error('bind refused: ESME_RINVPASWD') },
      dialback,
    },
  }), { online: true })
  let rs = await run(true, `127.0.0.1:${livePort}`)
  t.same(failed(rs), [], formatTable(rs))
  t.match(byId(rs, 'smpp-bind')?.found, /receiver bound to smpp:\/\/192\.0\.2\.5:2775 as gw/)
  rs = await run(false, `127.0.0.1:${deadPort}`)
  t.same(failed(rs).sort(), ['dialback', 'smpp-bind'])
  t.match(byId(rs, 'smpp-bind')?.found, /ESME_RINVPASWD/)
  t.same(binds, ['receiver gw', 'receiver gw'])
  put(root, 'etc/beckon/relay.yaml', stringify({ public_address: '127.0.0.1', dialback_listen: `0.0.0.0:${livePort}`, keys: { x25519_private: x.privateKey, ed25519_private: generateRawKeyPair('ed25519').privateKey } }))
  const relay = await runDoctor(env(root, { role: 'relay', online: {} }), { online: true })
  t.equal(byId(relay, 'dialback')?.status, 'ok')
  t.equal(byId(relay, 'store')?.status, 'warn', 'no store probe wired: a warning')
  const withStore = await runDoctor(env(root, { role: 'relay', online: { store: async () => { throw new Error('ECONNREFUSED 192.0.2.9:5432') } } }), { online: true })
  t.match(byId(withStore, 'store'), { status: 'fail', found: /ECONNREFUSED/ })
})

t.test('beckon doctor --json prints the array; exit 1 on a failure', async (t) => {
  const root = await fakeRoot(t)
  unlinkSync(join(root, 'usr/lib/ipsec/plugins/libstrongswan-openssl.so'))
  const r = await beckon(['doctor', '--role', 'agent', '--json'], { env: { BECKON_DOCTOR_ROOT: root } })
  t.equal(r.status, 1, r.stderr)
  const rs = JSON.parse(r.stdout) as CheckResult[]
  t.ok(Array.isArray(rs))
  for (const c of rs) {
    t.match(c, { id: String, status: /^(ok|warn|fail)$/, found: String })
    t.same(Object.keys(c).filter((k) => !['id', 'status', 'found', 'fix'].includes(k)), [], 'no other fields')
    if (c.status !== 'ok') t.type(c.fix, 'string')
  }
  t.match(rs.find((c) => c.id === 'plugin:openssl'), { status: 'fail', fix: 'apt-get install --no-install-recommends libstrongswan-standard-plugins' })
  const table = await beckon(['doctor', '--role', 'agent'], { env: { BECKON_DOCTOR_ROOT: root } })
  t.equal(table.status, 1)
  t.match(table.stdout, /^FAIL  plugin:openssl +\S+ missing\n +fix: apt-get install/m)
  t.match(table.stdout, /checks: 1 failed/)
  const usage = await beckon(['doctor', '--role', 'router'])
  t.equal(usage.status, 2)
})
