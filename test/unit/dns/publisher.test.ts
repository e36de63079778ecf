// The publisher's record logic without a server: what it wants, what it owns, the diff,
// and its rounds against a fake zone over the in-memory store (revision-driven).
import t from 'tap'
import { CLASS, TYPE, type Rr } from '../../../src/dns/codec.js'
import { DnsPublisher, batches, desiredRecords, diffRecords, ownedRecords, type DnsConfig } from '../../../src/dns/publisher.js'
import { orderSrv, resolveRelays, splitTarget } from '../../../src/dns/resolve.js'
import type { Zone } from '../../../src/dns/update.js'
import { memoryStore } from '../../../src/store/memory.js'

const Z = 'lab.example'
const cfg: DnsConfig = {
  server: { host: '127.0.0.1', port: 53 }, zone: Z, tsig: { name: 'k', algorithm: 'hmac-sha256', secret: Buffer.alloc(32) }, ttl: 30,
  relays: [{ host: `relay.${Z}`, address: '198.51.100.20', port: 8443, priority: 10, weight: 0 }, { host: `relay2.${Z}`, address: '198.51.100.21', port: 8443, priority: 20, weight: 0 }],
}
const srv = (dev: string, prio: number, host: string): Rr => ({ name: `_beckon._tcp.${dev}.${Z}`, type: TYPE.SRV, class: CLASS.IN, ttl: 30, data: { type: 'SRV', priority: prio, weight: 0, port: 8443, target: host } })
const aaaa = (n: string, a: string): Rr => ({ name: `${n}.${Z}`, type: TYPE.AAAA, class: CLASS.IN, ttl: 30, data: { type: 'AAAA', address: a } })
const a = (n: string, addr: string): Rr => ({ name: `${n}.${Z}`, type: TYPE.A, class: CLASS.IN, ttl: 30, data: { type: 'A', address: addr } })

/** Applies RFC 2136 adds and RRset deletes to a list, as a server would. */
class FakeZone implements Zone {
  rrs: Rr[] = [{ name: Z, type: TYPE.SOA, class: CLASS.IN, ttl: 30, data: { type: 'SOA', mname: `ns.${Z}`, rname: `h.${Z}`, serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 } }]
  updates: Rr[][] = []
  fail = false
  async transfer (): Promise<Rr[]> { return [...this.rrs] }
  async update (records: Rr[]): Promise<void> {
    if (this.fail) throw Object.assign(new Error('down'), { code: 'X' })
    this.updates.push(records)
    for (const r of records) {
      const same = (x: Rr): boolean => x.name.toLowerCase() === r.name.toLowerCase() && x.type === r.type
      if (r.class === CLASS.ANY) this.rrs = this.rrs.filter((x) => !same(x))
      else this.rrs.push(r)
    }
  }
}

t.test('desired records: SRV per relay in priority order, AAAA, relay A records', async (t) => {
  const d = desiredRecords([{ name: 'pp', address: 'fd00::1' }], cfg)
  t.same([...d.keys()].sort(), [`_beckon._tcp.pp.${Z}|33`, `pp.${Z}|28`, `relay.${Z}|1`, `relay2.${Z}|1`])
  t.same(d.get(`_beckon._tcp.pp.${Z}|33`)!.data.map((x) => x.type === 'SRV' ? [x.priority, x.target] : []), [[10, `relay.${Z}`], [20, `relay2.${Z}`]])
})

t.test('owned records: only _beckon names, their devices\' AAAA and relay hosts', async (t) => {
  const zone = [srv('old', 10, `relay.${Z}`), aaaa('old', 'fd00::9'), aaaa('www', 'fd00::8'), a('ns', '192.0.2.53'), a('relay', '198.51.100.99'), srv('x.y', 10, 'r')]
  t.same([...ownedRecords(zone, cfg).keys()].sort(), [`_beckon._tcp.old.${Z}|33`, `old.${Z}|28`, `relay.${Z}|1`])
})

t.test('diff: unchanged RRsets send nothing; changed ones are replaced whole; gone ones deleted', async (t) => {
  const cur = ownedRecords([srv('pp', 10, `relay.${Z}`), aaaa('pp', 'fd00::1'), srv('old', 10, `relay.${Z}`), aaaa('old', 'fd00::9'), a('relay', '198.51.100.20')], cfg)
  const want = desiredRecords([{ name: 'pp', address: 'fd00::1' }], cfg)
  const groups = diffRecords(cur, want)
  const text = groups.map((g) => g.map((r) => `${r.class === CLASS.ANY ? 'del' : 'add'} ${r.name} ${r.type}`))
  t.same(text, [
    [`del _beckon._tcp.pp.${Z} 33`, `add _beckon._tcp.pp.${Z} 33`, `add _beckon._tcp.pp.${Z} 33`], // relay2 joined: replaced whole
    [`add relay2.${Z} 1`],
    [`del _beckon._tcp.old.${Z} 33`], [`del old.${Z} 28`],
  ])
  t.same(diffRecords(want, want), [], 'nothing to do')
  t.same(batches([[srv('a', 1, 'r'), srv('a', 2, 'r')], [srv('b', 1, 'r')], [srv('c', 1, 'r')]], 2).map((b) => b.length), [2, 2], 'groups are never split')
})

