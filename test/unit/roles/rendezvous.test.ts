// Relay + gateway + agent + client on loopback (tier 2). The namespace lab repeats
// this over real SMPP, nftables and separate processes (test/netns/lab.test.ts).
import t from 'tap'
import { openSession } from '../../../src/roles/client/client.js'
import { rig, httpGet } from '../../helpers/rendezvous.js'

t.test('CONNECT → signal → dial-back → descriptor → 200 → service bytes', async (t) => {
  const r = await rig(t)
  const stages: string[] = []
  const s = await openSession(r.client(), `patient-phone:${r.servicePort}`, (st) => stages.push(st))
  t.same(stages, ['connecting', 'requested', 'signalled', 'called-back', 'connected'])
  t.equal(s.channel, 'sms')
  t.match(s.session, /^[0-9a-f]{24}$/)
  t.same(JSON.parse(await httpGet(s.socket)), { readings: [{ mmol: 5.4 }] })
  t.equal(r.agent.stats.accepted, 1)
  t.equal(r.sms.sent.length, 1)
  t.ok(r.sms.sent[0]!.token.length <= 128, 'the token fits one SMS')
})

t.test('refusals carry the statuses and codes the architecture lists', async (t) => {
  const r = await rig(t, { wakeTimeout: '300ms' })
  const cases: Array<[string, () => ReturnType<typeof openSession>, string]> = [
    ['wrong password', () => openSession(r.client('alice', 'nope'), `patient-phone:${r.servicePort}`), 'BECKON_ERR_AUTH_FAILED'],
    ['no credentials', () => openSession({ ...r.client(), user: undefined }, `patient-phone:${r.servicePort}`), 'BECKON_ERR_AUTH_REQUIRED'],
    ['unknown device', () => openSession(r.client(), 'no-such-phone:80'), 'BECKON_ERR_UNKNOWN_DEVICE'],
    ['user without access', () => openSession(r.client('mallory', 'mallory-pw'), `patient-phone:${r.servicePort}`), 'BECKON_ERR_FORBIDDEN'],
    ['port not allowed', () => openSession(r.client(), 'patient-phone:22'), 'BECKON_ERR_FORBIDDEN'],
    ['bad target', () => openSession(r.client(), 'Patient_Phone:x'), 'BECKON_ERR_BAD_REQUEST'],
  ]
  for (const [what, fn, code] of cases) await t.rejects(fn(), { code }, what)
  t.equal(r.sms.sent.length, 0, 'no signal was sent for any refused request')

  r.deliver.on = false
  const t0 = Date.now()
  await t.rejects(openSession(r.client(), `patient-phone:${r.servicePort}`), { code: 'BECKON_ERR_WAKE_TIMEOUT', httpStatus: 504 }, 'gateway silent → 504')
  t.ok(Date.now() - t0 >= 300, 'after the wake timeout')
})

t.test('terminal agent down → 502 promptly', async (t) => {
  const r = await rig(t, { agentDown: true, wakeTimeout: '10s' })
  const t0 = Date.now()
  await t.rejects(openSession(r.client(), `patient-phone:${r.servicePort}`), { code: 'BECKON_ERR_TERMINAL_UNREACHABLE', httpStatus: 502 })
  t.ok(Date.now() - t0 < 5_000, 'long before the wake timeout')
})

t.test('a replayed token is refused by the gateway and dials nothing', async (t) => {
  const r = await rig(t)
  const s = await openSession(r.client(), `patient-phone:${r.servicePort}`)
  s.socket.destroy()
  const dialbacks = r.gateway.stats.dialbacks
  await r.gateway.handle(r.sms.sent[0]!.token, { channel: 'test' })
  t.equal(r.gateway.stats.refused.BECKON_ERR_SIGNAL_REPLAYED, 1)
  t.equal(r.gateway.stats.dialbacks, dialbacks, 'no dial-back for the replay')
  const forged = Buffer.from(r.sms.sent[0]!.token)
  forged[40]! ^= 0xff
  await r.gateway.handle(forged, { channel: 'test' })
  t.equal(r.gateway.stats.refused.BECKON_ERR_SIGNAL_FORGED, 1)
})

