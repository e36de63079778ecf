// The VICI client against two real charon daemons (topology: test/helpers/charon-pair.ts).
import type { Test } from 'tap'
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { charonPair, pskConn, ping6, requireRoot, PSK, type Pair, type Side } from '../helpers/charon-pair.js'
import type { ViciEvent } from '../../src/proto/vici/session.js'
import { beckon, beckonAsync } from '../helpers/cli.js'

if (!requireRoot(t)) process.exit(1)

/** Collects events and lets a test wait for the first one matching a predicate. */
function eventLog (): { events: ViciEvent[], handler: (e: ViciEvent) => void, next: (p: (e: ViciEvent) => boolean, ms?: number) => Promise<ViciEvent> } {
  const events: ViciEvent[] = []
  const waiters: Array<{ p: (e: ViciEvent) => boolean, resolve: (e: ViciEvent) => void }> = []
  return {
    events,
    handler: (e) => {
      events.push(e)
      for (const w of waiters.splice(0)) {
        if (w.p(e)) w.resolve(e)
        else waiters.push(w)
      }
    },
    next: (p, ms = 10_000) => {
      const seen = events.find(p)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching event within ${ms} ms`)), ms)
        waiters.push({ p, resolve: (e) => { clearTimeout(timer); resolve(e) } })
      })
    },
  }
}

async function loadBoth (pair: Pair, initiatorExtra: { remoteAddr?: string, remotePort?: number, localPort?: number } = {}): Promise<void> {
  await pair.a.vici.loadShared(PSK)
  await pair.b.vici.loadShared(PSK)
  await pair.a.vici.loadConn('ab', pskConn(pair.a, pair.b, { initiator: true, ...initiatorExtra }))
  await pair.b.vici.loadConn('ab', pskConn(pair.b, pair.a, { initiator: false }))
}

async function expectTunnel (t: Test, side: Side, label: string): Promise<void> {
  const sas = await side.vici.listSas({ ike: 'ab' })
  t.equal(sas.length, 1, `${label}: one IKE_SA`)
  const ike = sas[0]!
  t.equal(ike.state, 'ESTABLISHED', `${label}: IKE_SA ESTABLISHED`)
  t.equal(ike.version, '2', `${label}: IKEv2`)
  const child = ike.children.find((c) => c.name === 'net6')
  t.ok(child, `${label}: CHILD_SA net6 present`)
  t.equal(child?.state, 'INSTALLED', `${label}: CHILD_SA INSTALLED`)
  t.equal(child?.mode, 'TUNNEL', `${label}: tunnel mode`)
  t.equal(child?.encap, true, `${label}: UDP encapsulation`)
  t.same(child?.localTs, [`${side.inner}/128`], `${label}: IPv6 local selector`)
}

t.test('PSK tunnel, IPv6 selectors over IPv4, events, errors, cleanup, restart', async (t) => {
  const pair = await charonPair(t)
  const { a, b } = pair

  const v = await a.vici.version()
  t.equal(v.daemon, 'charon')
  t.match(v.version, /^\d+\.\d+\.\d+/)
  t.ok((await a.vici.stats()).has('ikesas'), 'stats carries ikesas')

  const logA = eventLog()
  await a.vici.subscribe(['child-updown', 'ike-updown'], logA.handler)

  await loadBoth(pair)
  t.same(await a.vici.getConns(), ['ab'])
  t.same(await a.vici.getShared(), ['psk-ab'])
  const conns = await a.vici.listConns()
  t.equal(conns[0]?.name, 'ab', 'listConns streams the loaded connection')

  const bad = await t.rejects(a.vici.loadConn('broken', { version: 2, bogus_key: 'x' }),
    { code: 'BECKON_ERR_VICI_COMMAND_FAILED', message: /unknown option: bogus_key/ }, 'charon explains a bad load-conn')
  void bad
  await t.rejects(a.vici.loadConn('broken2', { children: { c: { local_ts: ['not-an-address'] } } }),
    { code: 'BECKON_ERR_VICI_COMMAND_FAILED', message: /invalid value for: local_ts/ })
  await t.rejects(a.vici.initiate({ child: 'nonexistent', timeout: 2000 }),
    { code: 'BECKON_ERR_VICI_COMMAND_FAILED', message: /not found/ })

  const logs = await a.vici.initiate({ child: 'net6', ike: 'ab', timeout: 10_000 })
  t.ok(logs.length > 0, `initiate streamed ${logs.length} control-log lines`)
  const up = await logA.next((e) => e.name === 'child-updown' && e.up)
  t.ok(up.up, 'child-updown (up) arrived on the subscription')

  await expectTunnel(t, a, 'initiator')
  await expectTunnel(t, b, 'responder')

  t.equal(await ping6(a, b, 3), 3, 'ping6 fd00:a::1 → fd00:b::1 passes through the tunnel')
  const child = (await a.vici.listSas({ ike: 'ab' }))[0]!.children[0]!
  t.ok(child.packetsOut >= 3 && child.packetsIn >= 3, `ESP counters moved (out ${child.packetsOut}, in ${child.packetsIn})`)

  const term = await a.vici.terminate({ ike: 'ab', timeout: 10_000 })
  t.equal(term.terminated, 1, 'terminate reports one IKE_SA')
  await logA.next((e) => e.name === 'child-updown' && !e.up)
  t.pass('child-updown (down) arrived')
  t.same(await a.vici.listSas(), [], 'no SA left on the initiator')
  await a.vici.unloadConn('ab')
  await a.vici.unloadShared('psk-ab')
  t.same(await a.vici.getConns(), [], 'connection unloaded')
  t.same(await a.vici.getShared(), [], 'secret unloaded')
  await t.rejects(a.vici.unloadConn('ab'), { code: 'BECKON_ERR_VICI_COMMAND_FAILED', message: /not found/ })
  t.equal(await ping6(a, b, 1), 0, 'no tunnel, no traffic')

  // charon crashes and comes back: the session reconnects and subscriptions are restored.
  const reconnected = once(a.vici, 'reconnect')
  await a.charon.kill()
  await a.charon.start()
  await reconnected
  t.equal((await a.vici.version()).daemon, 'charon', 'commands work again after the restart')
  await loadBoth(pair)
  logA.events.length = 0
  await a.vici.initiate({ child: 'net6', ike: 'ab' })
  await logA.next((e) => e.name === 'child-updown' && e.up)
  t.pass('the old subscription sees events from the new charon')
  t.equal(await ping6(a, b, 2), 2, 'traffic passes after the restart')
})

t.test('initiator pointed at 127.0.0.1:<custom remote_port> (the data-plane pattern)', async (t) => {
  // Notes §4: with kernel-libipsec on 5.9.8 the initiator must send from port_nat_t,
  // or float_ports() swings IKE_AUTH to its own 4500.
  const pair = await charonPair(t)
  const { a, b } = pair
  const relay = spawn('ip', ['netns', 'exec', a.ns.name, process.execPath,
    fileURLToPath(new URL('../fixtures/udp-relay.mjs', import.meta.url)), '24500', b.outer, '4500'],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { relay.kill('SIGKILL') })
  const [ready] = await once(relay.stdout!, 'data') as [Buffer]
  t.equal(ready.toString().trim(), 'ready', 'udp relay listening on 127.0.0.1:24500')

  // `beckon vici watch` sees the CHILD_SA come up.
  const watcher = beckonAsync(['vici', 'watch', '--events', 'child-updown'], { env: { BECKON_VICI_SOCKET: a.charon.viciUri } })
  t.teardown(() => { watcher.kill('SIGKILL') })
  let watched = ''
  watcher.stdout!.on('data', (d: Buffer) => { watched += d.toString() })
  await once(watcher.stderr!, 'data') // "watching …" once subscribed

  await loadBoth(pair, { remoteAddr: '127.0.0.1', remotePort: 24500, localPort: 4500 })
  await a.vici.initiate({ child: 'net6', ike: 'ab' })
  await expectTunnel(t, a, 'initiator via relay')
  await expectTunnel(t, b, 'responder via relay')
  const ike = (await a.vici.listSas({ ike: 'ab' }))[0]!
  t.equal(ike.remoteHost, '127.0.0.1', 'initiator sees the relay as its peer')
  t.equal(ike.remotePort, 24500, 'remote port stays the custom one')
  t.equal(ike.localPort, 4500, 'sent from port_nat_t')
  t.equal(await ping6(a, b, 3), 3, 'ping6 passes through the relayed tunnel')

  watcher.kill('SIGINT')
  const [code] = await once(watcher, 'exit') as [number]
  t.equal(code, 0, 'watch exits cleanly on SIGINT')
  const ev = watched.trim().split('\n').map((l) => JSON.parse(l) as { event: string, message: Record<string, any> })
  t.equal(ev[0]?.event, 'child-updown')
  t.equal(ev[0]?.message.up, 'yes', 'watch printed child-updown (up) as a JSON line')

  const cli = await beckon(['vici', '--socket', a.charon.viciUri, 'list-sas', '--json', '{"ike":"ab"}'])
  t.equal(cli.status, 0, 'beckon vici list-sas exits 0')
  const lines = cli.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
  t.equal(lines[0]?.event, 'list-sa')
  t.equal(lines[0]?.message.ab.state, 'ESTABLISHED', 'CLI prints the IKE_SA')
  t.same(lines[lines.length - 1], {}, 'then the (empty) response')
})
