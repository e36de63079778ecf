// Two relays sharing one PostgreSQL (Debian's, started privately on loopback): a device
// created through relay A's management API is reachable through relay B at once; B's
// session shows in A's session list; a kill asked of A ends the session B holds.
//
//   client ──CONNECT──▶ relay B ─┐                ┌── relay A ◀── API: gateway, user, device, policy
//                                └── PostgreSQL ──┘
//   relay B ──"SMS"──▶ gateway ──▶ agent ──▶ service;  gateway ──dial-back──▶ relay B
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildApi } from '../../../src/api/app.js'
import { newToken } from '../../../src/api/auth.js'
import { MemoryChannel } from '../../../src/channels/channel.js'
import { waitFor } from '../../../src/core/exec.js'
import { generateRawKeyPair } from '../../../src/core/keys.js'
import { silentLogger } from '../../../src/core/log.js'
import { Agent, parseAgentConfig } from '../../../src/roles/agent/agent.js'
import { openSession } from '../../../src/roles/client/client.js'
import { Gateway, parseGatewayConfig } from '../../../src/roles/gateway/gateway.js'
import { Catalog } from '../../../src/roles/relay/catalog.js'
import { parseRelayConfig } from '../../../src/roles/relay/config.js'
import { Relay } from '../../../src/roles/relay/relay.js'
import { openStore } from '../../../src/store/open.js'
import { httpGet } from '../../helpers/rendezvous.js'
import { startPostgres } from '../../helpers/postgres.js'

t.test('a device added through one relay is reachable through the other', async (t) => {
  const pg = await startPostgres(t)
  const relayKeys = { a: { x: generateRawKeyPair('x25519'), ed: generateRawKeyPair('ed25519') }, b: { x: generateRawKeyPair('x25519'), ed: generateRawKeyPair('ed25519') } }
  const gwX = generateRawKeyPair('x25519')

  const service = http.createServer((_req, res) => res.end(JSON.stringify({ readings: [{ mmol: 6.1 }] })))
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve))
  const servicePort = (service.address() as AddressInfo).port
  t.teardown(() => new Promise((resolve) => { service.closeAllConnections(); service.close(resolve) }))
  const agent = new Agent(parseAgentConfig({ listen: '127.0.0.1:0', device: 'patient-phone', relay_keys: [relayKeys.a.ed.publicKey, relayKeys.b.ed.publicKey], tcp_ports: [servicePort] }), silentLogger)
  const agentAddr = await agent.listen()
  t.teardown(() => agent.close())
  const gateway = new Gateway(parseGatewayConfig({
    keys: { x25519_private: gwX.privateKey },
    trusted_relays: [relayKeys.a.x.publicKey, relayKeys.b.x.publicKey],
    terminals: { '+15550100': { address: `127.0.0.1:${agentAddr.port}` } },
    connect_timeout: '2s',
    state_dir: t.testdir(),
  }), silentLogger)
  t.teardown(() => gateway.close())

  const relays = {} as Record<'a' | 'b', { relay: Relay, port: number, store: Awaited<ReturnType<typeof openStore>> }>
  for (const id of ['a', 'b'] as const) {
    const store = await openStore({ postgres: pg.url })
    t.teardown(() => store.close())
    const config = parseRelayConfig({
      client_listen: '127.0.0.1:0', dialback_listen: '127.0.0.1:0', public_address: '127.0.0.1', allow_plain_basic: true, relay_id: `relay-${id}`,
      keys: { x25519_private: relayKeys[id].x.privateKey, ed25519_private: relayKeys[id].ed.privateKey },
    })
    const sms = new MemoryChannel('sms')
    sms.onSend = (_to, token) => { void gateway.handle(token, { channel: 'memory' }) }
    const relay = new Relay({ config, store, catalog: new Catalog({ store, prefix: config.ipsec.prefix, log: silentLogger }), channels: new Map([['sms', sms]]), log: silentLogger })
    const { client } = await relay.listen()
    t.teardown(() => relay.close())
    relays[id] = { relay, port: client.port, store }
  }

  // Everything through relay A's API.
  const api = await buildApi({ store: relays.a.store, log: silentLogger, secure: true, ipsecPrefix: 'fd00:beca::/48', quiet: true, sessions: { kill: (id, r, a) => relays.a.relay.kill(id, r, a), live: (id) => relays.a.relay.session(id) } })
  t.teardown(() => api.close())
  const { token, record } = newToken('test', ['admin'])
  await relays.a.store.put('token', record.id, record, 'test')
  const call = async (method: 'POST' | 'PUT' | 'GET' | 'DELETE', url: string, payload?: unknown): Promise<{ statusCode: number, json: () => any }> =>
    await api.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as object }) })
  t.equal((await call('POST', '/v1/gateways', { name: 'carrier-gw', public_key: gwX.publicKey })).statusCode, 201)
  t.equal((await call('POST', '/v1/groups', { name: 'physicians' })).statusCode, 201)
  t.equal((await call('POST', '/v1/users', { name: 'alice', password: 'alice-password', groups: ['physicians'] })).statusCode, 201)
  t.equal((await call('POST', '/v1/devices', { name: 'patient-phone', gateway: 'carrier-gw', msisdn: '+15550100', wake_timeout_ms: 3000 })).statusCode, 201)
  const pol = await call('PUT', '/v1/devices/patient-phone/policy', { raw_tcp: true, rules: [{ groups: ['physicians'], ports: [servicePort], ipsec: false, raw_tcp: true }] })
  t.equal(pol.statusCode, 200, JSON.stringify(pol.json()))

  // …and the session through relay B.
  const s = await openSession({ relay: { host: '127.0.0.1', port: relays.b.port }, user: 'alice', password: 'alice-password', timeoutMs: 10_000 }, `patient-phone:${servicePort}`, () => {})
  t.same(JSON.parse(await httpGet(s.socket)), { readings: [{ mmol: 6.1 }] }, 'the service answered through relay B')
  const listed = (await call('GET', '/v1/sessions')).json() as Array<Record<string, unknown>>
  t.match(listed[0], { id: s.session, relay: 'relay-b', user: 'alice', device: 'patient-phone' }, 'relay A lists the session relay B held')

  // A kill asked of A, for a session B holds: flagged in the store, ended by B's poll.
  const s2 = await openSession({ relay: { host: '127.0.0.1', port: relays.b.port }, user: 'alice', password: 'alice-password', timeoutMs: 10_000 }, `patient-phone:${servicePort}`, () => {})
  await waitFor('B to mark the session connected', async () => (await relays.b.store.getSession(s2.session))?.stage === 'connected', 5_000)
  const kill = await call('DELETE', `/v1/sessions/${s2.session}`)
  t.equal(kill.statusCode, 202, 'accepted: another relay holds it')
  t.match(kill.json(), { relay: 'relay-b' })
  // The client's socket is half-close capable: the relay's close shows as 'end'.
  const closed = new Promise((resolve) => { s2.socket.once('end', resolve); s2.socket.once('close', resolve) })
  s2.socket.resume()
  await relays.b.relay.pollKills()
  await closed
  await waitFor('the end to be recorded', async () => (await relays.a.store.getSession(s2.session))?.ended_at !== undefined, 5_000)
  t.match(await relays.a.store.getSession(s2.session), { outcome: 'BECKON_ERR_SESSION_ENDED', reason: 'ended by an operator' })
})
