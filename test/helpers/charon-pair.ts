/**
 * Two namespaces, one charon each, joined by a veth pair:
 *
 *   ns <p>-a (initiator)                       ns <p>-b (responder)
 *   lo: fd00:a::1/128                          lo: fd00:b::1/128
 *   a0: 198.51.100.1/24 ────── veth ────────── b0: 198.51.100.2/24
 *   charon (kernel-libipsec → ipsec0)          charon (kernel-libipsec → ipsec0)
 *
 * Everything is removed in a tap teardown, which runs when the test fails too;
 * a SIGINT/SIGTERM handler covers an interrupted run.
 */
import type { Test } from 'tap'
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NetnsSet, veth, type Netns } from '../../src/lab/netns.js'
import { CharonProcess } from '../../src/lab/charon.js'
import { ViciSession } from '../../src/proto/vici/session.js'
import type { ViciInput } from '../../src/proto/vici/codec.js'

export interface Side {
  ns: Netns
  charon: CharonProcess
  vici: ViciSession
  outer: string
  inner: string
}

export interface Pair {
  dir: string
  a: Side
  b: Side
}

export function requireRoot (t: Test): boolean {
  if (process.getuid?.() === 0) return true
  t.fail('namespace tests need root (CI runs as root)')
  return false
}

/** Runs `cleanup` at the test's teardown, and also on SIGINT/SIGTERM (then exits 130). */
export function cleanUpAlways (t: Test, cleanup: () => Promise<void>): void {
  const onSignal = (): void => { void cleanup().finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  t.teardown(async () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await cleanup()
  })
}

export async function charonPair (t: Test, opts: { portNatT?: number } = {}): Promise<Pair> {
  const prefix = `bk${process.pid % 100000}${Math.floor(Math.random() * 100)}`
  const dir = mkdtempSync(join(tmpdir(), 'beckon-pair-'))
  const set = new NetnsSet(prefix)
  const charons: CharonProcess[] = []
  const sessions: ViciSession[] = []
  const cleanup = async (): Promise<void> => {
    for (const s of sessions) await s.close().catch(() => {})
    for (const c of charons) await c.stop().catch(() => {})
    await set.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
  cleanUpAlways(t, cleanup)

  const nsA = await set.create('a')
  const nsB = await set.create('b')
  await veth(nsA, 'a0', nsB, 'b0')
  await nsA.addAddress('a0', '198.51.100.1/24')
  await nsB.addAddress('b0', '198.51.100.2/24')
  await nsA.addAddress('lo', 'fd00:a::1/128')
  await nsB.addAddress('lo', 'fd00:b::1/128')

  const side = async (ns: Netns, name: string, outer: string, inner: string): Promise<Side> => {
    const cdir = join(dir, name)
    mkdirSync(cdir)
    const charon = new CharonProcess(ns.name, { dir: cdir, portNatT: opts.portNatT })
    charons.push(charon)
    await charon.start()
    const vici = await ViciSession.open({ uri: charon.viciUri, reconnect: { initialMs: 50, maxMs: 500 } })
    sessions.push(vici)
    return { ns, charon, vici, outer, inner }
  }
  const [a, b] = await Promise.all([
    side(nsA, 'a', '198.51.100.1', 'fd00:a::1'),
    side(nsB, 'b', '198.51.100.2', 'fd00:b::1'),
  ])
  return { dir, a, b }
}

/** A PSK tunnel-mode config for one side, IPv6 selectors over the IPv4 path. */
export function pskConn (local: Side, remote: Side, o: { initiator: boolean, remoteAddr?: string, remotePort?: number, localPort?: number }): ViciInput {
  return {
    version: 2,
    local_addrs: [local.outer],
    remote_addrs: [o.initiator ? (o.remoteAddr ?? remote.outer) : '%any'],
    local_port: o.localPort,
    remote_port: o.remotePort,
    encap: 'yes',
    mobike: 'no',
    proposals: ['aes256gcm16-prfsha256-x25519'],
    dpd_delay: '5s',
    local: { auth: 'psk', id: o.initiator ? 'a.beckon.example' : 'b.beckon.example' },
    remote: { auth: 'psk', id: o.initiator ? 'b.beckon.example' : 'a.beckon.example' },
    children: {
      net6: {
        mode: 'tunnel',
        local_ts: [`${local.inner}/128`],
        remote_ts: [`${remote.inner}/128`],
        esp_proposals: ['aes256gcm16-x25519'],
        start_action: 'none',
      },
    },
  }
}

export const PSK = { id: 'psk-ab', type: 'IKE' as const, data: 'correct horse battery staple 42', owners: ['a.beckon.example', 'b.beckon.example'] }

/** ping6 from `from`'s inner address to `to`'s; resolves with packets received. */
export async function ping6 (from: Side, to: Side, count = 3): Promise<number> {
  const r = await from.ns.exec('ping', ['-6', '-n', '-c', String(count), '-i', '0.2', '-W', '2', '-I', from.inner, to.inner], { allowFail: true })
  const m = /(\d+) received/.exec(r.stdout)
  return m === null ? 0 : Number(m[1])
}
