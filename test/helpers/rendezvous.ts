/**
 * The whole rendezvous on loopback in one process: relay, gateway, agent, a sample
 * service, and a memory channel that hands tokens to the gateway (no SMSC).
 */
import type { Test } from 'tap'
import http from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { generateRawKeyPair } from '../../src/core/keys.js'
import { silentLogger } from '../../src/core/log.js'
import { MemoryChannel } from '../../src/channels/channel.js'
import { hashPassword } from '../../src/directory/directory.js'
import { Catalog } from '../../src/roles/relay/catalog.js'
import { memoryStore } from '../../src/store/memory.js'
import type { Store } from '../../src/store/store.js'
import { Relay } from '../../src/roles/relay/relay.js'
import { parseRelayConfig } from '../../src/roles/relay/config.js'
import { Gateway, parseGatewayConfig } from '../../src/roles/gateway/gateway.js'
import { Agent, parseAgentConfig } from '../../src/roles/agent/agent.js'
import type { ClientOptions } from '../../src/roles/client/client.js'

export interface Rig {
  relay: Relay
  gateway: Gateway
  agent: Agent
  sms: MemoryChannel
  store: Store
  client: (user?: string, password?: string) => ClientOptions
  servicePort: number
  /** When false the "SMS" is swallowed, as if the gateway were down. */
  deliver: { on: boolean }
}

export async function rig (t: Test, o: { wakeTimeout?: string, agentDown?: boolean, relay?: Record<string, unknown> } = {}): Promise<Rig> {
  const relayX = generateRawKeyPair('x25519')
  const relayEd = generateRawKeyPair('ed25519')
  const gwX = generateRawKeyPair('x25519')

  const service = http.createServer((_req, res) => res.end(JSON.stringify({ readings: [{ mmol: 5.4 }] })))
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve))
  const servicePort = (service.address() as AddressInfo).port
  t.teardown(() => new Promise((resolve) => { service.closeAllConnections(); service.close(resolve) }))

  // The gateway's replay cache: a private temp dir, removed afterwards.
  const stateDir = mkdtempSync(join(tmpdir(), 'beckon-rig-'))
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }))
  const agent = new Agent(parseAgentConfig({ listen: '127.0.0.1:0', device: 'patient-phone', relay_keys: [relayEd.publicKey], tcp_ports: [servicePort] }), silentLogger)
  const agentAddr = await agent.listen()
  if (o.agentDown === true) await agent.close()
  else t.teardown(() => agent.close())

  const gateway = new Gateway(parseGatewayConfig({
    keys: { x25519_private: gwX.privateKey },
    trusted_relays: [relayX.publicKey],
    terminals: { '+15550100': { address: `127.0.0.1:${agentAddr.port}` } },
    connect_timeout: '2s',
    state_dir: stateDir,
  }), silentLogger)
  t.teardown(() => gateway.close())

  const deliver = { on: true }
  const sms = new MemoryChannel('sms')
  sms.onSend = (_to, token) => { if (deliver.on) void gateway.handle(token, { channel: 'memory' }) }

  const config = parseRelayConfig({
    client_listen: '127.0.0.1:0',
    dialback_listen: '127.0.0.1:0',
    public_address: '127.0.0.1',
    allow_plain_basic: true,
    keys: { x25519_private: relayX.privateKey, ed25519_private: relayEd.privateKey },
    relay_id: 'rig',
    users: {
      alice: { password_hash: await hashPassword('alice-pw'), groups: ['physicians'] },
      mallory: { password_hash: await hashPassword('mallory-pw'), groups: ['visitors'] },
    },
    devices: {
      'patient-phone': {
        msisdn: '+15550100',
        gateway_public_key: gwX.publicKey,
        wake_timeout: o.wakeTimeout ?? '3s',
        allow: [{ groups: ['physicians'], tcp: [servicePort] }],
      },
    },
    ...o.relay,
  })
  const store = await memoryStore()
  t.teardown(() => store.close())
  await store.import(config.seed, 'relay.yaml')
  const relay = new Relay({
    config,
    store,
    catalog: new Catalog({ store, prefix: config.ipsec.prefix, log: silentLogger }),
    channels: new Map([['sms', sms]]),
    log: silentLogger,
  })
  const { client } = await relay.listen()
  t.teardown(() => relay.close())
  return {
    relay, gateway, agent, sms, store, servicePort, deliver,
    client: (user = 'alice', password = 'alice-pw') => ({ relay: { host: '127.0.0.1', port: client.port }, user, password, timeoutMs: 20_000 }),
  }
}

/** One HTTP/1.0 GET over an open stream; resolves with the body. */
export function httpGet (sock: import('node:net').Socket, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = ''
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => { data += d })
    // The server closed its side; close ours, as an HTTP client does.
    sock.once('end', () => { sock.end(); resolve(data.slice(data.indexOf('\r\n\r\n') + 4)) })
    sock.once('error', reject)
    sock.resume()
    sock.write(`GET ${path} HTTP/1.0\r\nHost: patient-phone\r\n\r\n`)
  })
}