t.test('rounds: reconcile at start, then only the difference at each new revision', async (t) => {
  const store = await memoryStore()
  t.teardown(() => store.close())
  await store.put('gateway', 'gw', { name: 'gw', public_key: Buffer.alloc(32, 9).toString('base64url') }, 'test')
  const dev = (name: string): any => ({ name, gateway: 'gw', channels: ['sms'], msisdn: '+15550100', wake_timeout_ms: 5000, services: [] })
  await store.put('device', 'pp', dev('pp'), 'test')
  const zone = new FakeZone()
  zone.rrs.push(srv('old', 10, `relay.${Z}`), aaaa('old', 'fd00::9'))
  const pub = new DnsPublisher({ store, config: cfg, zone, addressOf: (d) => d.name === 'pp' ? 'fd00::1' : 'fd00::2' })
  await pub.tick()
  t.equal(pub.health().ok, true)
  t.notOk(zone.rrs.some((r) => r.name.includes('old')), 'reconciled away the stale device')
  const n = zone.updates.length
  await pub.tick()
  t.equal(zone.updates.length, n, 'same revision: no update')
  await store.put('device', 'pump', dev('pump'), 'test')
  await pub.tick()
  t.same(zone.updates.slice(n).flat().map((r) => r.name).sort(), [`_beckon._tcp.pump.${Z}`, `_beckon._tcp.pump.${Z}`, `pump.${Z}`], 'only the new device was sent')
  zone.fail = true
  await store.delete('device', 'pump', 'test')
  await pub.tick()
  t.match(pub.health(), { ok: false, detail: /down/ })
  zone.fail = false
  await pub.tick()
  t.equal(pub.health().ok, true, 'recovers, from a fresh transfer')
  t.notOk(zone.rrs.some((r) => r.name.includes('pump')))
})

t.test('SRV order (RFC 2782): priority first, weighted within one priority', async (t) => {
  const recs = [{ priority: 20, weight: 0, n: 'c' }, { priority: 10, weight: 1, n: 'b' }, { priority: 10, weight: 0, n: 'a' }, { priority: 10, weight: 100, n: 'd' }]
  t.same(orderSrv(recs, () => 0).map((r) => r.n), ['a', 'b', 'd', 'c'], 'random 0: weight-0 first, then in order')
  t.same(orderSrv(recs, () => 0.999).map((r) => r.n), ['d', 'b', 'a', 'c'], 'random ~1: the heaviest first')
  let heavy = 0
  for (let i = 0; i < 1000; i++) if (orderSrv(recs)[0]!.n === 'd') heavy++
  t.ok(heavy > 900, `weight 100 of 101 comes first most of the time (${heavy}/1000)`)
  t.same(splitTarget('patient-phone.lab.beckon.example.'), { device: 'patient-phone', zone: 'lab.beckon.example' })
  t.throws(() => splitTarget('patient-phone'), { code: 'BECKON_ERR_USAGE' })
})

t.test('resolveRelays: targets without an address are skipped; none at all is a coded error', async (t) => {
  const resolver = {
    resolveSrv: async (n: string) => { if (n !== `_beckon._tcp.pp.${Z}`) throw Object.assign(new Error('x'), { code: 'ENOTFOUND' }); return [{ priority: 20, weight: 0, port: 8443, name: `relay2.${Z}` }, { priority: 10, weight: 0, port: 8443, name: `relay.${Z}` }, { priority: 5, weight: 0, port: 8443, name: `gone.${Z}` }] },
    resolve4: async (n: string) => n === `relay.${Z}` ? ['198.51.100.20'] : n === `relay2.${Z}` ? ['198.51.100.21'] : [],
    resolve6: async () => [],
  }
  const r = await resolveRelays(`pp.${Z}`, resolver)
  t.same(r.relays.map((x) => `${x.name}=${x.host}:${x.port}`), [`relay.${Z}=198.51.100.20:8443`, `relay2.${Z}=198.51.100.21:8443`])
  t.same(r.skipped.map((s) => s.name), [`gone.${Z}`])
  await t.rejects(resolveRelays(`nope.${Z}`, resolver), { code: 'BECKON_ERR_DNS_LOOKUP', message: /ENOTFOUND/ })
})
