/**
 * The terminal's agent: listens on the predetermined port for the gateway (E/F), acts
 * only on a descriptor signed by a trusted relay, for this device, unexpired and not
 * seen before, and only for services its own policy exposes.
 *
 * Raw mode (tcp): connects the stream to 127.0.0.1:<port>. IPsec mode is added by the
 * IPsec bridge; the agent answers it with a refusal until then.
 */
import type { KeyObject } from 'node:crypto'
import net, { type AddressInfo, type Socket } from 'node:net'
import { Fields, type Obj } from '../../core/config.js'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { publicKeyFromRaw } from '../../core/keys.js'
import type { Logger } from '../../core/log.js'
import { connectTcp, splice } from '../../core/stream.js'
import { encodeReply, readDescriptorFrame, verifyDescriptor, type Descriptor } from '../../proto/descriptor/descriptor.js'

export interface AgentConfig {
  listen: { host: string, port: number }
  device: string
  relayKeys: KeyObject[]
  /** Local services reachable in raw mode. */
  tcpPorts: number[]
  serviceHost: string
  descriptorTimeoutMs: number
}

export function parseAgentConfig (obj: Obj, source = 'agent.yaml'): AgentConfig {
  const f = new Fields(obj, source)
  const keys = f.strList('relay_keys')
  if (keys.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${source}.relay_keys must name at least one Ed25519 key`)
  return {
    listen: f.hostPort('listen', '0.0.0.0:7400'),
    device: f.str('device'),
    relayKeys: keys.map((k, i) => publicKeyFromRaw('ed25519', k, `${source}.relay_keys[${i}]`)),
    tcpPorts: f.strList('tcp_ports', []).map(Number),
    serviceHost: f.ip('service_host', '127.0.0.1'),
    descriptorTimeoutMs: f.ms('descriptor_timeout', 15_000),
  }
}

export interface AgentStats { accepted: number, refused: Record<string, number>, active: number }

export class Agent {
  readonly stats: AgentStats = { accepted: 0, refused: {}, active: 0 }
  private readonly server: net.Server
  private readonly seen = new Map<string, number>()
  private readonly sockets = new Set<Socket>()

  constructor (private readonly cfg: AgentConfig, private readonly log: Logger, private readonly now: () => number = Date.now) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => { void this.onConnection(s) })
  }

  listen (): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.cfg.listen.port, this.cfg.listen.host, () => {
        const a = this.server.address() as AddressInfo
        this.log.info({ listen: `${a.address}:${a.port}`, device: this.cfg.device }, 'agent listening')
        resolve(a)
      })
    })
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }

  private track (s: Socket): void {
    s.on('error', () => {})
    this.sockets.add(s)
    s.once('close', () => this.sockets.delete(s))
  }

  private async onConnection (sock: Socket): Promise<void> {
    this.track(sock)
    sock.pause()
    let log = this.log.child({ peer: sock.remoteAddress })
    try {
      const frame = await readDescriptorFrame(sock, this.cfg.descriptorTimeoutMs)
      const nowSec = Math.floor(this.now() / 1000)
      const d = verifyDescriptor(frame, { keys: this.cfg.relayKeys, now: nowSec, device: this.cfg.device })
      log = log.child({ session: d.session, user: d.user })
      this.admit(d, nowSec)
      const service = await this.open(d)
      this.track(service)
      sock.write(encodeReply({ ready: true, info: { mode: d.mode } }))
      this.stats.accepted++
      this.stats.active++
      log.info({ mode: d.mode, port: d.port }, 'agent: session open')
      const moved = await splice(sock, service)
      this.stats.active--
      log.info(moved, 'agent: session closed')
    } catch (err) {
      const e = toBeckonError(err, 'BECKON_ERR_PROTOCOL')
      this.stats.refused[e.code] = (this.stats.refused[e.code] ?? 0) + 1
      log.warn({ code: e.code, err: e.message }, 'agent: session refused')
      if (sock.writable) sock.end(encodeReply({ ready: false, code: e.code, message: e.message }))
      else sock.destroy()
    }
  }

  /** A descriptor is good once: a replayed frame is refused until it expires. */
  private admit (d: Descriptor, nowSec: number): void {
    for (const [id, exp] of this.seen) if (exp <= nowSec) this.seen.delete(id)
    if (this.seen.has(d.session)) throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', `session ${d.session} already used`)
    this.seen.set(d.session, d.expires)
  }

  private async open (d: Descriptor): Promise<Socket> {
    if (d.mode !== 'tcp') throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', 'IPsec mode is not enabled on this agent')
    if (!this.cfg.tcpPorts.includes(d.port!)) throw new BeckonError('BECKON_ERR_FORBIDDEN', `port ${d.port} is not exposed by this terminal`)
    try {
      return await connectTcp(this.cfg.serviceHost, d.port!, 3_000)
    } catch (err) {
      throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', `service ${this.cfg.serviceHost}:${d.port}: ${toBeckonError(err).message}`)
    }
  }
}
