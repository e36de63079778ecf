/** Loopback sockets for bridge tests: a UDP socket standing in for charon, a TCP pair. */
import type { Test } from 'tap'
import dgram from 'node:dgram'
import net, { type AddressInfo } from 'node:net'
import { once } from 'node:events'

export async function udp (t: Test): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
  t.teardown(() => { try { s.close() } catch {} })
  return s
}

export async function tcpPair (t: Test): Promise<[net.Socket, net.Socket]> {
  const srv = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>
  const c = net.connect((srv.address() as AddressInfo).port, '127.0.0.1')
  const [s] = await accepted
  await once(c, 'connect').catch(() => {})
  t.teardown(() => { c.destroy(); s.destroy(); srv.close() })
  return [c, s]
}

/** An IKE datagram: the 4-byte non-ESP marker, then filler. */
export const ike = (n: number): Buffer => Buffer.concat([Buffer.alloc(4), Buffer.alloc(28, n)])
export const portOf = (s: dgram.Socket): number => (s.address() as AddressInfo).port
