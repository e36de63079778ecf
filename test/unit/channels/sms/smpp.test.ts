// SMS channel over SMPP on loopback: relay transmitter → lab SMSC → gateway receiver.
import t from 'tap'
import type { Test } from 'tap'
import { once } from 'node:events'
import net from 'node:net'
import smpp from 'smpp'
import { SmppBind, SmppSmsReceiver, SmppSmsSender, type ReceivedSignal } from '../../../../src/channels/sms/smpp.js'
import { Smsc } from '../../../../src/lab/smsc.js'
import { decodeSms, encodeSms, SIGNAL_PORT } from '../../../../src/channels/sms/udh.js'

const accounts = [
  { systemId: 'relay', password: 'relay-pw' },
  { systemId: 'gw', password: 'gw-pw', addressRange: '+1555' },
  { systemId: 'other', password: 'other-pw', addressRange: '+4477' },
]

async function smsc (t: Test, port = 0): Promise<{ smsc: Smsc, url: string, port: number }> {
  const s = new Smsc({ accounts })
  const p = await s.listen(port, '127.0.0.1')
  t.teardown(() => s.close())
  return { smsc: s, url: `smpp://127.0.0.1:${p}`, port: p }
}

function bind (t: Test, url: string, systemId: string, password: string, mode: 'transmitter' | 'receiver'): SmppBind {
  const b = new SmppBind({ url, systemId, password, mode, reconnect: { initialMs: 20, maxMs: 100 } })
  t.teardown(() => b.stop())
  b.start()
  return b
}

t.test('UDH port addressing', async (t) => {
  const token = Buffer.alloc(128, 7)
  const sms = encodeSms(token)
  t.equal(sms.length, 135)
  t.equal(sms.subarray(0, 7).toString('hex'), '060504405a405a', 'UDHL 6, IE 05 len 4, dst 16474, src 16474')
  t.ok(decodeSms(sms).equals(token))
  t.throws(() => encodeSms(Buffer.alloc(134)), { code: 'BECKON_ERR_SIGNAL_TOO_LARGE' })
  t.throws(() => decodeSms(Buffer.from('0605040001405aff', 'hex')), { code: 'BECKON_ERR_SMS_MALFORMED', message: /port 1 is not the signal port/ })
  t.throws(() => decodeSms(Buffer.from('00ff', 'hex')), { code: 'BECKON_ERR_SMS_MALFORMED', message: /no application port/ })
  t.throws(() => decodeSms(Buffer.from('09050400', 'hex')), { code: 'BECKON_ERR_SMS_MALFORMED', message: /longer than the message/ })
  t.throws(() => decodeSms(Buffer.from('03050900', 'hex')), { code: 'BECKON_ERR_SMS_MALFORMED', message: /overruns/ })
  t.throws(() => decodeSms(Buffer.alloc(0)), { code: 'BECKON_ERR_SMS_MALFORMED' })
  t.throws(() => decodeSms(Buffer.alloc(141)), { code: 'BECKON_ERR_SMS_MALFORMED' })
  // The port travels in the header and is checked: another application's SMS (WAP push
  // on 2948) is not taken for a signal, and the signal port is what encodeSms writes.
  const wap = encodeSms(token, 2948)
  t.equal(wap.readUInt16BE(3), 2948, 'destination port written from the argument')
  t.throws(() => decodeSms(wap), { code: 'BECKON_ERR_SMS_MALFORMED', message: /port 2948 is not the signal port 16474/ })
  t.ok(decodeSms(wap, 2948).equals(token))
  t.equal(sms.readUInt16BE(3), SIGNAL_PORT, 'signals go to the signal port')
  // Other IEs before the port IE are skipped, not mistaken for it.
  const withConcat = Buffer.concat([Buffer.from('0b0003aa0101050400000000', 'hex'), token.subarray(0, 10)])
  withConcat.writeUInt16BE(SIGNAL_PORT, 8)
  t.ok(decodeSms(withConcat).equals(token.subarray(0, 10)), 'port IE found after a concatenation IE')
})

t.test('a signal travels transmitter → SMSC → receiver, routed by destination', async (t) => {
  const { url } = await smsc(t)
  const tx = bind(t, url, 'relay', 'relay-pw', 'transmitter')
  const rxBind = bind(t, url, 'gw', 'gw-pw', 'receiver')
  const otherBind = bind(t, url, 'other', 'other-pw', 'receiver')
  let otherGot = 0
  otherBind.on('deliver', () => otherGot++)
  const rx = new SmppSmsReceiver(rxBind)
  await Promise.all([tx.waitBound(2000), rxBind.waitBound(2000), otherBind.waitBound(2000)])
  const token = Buffer.from('00'.repeat(20) + 'ff'.repeat(80), 'hex')
  const got = once(rx, 'signal') as Promise<[ReceivedSignal]>
  const id = await new SmppSmsSender(tx, 'beckon').sendSignal('+15550100', token)
  t.match(id, /^\d+$/, 'SMSC returned a message id')
  const [sig] = await got
  t.ok(sig.token.equals(token), 'binary payload intact (NULs and 0xff included)')
  t.equal(sig.to, '+15550100')
  t.equal(sig.from, 'beckon')
  t.equal(otherGot, 0, 'a receiver for another range got nothing')
})

t.test('store and forward: submitted before the receiver binds, delivered when it does', async (t) => {
  const { url, smsc: s } = await smsc(t)
  const tx = bind(t, url, 'relay', 'relay-pw', 'transmitter')
  await tx.waitBound(2000)
  await new SmppSmsSender(tx, 'beckon').sendSignal('+15550100', Buffer.alloc(50, 1))
  t.equal(s.queued, 1, 'queued while no receiver is bound')
  const delivered = once(s, 'deliver')
  const rx = new SmppSmsReceiver(bind(t, url, 'gw', 'gw-pw', 'receiver'))
  const [sig] = await once(rx, 'signal') as [ReceivedSignal]
  t.equal(sig.token.length, 50)
  await delivered
  t.equal(s.queued, 0, 'acknowledged delivery leaves the queue')
})

