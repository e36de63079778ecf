// Two bridges joined by a loopback TCP connection; UDP sockets stand in for the charons.
import t from 'tap'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { Rfc8229Bridge } from '../../../../src/proto/rfc8229/bridge.js'
import { PREFIX, encodeFrame } from '../../../../src/proto/rfc8229/framing.js'

import { ike, portOf, tcpPair, udp } from '../../../helpers/sockets.js'

t.test('datagrams cross both ways between the pinned charons', async (t) => {
  const [c, s] = await tcpPair(t)
  const charonA = await udp(t) // initiator side (client)
  const charonB = await udp(t) // responder side (agent): the bridge sends to it first
  const bA = await Rfc8229Bridge.open({ stream: c, originator: true, charon: { host: '127.0.0.1', port: portOf(charonA) } })
  const bB = await Rfc8229Bridge.open({ stream: s, originator: false, charon: { host: '127.0.0.1', port: portOf(charonB) } })
  t.teardown(() => { bA.close(); bB.close() })

  const gotB = once(charonB, 'message') as Promise<[Buffer, dgram.RemoteInfo]>
  charonA.send(ike(1), bA.port, '127.0.0.1')
  const [m1, from1] = await gotB
  t.ok(m1.equals(ike(1)), 'IKE datagram arrived intact at the responder')
  t.equal(from1.port, bB.port, 'from the responder bridge')

  const gotA = once(charonA, 'message') as Promise<[Buffer]>
  charonB.send(ike(2), bB.port, '127.0.0.1')
  t.ok((await gotA)[0].equals(ike(2)), 'reply went back to the initiator charon')

  charonA.send(Buffer.from([0xff]), bA.port, '127.0.0.1')
  const [ka] = await once(charonB, 'message') as [Buffer]
  t.equal(ka.toString('hex'), 'ff', 'NAT keepalive passed through')
  t.equal(bA.stats.keepalives, 1)
})

t.test('another local sender cannot inject into the tunnel or steer its replies', async (t) => {
  const [c, s] = await tcpPair(t)
  const charonA = await udp(t)
  const charonB = await udp(t)
  const bA = await Rfc8229Bridge.open({ stream: c, originator: true, charon: { host: '127.0.0.1', port: portOf(charonA) } })
  const bB = await Rfc8229Bridge.open({ stream: s, originator: false, charon: { host: '127.0.0.1', port: portOf(charonB) } })
  t.teardown(() => { bA.close(); bB.close() })
  let strangerGot = 0
  let charonBGot: Buffer[] = []
  const stranger = await udp(t)
  stranger.on('message', () => strangerGot++)
  charonB.on('message', (m: Buffer) => charonBGot.push(m))
  // Before: the bridge took whoever wrote first (or last) for its charon.
  stranger.send(ike(66), bA.port, '127.0.0.1')
  charonA.send(ike(1), bA.port, '127.0.0.1')
  while (charonBGot.length === 0) await once(charonB, 'message')
  t.same(charonBGot.map((m) => m[4]), [1], 'only charon\'s datagram crossed')
  const gotA = once(charonA, 'message') as Promise<[Buffer]>
  charonB.send(ike(2), bB.port, '127.0.0.1')
  t.ok((await gotA)[0].equals(ike(2)), 'the reply went to charon')
  t.equal(strangerGot, 0, 'and not to the stranger')
  charonBGot = []
  t.equal(bA.stats.toStream, 1, 'one datagram framed')
})

t.test('a UDP side that has not drained pauses the stream, then resumes; every frame handed on', async (t) => {
  const [c, s] = await tcpPair(t)
  const charon = await udp(t)
  const b = await Rfc8229Bridge.open({ stream: s, originator: false, charon: { host: '127.0.0.1', port: portOf(charon) }, maxQueueBytes: 8 * 1024 })
  t.teardown(() => b.close())
  let got = 0
  charon.on('message', () => { got++ })
  const esp = Buffer.concat([Buffer.from('c0ffee0100000001', 'hex'), Buffer.alloc(1000, 7)])
  // One write of 300 frames: one 'data' event holds far more than the 8 KiB allowed in flight.
  c.write(Buffer.concat([PREFIX, ...Array.from({ length: 300 }, () => encodeFrame(esp))]))
  // The bridge's promise is what it hands to the kernel; whether loopback UDP then keeps
  // every datagram depends on the receiver's buffer (rmem_max), which is not the bridge's.
  const deadline = Date.now() + 10_000
  while (b.stats.fromStream < 300 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(b.stats.fromStream, 300, 'every frame was handed to charon after resuming')
  t.ok(b.stats.paused > 0, `the stream was paused ${b.stats.paused} times`)
  t.ok(got > 0, `charon received datagrams (${got})`)
  t.equal(s.isPaused(), false, 'reading resumed once drained')
})

t.test('a malformed stream closes the bridge with a coded error', async (t) => {
  const [c, s] = await tcpPair(t)
  const b = await Rfc8229Bridge.open({ stream: s, originator: false, charon: { host: '127.0.0.1', port: 4500 } })
  const closed = once(b, 'close') as Promise<[{ code: string } | undefined]>
  c.write('GET / HTTP/1.1\r\n\r\n')
  const [err] = await closed
  t.equal(err?.code, 'BECKON_ERR_RFC8229_MALFORMED')
  t.ok(s.destroyed, 'the stream was closed')
})

t.test('a stream that cannot keep up drops datagrams instead of buffering', async (t) => {
  const [c, s] = await tcpPair(t)
  c.pause() // the far end stops reading
  const charon = await udp(t)
  const b = await Rfc8229Bridge.open({ stream: s, originator: false, charon: { host: '127.0.0.1', port: portOf(charon) }, maxQueueBytes: 64 * 1024 })
  t.teardown(() => b.close())
  const esp = Buffer.alloc(1400, 7)
  // Paced so the bridge (not the kernel's UDP buffer) sees the datagrams: ~40 MB in all,
  // more than loopback TCP buffers absorb.
  for (let batch = 0; batch < 300 && b.stats.dropped === 0; batch++) {
    for (let i = 0; i < 100; i++) charon.send(esp, b.port, '127.0.0.1')
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  t.ok(b.stats.dropped > 0, `dropped ${b.stats.dropped} datagrams`)
  t.ok(s.writableLength <= 64 * 1024 + 1402, `write queue bounded (${s.writableLength} bytes)`)
})
