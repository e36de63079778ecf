// IPsec programmed from descriptors over VICI, with IKE and ESP carried by our RFC 8229
// bridges over TCP between two namespaces (topology: test/helpers/charon-pair.ts, plus
// one bridge process per namespace). Both auth modes, and the wrong-credential errors.
import t from 'tap'
import type { Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { caInit, caIssue } from '../../src/ipsec/ca.js'
import { TunnelManager, type PubkeyCreds } from '../../src/ipsec/tunnels.js'
import type { IpsecParams } from '../../src/proto/descriptor/descriptor.js'
import { charonPair, ping6, requireRoot, type Pair } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

function startBridge (t: Test, ns: string, args: string[]): Promise<{ proc: ChildProcess, first: Record<string, unknown> }> {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(new URL('../fixtures/bridge-node.mjs', import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  return new Promise((resolve, reject) => {
    proc.stdout!.once('data', (d: Buffer) => resolve({ proc, first: JSON.parse(d.toString().split('\n')[0]!) as Record<string, unknown> }))
    proc.once('exit', (c) => reject(new Error(`bridge exited ${c}`)))
  })
}

/** Bridges: B listens on its outer address, A dials; resolves with A's UDP port. */
async function bridges (t: Test, pair: Pair): Promise<number> {
  await startBridge(t, pair.b.ns.name, ['listen', `${pair.b.outer}:7777`])
  const a = await startBridge(t, pair.a.ns.name, ['connect', `${pair.b.outer}:7777`])
  return a.first.udpPort as number
}

function params (auth: 'psk' | 'pubkey', session: string): IpsecParams {
  return {
    auth,
    client: { id: auth === 'psk' ? `dr-grey@${session}.test` : 'dr-grey@lab.beckon.example', address: 'fd00:a::1' },
    terminal: { id: auth === 'psk' ? `patient-phone.${session}.test` : 'patient-phone.lab.beckon.example', address: 'fd00:b::1' },
    protocol: 'any',
    ports: [],
    ikeProposals: ['aes256gcm16-prfsha256-x25519'],
    espProposals: ['aes256gcm16'],
    ikeRekeyS: 3600,
    childRekeyS: 1800,
    dpdS: 10,
  }
}

async function clean (t: Test, pair: Pair): Promise<void> {
  for (const side of [pair.a, pair.b]) {
    t.same(await side.vici.getConns(), [], `${side.outer}: no connection left`)
    t.same(await side.vici.getShared(), [], `${side.outer}: no secret left`)
    t.same(await side.vici.listSas(), [], `${side.outer}: no SA left`)
  }
}

t.test('psk: right key tunnels over the RFC 8229 bridges, wrong key fails clearly', async (t) => {
  const pair = await charonPair(t)
  const port = await bridges(t, pair)
  const ta = new TunnelManager(pair.a.vici)
  const tb = new TunnelManager(pair.b.vici)
  const session = randomBytes(12).toString('hex')
  const psk = randomBytes(32)
  await tb.install({ session, side: 'responder', ipsec: params('psk', session), psk })
  await ta.install({ session, side: 'initiator', ipsec: params('psk', session), psk, bridgePort: port })
  const sa = await ta.initiate(session)
  t.equal(sa.state, 'ESTABLISHED')
  t.equal(sa.remotePort, port, 'IKE goes to the bridge')
  t.equal(sa.children[0]?.state, 'INSTALLED')
  t.equal(sa.children[0]?.encap, true, 'ESP in UDP, carried as RFC 8229 frames')
  t.equal(await ping6(pair.a, pair.b, 3), 3, 'ping6 through the tunnel')
  await ta.remove(session)
  await tb.remove(session)
  await clean(t, pair)

  const s2 = randomBytes(12).toString('hex')
  await tb.install({ session: s2, side: 'responder', ipsec: params('psk', s2), psk: randomBytes(32) })
  await ta.install({ session: s2, side: 'initiator', ipsec: params('psk', s2), psk: randomBytes(32), bridgePort: port })
  await t.rejects(ta.initiate(s2, 8_000), { code: 'BECKON_ERR_IPSEC_FAILED', message: /AUTHENTICATION_FAILED/ }, 'wrong PSK: the error names the cause')
  await ta.remove(s2)
  await tb.remove(s2)
  await clean(t, pair)
})

t.test('pubkey: certificates from the deployment CA; a foreign CA fails clearly', async (t) => {
  const pair = await charonPair(t)
  const port = await bridges(t, pair)
  const dir = mkdtempSync(join(tmpdir(), 'beckon-ca-'))
  const other = mkdtempSync(join(tmpdir(), 'beckon-ca2-'))
  await caInit(dir)
  await caInit(other, 'Someone else')
  const creds = async (caDir: string, id: string): Promise<PubkeyCreds> => {
    const f = await caIssue(caDir, id)
    return { certPem: readFileSync(f.cert, 'utf8'), keyPem: readFileSync(f.key, 'utf8'), caPem: readFileSync(join(dir, 'ca.crt'), 'utf8') }
  }
  const client = await creds(dir, 'dr-grey@lab.beckon.example')
  const terminal = await creds(dir, 'patient-phone.lab.beckon.example')
  const ta = new TunnelManager(pair.a.vici)
  const tb = new TunnelManager(pair.b.vici)
  const session = randomBytes(12).toString('hex')
  await tb.install({ session, side: 'responder', ipsec: params('pubkey', session), pubkey: terminal })
  await ta.install({ session, side: 'initiator', ipsec: params('pubkey', session), pubkey: client, bridgePort: port })
  const sa = await ta.initiate(session)
  t.equal(sa.state, 'ESTABLISHED')
  t.equal(sa.remoteId, 'patient-phone.lab.beckon.example', 'peer authenticated by its certificate')
  t.equal(await ping6(pair.a, pair.b, 2), 2)
  await ta.remove(session)
  await tb.remove(session)

  // A client whose certificate comes from another CA: the terminal refuses it.
  const forged = await creds(other, 'dr-grey@lab.beckon.example')
  const ta2 = new TunnelManager(pair.a.vici)
  const s2 = randomBytes(12).toString('hex')
  await tb.install({ session: s2, side: 'responder', ipsec: params('pubkey', s2), pubkey: terminal })
  await ta2.install({ session: s2, side: 'initiator', ipsec: params('pubkey', s2), pubkey: { ...forged, caPem: client.caPem }, bridgePort: port })
  await t.rejects(ta2.initiate(s2, 8_000), { code: 'BECKON_ERR_IPSEC_FAILED', message: /AUTHENTICATION_FAILED/ }, 'foreign certificate: refused, and said so')
  await ta2.remove(s2)
  await tb.remove(s2)
  for (const side of [pair.a, pair.b]) t.same(await side.vici.getConns(), [], 'no connection left')
})
