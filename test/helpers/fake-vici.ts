/**
 * A scriptable VICI server on a unix socket, for connection-layer tests.
 * Real charon is used by test/netns; this one lets a test misbehave on purpose.
 */
import net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodePacket, encodePacket, type Packet, type ViciInput } from '../../src/proto/vici/codec.js'

export type Handler = (p: Packet, peer: FakePeer) => void

export class FakePeer {
  constructor (readonly sock: net.Socket) {}

  send (p: Packet<ViciInput>): void {
    this.raw(segment(encodePacket(p)))
  }

  raw (b: Buffer): void {
    this.sock.write(b)
  }
}

export function segment (data: Buffer): Buffer {
  const h = Buffer.alloc(4)
  h.writeUInt32BE(data.length)
  return Buffer.concat([h, data])
}

export class FakeVici {
  readonly dir = mkdtempSync(join(tmpdir(), 'beckon-fakevici-'))
  readonly path = join(this.dir, 'vici.sock')
  readonly received: Packet[] = []
  connections = 0
  private server: net.Server | undefined
  private readonly socks = new Set<net.Socket>()

  private tcpPort = 0

  /** `tcp: true` listens on 127.0.0.1 (charon's tcp:// VICI socket) instead of a path. */
  constructor (public handler: Handler, private readonly tcp = false) {}

  get uri (): string { return this.tcp ? `tcp://127.0.0.1:${this.tcpPort}` : `unix://${this.path}` }

  async start (): Promise<void> {
    const server = net.createServer((sock) => {
      this.connections++
      this.socks.add(sock)
      sock.on('close', () => this.socks.delete(sock))
      sock.on('error', () => {})
      const peer = new FakePeer(sock)
      let rx = Buffer.alloc(0)
      sock.on('data', (chunk) => {
        rx = Buffer.concat([rx, chunk])
        while (rx.length >= 4 && rx.length >= 4 + rx.readUInt32BE(0)) {
          const len = rx.readUInt32BE(0)
          const p = decodePacket(rx.subarray(4, 4 + len))
          rx = rx.subarray(4 + len)
          this.received.push(p)
          this.handler(p, peer)
        }
      })
    })
    if (this.tcp) {
      await new Promise<void>((resolve) => server.listen(this.tcpPort, '127.0.0.1', resolve))
      this.tcpPort = (server.address() as net.AddressInfo).port
    } else {
      await new Promise<void>((resolve) => server.listen(this.path, resolve))
    }
    this.server = server
  }

  /** Stops listening and drops every client (as a dying charon would). */
  async stop (): Promise<void> {
    for (const s of this.socks) s.destroy()
    await new Promise<void>((resolve) => this.server === undefined ? resolve() : this.server.close(() => resolve()))
    this.server = undefined
  }

  async cleanup (): Promise<void> {
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Answers like charon: commands echo {cmd=<name>}, registrations are confirmed. */
export const echoHandler: Handler = (p, peer) => {
  if (p.type === 0) peer.send({ type: 1, message: { cmd: p.name } })
  else if (p.type === 3 || p.type === 4) peer.send({ type: 5 })
}