t.test('50 concurrent sessions all succeed and all close', async (t) => {
  const r = await rig(t)
  const sessions = await Promise.all(Array.from({ length: 50 }, async () => {
    const s = await openSession(r.client(), `patient-phone:${r.servicePort}`)
    return JSON.parse(await httpGet(s.socket)) as unknown
  }))
  t.equal(sessions.length, 50)
  t.ok(sessions.every((b) => JSON.stringify(b) === '{"readings":[{"mmol":5.4}]}'))
  t.equal(r.agent.stats.accepted, 50)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(r.relay.stats.active, 0, 'relay: no session left open')
  t.equal(r.relay.stats.pending, 0, 'relay: nothing waiting')
  t.equal(r.gateway.stats.active, 0, 'gateway: no splice left')
  t.equal(r.agent.stats.active, 0, 'agent: no splice left')
})

t.test('half-close passes through every hop: the reply after the client\'s FIN arrives', async (t) => {
  const r = await rig(t)
  const s = await openSession(r.client(), `patient-phone:${r.servicePort}`)
  let data = ''
  s.socket.setEncoding('utf8')
  s.socket.on('data', (d: string) => { data += d })
  s.socket.resume()
  // HTTP/1.0 request, then shut down our write side before the answer comes back.
  s.socket.end('GET / HTTP/1.0\r\nHost: x\r\n\r\n')
  await new Promise((resolve) => s.socket.once('end', resolve))
  t.match(data, /^HTTP\/1\.1 200 OK/, 'response received after our FIN')
  t.match(data, /"mmol":5\.4/)
})

t.test('garbage at every listener closes only that connection', async (t) => {
  const r = await rig(t)
  const { default: net } = await import('node:net')
  const exchange = (port: number, bytes: Buffer | string): Promise<Buffer> => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes))
    const got: Buffer[] = []
    s.on('data', (d: Buffer) => got.push(d))
    s.on('error', () => {})
    s.on('close', () => resolve(Buffer.concat(got)))
    setTimeout(() => s.destroy(), 6_000)
  })
  const addr = (srv: unknown): number => ((srv as { address: () => { port: number } }).address()).port
  const relayClient = addr((r.relay as any).clientServer)
  const relayDialback = addr((r.relay as any).dialbackServer)
  const agentPort = addr((r.agent as any).server)

  t.match((await exchange(relayClient, 'HELLO WORLD\r\n\r\n')).toString(), /^HTTP\/1\.1 400 Bad Request[\s\S]*BECKON_ERR_BAD_REQUEST/, 'relay: 400 for a malformed request')
  t.match((await exchange(relayClient, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')).toString(), /^HTTP\/1\.1 405/, 'relay: 405 for non-CONNECT')
  t.equal((await exchange(relayDialback, Buffer.alloc(50, 0x41))).toString('hex'), '424b414b01', 'relay dial-back port: refused ack')
  t.equal((await exchange(relayDialback, Buffer.concat([Buffer.from('BKDB'), Buffer.from([1, 0]), Buffer.alloc(44)]))).toString('hex'), '424b414b01', 'unknown session: refused')
  t.match((await exchange(agentPort, Buffer.alloc(100, 0x42))).toString(), /BECKON_ERR_DESCRIPTOR_INVALID/, 'agent: refuses a non-descriptor')
  t.equal(r.relay.stats.dialbacksRefused, 2)
  const s = await openSession(r.client(), `patient-phone:${r.servicePort}`)
  t.match(await httpGet(s.socket), /mmol/, 'and a real session still works')
})

t.test('Basic over plain TCP is refused unless allowed; rate limit 429; overload 503', async (t) => {
  const plain = await rig(t, { relay: { allow_plain_basic: false } })
  await t.rejects(openSession(plain.client(), `patient-phone:${plain.servicePort}`), { code: 'BECKON_ERR_INSECURE_CREDENTIALS', httpStatus: 403 })
  t.equal(plain.sms.sent.length, 0)

  const limited = await rig(t, { relay: { rate_per_user_per_minute: 2 } })
  for (let i = 0; i < 2; i++) (await openSession(limited.client(), `patient-phone:${limited.servicePort}`)).socket.destroy()
  await t.rejects(openSession(limited.client(), `patient-phone:${limited.servicePort}`), { code: 'BECKON_ERR_RATE_LIMITED', httpStatus: 429 })

  const busy = await rig(t, { relay: { max_pending: 1 }, wakeTimeout: '2s' })
  busy.deliver.on = false
  const waiting = openSession(busy.client(), `patient-phone:${busy.servicePort}`).catch((e: unknown) => e)
  await new Promise((resolve) => setTimeout(resolve, 200))
  await t.rejects(openSession(busy.client(), `patient-phone:${busy.servicePort}`), { code: 'BECKON_ERR_OVERLOADED', httpStatus: 503 })
  t.match(await waiting, { code: 'BECKON_ERR_WAKE_TIMEOUT' })
})