t.test('malformed SMS reaches the receiver as a coded invalid event', async (t) => {
  const { url } = await smsc(t)
  const tx = bind(t, url, 'relay', 'relay-pw', 'transmitter')
  const rx = new SmppSmsReceiver(bind(t, url, 'gw', 'gw-pw', 'receiver'))
  await tx.waitBound(2000)
  await rx.bind.waitBound(2000)
  const invalid = once(rx, 'invalid') as Promise<[{ code: string }, { to: string }]>
  const raw = Buffer.from('hello, not a signal')
  let delivered: Buffer | undefined
  rx.bind.once('deliver', (m: { sms: Buffer }) => { delivered = m.sms })
  await tx.submit('+15550100', 'x', raw)
  const [err, meta] = await invalid
  t.ok(delivered?.equals(raw), 'octets arrive exactly as submitted, malformed header and all')
  t.equal(err.code, 'BECKON_ERR_SMS_MALFORMED')
  t.equal(meta.to, '+15550100')
})

t.test('wrong password: bind refused, sending fails with a coded error', async (t) => {
  const { url } = await smsc(t)
  const tx = bind(t, url, 'relay', 'WRONG', 'transmitter')
  await t.rejects(tx.waitBound(300), { code: 'BECKON_ERR_CHANNEL_UNAVAILABLE' })
  await t.rejects(new SmppSmsSender(tx, 'b').sendSignal('+15550100', Buffer.alloc(10)), { code: 'BECKON_ERR_CHANNEL_UNAVAILABLE' })
  const receiverSubmit = bind(t, url, 'gw', 'gw-pw', 'receiver')
  await receiverSubmit.waitBound(2000)
  await t.rejects(receiverSubmit.submit('+1', 'x', Buffer.alloc(1)), { code: 'BECKON_ERR_CHANNEL_REFUSED' }, 'a receiver may not submit')
})

t.test('SMSC restart: binds come back by themselves', async (t) => {
  const first = await smsc(t)
  const tx = bind(t, first.url, 'relay', 'relay-pw', 'transmitter')
  await tx.waitBound(2000)
  const unbound = once(tx, 'unbound')
  await first.smsc.close()
  await unbound
  const again = new Smsc({ accounts })
  await again.listen(first.port, '127.0.0.1')
  t.teardown(() => again.close())
  await tx.waitBound(3000)
  t.ok(tx.bound, 'rebound after the SMSC came back')
})

t.test('garbage bytes to the SMSC close only that connection', async (t) => {
  const { url, port } = await smsc(t)
  const tx = bind(t, url, 'relay', 'relay-pw', 'transmitter')
  await tx.waitBound(2000)
  const sock = net.connect(port, '127.0.0.1')
  await once(sock, 'connect')
  sock.write(Buffer.from('ffffffff00000000', 'hex')) // command_length 4 GiB
  await once(sock, 'close')
  t.pass('the offending connection was closed')
  t.match(await tx.submit('+15550100', 'x', encodeSms(Buffer.alloc(5))), /^\d+$/, 'other binds unaffected')
})

t.test('submits are windowed: several in flight, never more than the window, the rest wait in order', async (t) => {
  // An SMSC stub that holds every submit_sm_resp until told, so the window is visible.
  const held: Array<() => void> = []
  let outstanding = 0
  let peak = 0
  const order: string[] = []
  const server = smpp.createServer((s: smpp.Session) => {
    s.on('error', () => {})
    s.on('bind_transmitter', (pdu: smpp.PDU) => s.send(pdu.response({ system_id: 'stub' })))
    s.on('enquire_link', (pdu: smpp.PDU) => s.send(pdu.response()))
    s.on('unbind', (pdu: smpp.PDU) => { s.send(pdu.response()); s.close() })
    s.on('submit_sm', (pdu: smpp.PDU) => {
      outstanding++
      peak = Math.max(peak, outstanding)
      order.push(pdu.destination_addr ?? '')
      held.push(() => { outstanding--; s.send(pdu.response({ message_id: pdu.destination_addr })) })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of server.sessions) s.destroy(); server.close() })
  const url = `smpp://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const tx = new SmppBind({ url, systemId: 'relay', password: 'pw', mode: 'transmitter', window: 4, maxWaiting: 8 })
  t.teardown(() => tx.stop())
  tx.start()
  await tx.waitBound(2000)
  const sends = Array.from({ length: 12 }, (_, i) => tx.submit(`+1555${i}`, 'beckon', Buffer.alloc(20, i)))
  // Past window + waiting: refused at once, with a code.
  await t.rejects(tx.submit('+1555overflow', 'beckon', Buffer.alloc(20)), { code: 'BECKON_ERR_CHANNEL_UNAVAILABLE', message: /window full/ })
  while (held.length < 4) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(outstanding, 4, 'four submit_sm in flight before any answer')
  // Answer them one by one; each answer lets exactly one waiting submit out.
  while (held.length > 0) {
    held.shift()!()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const ids = await Promise.all(sends)
  t.same(ids, Array.from({ length: 12 }, (_, i) => `+1555${i}`), 'each caller gets its own message id')
  t.equal(peak, 4, 'never more than the window in flight')
  t.equal(tx.maxInFlight, 4)
  t.same(order, ids, 'waiting submits leave in the order they came')
})
