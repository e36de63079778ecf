// The zone client and the publisher against a real BIND 9 (Debian's named) on loopback:
// TSIG-signed UPDATEs are applied, a transfer shows them, a wrong key is refused, and the
// publisher reconciles a zone holding a stale device, then follows store changes.
//
//   test ──UPDATE/AXFR over TCP, TSIG hmac-sha256──▶ named 127.0.0.1:<free port>  (zone lab.beckon.example)
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { waitFor } from '../../../src/core/exec.js'
import { CLASS, TYPE, type Rr } from '../../../src/dns/codec.js'
import { DnsPublisher, type DnsConfig } from '../../../src/dns/publisher.js'
import { ZoneClient } from '../../../src/dns/update.js'
import { NAMED_BIN, namedCommand, writeBindConfig } from '../../../src/lab/bind.js'
import { memoryStore } from '../../../src/store/memory.js'

if (!existsSync(NAMED_BIN)) { t.plan(0, 'named is not installed (apt-get install bind9)'); process.exit(0) }

const ZONE = 'lab.beckon.example'

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

const dir = mkdtempSync(join(tmpdir(), 'beckon-bind-'))
const secret = randomBytes(32)
const port = await freePort()
const conf = writeBindConfig(dir, { listen: { address: '127.0.0.1', port }, zone: ZONE, key: { name: 'beckon-relay', secret: secret.toString('base64') }, ns: { name: `ns.${ZONE}`, address: '127.0.0.1' } })
const named = spawn(namedCommand(conf)[0]!, namedCommand(conf).slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
let log = ''
named.stderr!.on('data', (d: Buffer) => { log += d.toString() })
t.teardown(async () => {
  named.kill('SIGTERM')
  await new Promise((resolve) => { if (named.exitCode !== null) resolve(null); else named.once('exit', resolve) })
  rmSync(dir, { recursive: true, force: true })
})
await waitFor('named to load the zone', () => {
  if (named.exitCode !== null) throw new Error(`named exited: ${log}`)
  // Not /running/: named logs 'running as: named …' before it has loaded the zone.
  return /all zones loaded/.test(log)
}, 15_000)

const key = { name: 'beckon-relay', algorithm: 'hmac-sha256' as const, secret }
const zone = new ZoneClient({ server: { host: '127.0.0.1', port }, zone: ZONE, key })
const names = (rrs: Rr[]): string[] => rrs.map((r) => `${r.name} ${r.type}`).sort()

t.test('signed UPDATE adds and deletes; AXFR shows the zone', async (t) => {
  await zone.update([
    { name: `_beckon._tcp.old.${ZONE}`, type: TYPE.SRV, class: CLASS.IN, ttl: 30, data: { type: 'SRV', priority: 10, weight: 0, port: 8443, target: `relay.${ZONE}` } },
    { name: `old.${ZONE}`, type: TYPE.AAAA, class: CLASS.IN, ttl: 30, data: { type: 'AAAA', address: 'fd00:beca:0:2::99' } },
    { name: `ops.${ZONE}`, type: TYPE.A, class: CLASS.IN, ttl: 30, data: { type: 'A', address: '192.0.2.9' } },
  ])
  const rrs = await zone.transfer()
  t.equal(rrs[0]!.type, TYPE.SOA)
  t.ok(rrs[0]!.data !== null && rrs[0]!.data.type === 'SOA' && rrs[0]!.data.serial > 1, 'the serial moved')
  t.same(names(rrs).filter((n) => n.includes('old')), [`_beckon._tcp.old.${ZONE} 33`, `old.${ZONE} 28`])
  await zone.update([{ name: `ops.${ZONE}`, type: TYPE.A, class: CLASS.ANY, ttl: 0, data: null }])
  t.notOk(names(await zone.transfer()).some((n) => n.startsWith('ops.')), 'deleted')
})

t.test('a wrong secret or key name is refused with a coded error', async (t) => {
  const bad = new ZoneClient({ server: { host: '127.0.0.1', port }, zone: ZONE, key: { ...key, secret: randomBytes(32) } })
  await t.rejects(bad.update([{ name: `x.${ZONE}`, type: TYPE.A, class: CLASS.IN, ttl: 30, data: { type: 'A', address: '192.0.2.1' } }]), { code: 'BECKON_ERR_DNS_TSIG', message: /BADSIG/ })
  const other = new ZoneClient({ server: { host: '127.0.0.1', port }, zone: ZONE, key: { ...key, name: 'nobody' } })
  await t.rejects(other.transfer(), { code: 'BECKON_ERR_DNS_TSIG', message: /BADKEY/ })
  const foreign = new ZoneClient({ server: { host: '127.0.0.1', port }, zone: 'example.org', key })
  await t.rejects(foreign.update([{ name: 'x.example.org', type: TYPE.A, class: CLASS.IN, ttl: 30, data: { type: 'A', address: '192.0.2.1' } }]), { code: 'BECKON_ERR_DNS_UPDATE_REFUSED', message: /NOTAUTH|REFUSED/ })
  t.notOk(names(await zone.transfer()).some((n) => n.startsWith('x.')), 'nothing was written')
})

t.test('the publisher reconciles at start, then follows the store', async (t) => {
  const store = await memoryStore()
  t.teardown(() => store.close())
  await store.put('gateway', 'gw', { name: 'gw', public_key: Buffer.alloc(32, 9).toString('base64url') }, 'test')
  const device = (name: string): Parameters<typeof store.put<'device'>>[2] => ({ name, gateway: 'gw', channels: ['sms'], msisdn: '+15550100', wake_timeout_ms: 5000, services: [] } as unknown as Parameters<typeof store.put<'device'>>[2])
  await store.put('device', 'patient-phone', device('patient-phone'), 'test')
  const config: DnsConfig = { server: { host: '127.0.0.1', port }, zone: ZONE, tsig: key, relays: [{ host: `relay.${ZONE}`, address: '198.51.100.20', port: 8443, priority: 10, weight: 0 }], ttl: 30 }
  const pub = new DnsPublisher({ store, config, addressOf: (d) => `fd00:beca:0:2::${d.name.length.toString(16)}`, intervalMs: 100 })
  await pub.start()
  t.teardown(() => pub.stop())
  t.equal(pub.health().ok, true, pub.health().detail ?? '')
  let rrs = names(await zone.transfer())
  t.ok(rrs.includes(`_beckon._tcp.patient-phone.${ZONE} 33`) && rrs.includes(`patient-phone.${ZONE} 28`) && rrs.includes(`relay.${ZONE} 1`), 'device and relay published')
  t.notOk(rrs.some((n) => n.includes('old.')), 'the stale device from before went at reconcile')
  t.ok(rrs.includes(`ns.${ZONE} 1`), 'records it does not own stay')
  await store.delete('device', 'patient-phone', 'test')
  await waitFor('the removal to be published', async () => !names(await zone.transfer()).some((n) => n.includes('patient-phone')), 5_000)
  await store.put('device', 'patient-phone', device('patient-phone'), 'test')
  await waitFor('the device to come back', async () => names(await zone.transfer()).includes(`patient-phone.${ZONE} 28`), 5_000)
  t.pass('removed and restored within seconds')
  t.match(readFileSync(conf, 'utf8'), /recursion no;/)
})
