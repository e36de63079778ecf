/**
 * The terminal's agent: listens on the predetermined port for the gateway (E/F), acts
 * only on a descriptor signed by a trusted relay, for this device, unexpired and not
 * seen before, and only for services its own policy exposes.
 *
 * Raw mode (tcp): connects the stream to 127.0.0.1:<port>.
 * IPsec mode: unseals the session PSK, puts the terminal's permanent address on the host,
 * programs the local charon as responder and bridges the stream to it (RFC 8229), so the
 * service is reached through ESP only, narrowed to the descriptor's selectors.
 *
 * Mobility: when the path under an IPsec session breaks, the bridge keeps its UDP socket
 * and charon its SAs for the descriptor's `resumeS`; a later descriptor naming the session
 * in `resume` (the relay signed it after a resume signal) re-attaches the bridge to that
 * stream, one with `end` ends the session at once.
 */
import type { KeyObject } from 'node:crypto'
import net, { type AddressInfo, type Socket } from 'node:net'
import { Fields, type Obj } from '../../core/config.js'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { privateKeyFromRaw, publicKeyFromRaw } from '../../core/keys.js'
import type { Logger } from '../../core/log.js'
import { connectTcp, splice } from '../../core/stream.js'
import { dataPath } from '../../core/kernel-splice.js'
import { encodeReply, readDescriptorFrame, verifyDescriptor, type Descriptor } from '../../proto/descriptor/descriptor.js'
import { unseal } from '../../proto/descriptor/seal.js'
import { ReplayCache } from '../../proto/signal/token.js'
import { Rfc8229Bridge } from '../../proto/rfc8229/bridge.js'
import type { HostAddresses } from '../../ipsec/host.js'
import type { PubkeyCreds, TunnelManager } from '../../ipsec/tunnels.js'

export interface AgentIpsecConfig {
  vici: string
  natTPort: number
  x25519Private: KeyObject | undefined
  /** When set, descriptors must name exactly this permanent address. */
  address: string | undefined
  pubkey: { cert: string, key: string, ca: string } | undefined
}

export interface AgentConfig {
  ipsec: AgentIpsecConfig | undefined
  listen: { host: string, port: number }
  device: string
  relayKeys: KeyObject[]
  /** Local services reachable in raw mode. */
  tcpPorts: number[]
  serviceHost: string
  descriptorTimeoutMs: number
}

export function parseAgentConfig (obj: Obj, source = 'agent.yaml'): AgentConfig {
  const f = new Fields(obj, source).only(['listen', 'device', 'relay_keys', 'tcp_ports', 'service_host', 'descriptor_timeout', 'keys', 'ipsec'])
  const keys = f.strList('relay_keys')
  if (keys.length === 0) throw new BeckonError('BECKON_ERR_CONFIG', `${source}.relay_keys must name at least one Ed25519 key`)
  const ip = f.sub('ipsec').only(['vici', 'nat_t_port', 'address', 'pubkey'])
  const pk = ip.sub('pubkey').only(['cert', 'key', 'ca'])
  const ownKeys = f.sub('keys').only(['x25519_private'])
  return {
    ipsec: !f.has('ipsec')
      ? undefined
      : {
          vici: ip.str('vici', 'unix:///var/run/charon.vici'),
          natTPort: ip.num('nat_t_port', 4500, 1, 65535),
          x25519Private: ownKeys.has('x25519_private') ? privateKeyFromRaw('x25519', ownKeys.str('x25519_private'), `${source}.keys.x25519_private`) : undefined,
          address: ip.optStr('address'),
          pubkey: ip.has('pubkey') ? { cert: pk.str('cert'), key: pk.str('key'), ca: pk.str('ca') } : undefined,
        },
    listen: f.hostPort('listen', '0.0.0.0:7400'),
    device: f.str('device'),
    relayKeys: keys.map((k, i) => publicKeyFromRaw('ed25519', k, `${source}.relay_keys[${i}]`)),
    tcpPorts: f.strList('tcp_ports', []).map((p) => {
      const n = Number(p)
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new BeckonError('BECKON_ERR_CONFIG', `${source}.tcp_ports: ${p} is not a port`)
      return n
    }),
    serviceHost: f.ip('service_host', '127.0.0.1'),
    descriptorTimeoutMs: f.ms('descriptor_timeout', 15_000),
  }
}

/** Descriptors the agent remembers at most (replay protection). */
export const MAX_SEEN = 10_000
/** The relay signs descriptors for 60 s; anything much longer is refused. */
export const MAX_DESCRIPTOR_LIFETIME_S = 3600

export interface AgentStats { accepted: number, refused: Record<string, number>, active: number, tunnels: number }

/** What IPsec mode needs, built by the composition root. */
export interface AgentIpsec {
  tunnels: TunnelManager
  host: HostAddresses
  pubkey: PubkeyCreds | undefined
}

export class Agent {
  readonly stats: AgentStats = { accepted: 0, refused: {}, active: 0, tunnels: 0 }
  private readonly server: net.Server
  /** Descriptors acted on, until they expire; bounded, refusing when full. */
  private readonly seen = new ReplayCache(MAX_SEEN)
  private readonly sockets = new Set<Socket>()
  /** IPsec sessions by id, attached or waiting for a re-join. */
  private readonly bridges = new Map<string, { bridge: Rfc8229Bridge, user: string, timer: NodeJS.Timeout | undefined }>()

  constructor (private readonly cfg: AgentConfig, private readonly log: Logger, private readonly now: () => number = Date.now, private readonly ipsec?: AgentIpsec) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => { void this.onConnection(s) })
  }

  listen (): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.cfg.listen.port, this.cfg.listen.host, () => {
        const a = this.server.address() as AddressInfo
        this.log.info({ listen: `${a.address}:${a.port}`, device: this.cfg.device, dataPath: dataPath() }, 'agent listening')
        resolve(a)
      })
    })
  }

  async close (): Promise<void> {
    // Leave nothing in charon: every tunnel's SAs, connection and secret go first.
    if (this.ipsec !== undefined) await Promise.all(this.ipsec.tunnels.sessions.map((s) => this.ipsec!.tunnels.remove(s)))
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
      if (d.resume !== undefined) {
        this.rejoin(d, sock, log)
        return
      }
      if (d.mode === 'ipsec') {
        await this.openTunnel(d, sock, log)
        return
      }
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

  /**
   * A descriptor is good once: a replayed frame is refused until it expires. Bounded in
   * entries and in time (a descriptor may not live longer than MAX_DESCRIPTOR_LIFETIME_S),
   * so a flood of valid descriptors cannot grow the agent without bound.
   */
  private admit (d: Descriptor, nowSec: number): void {
    if (d.expires > nowSec + MAX_DESCRIPTOR_LIFETIME_S) throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', `expires ${d.expires - nowSec} s ahead, more than ${MAX_DESCRIPTOR_LIFETIME_S} s`)
    try {
      this.seen.admit(Buffer.from(d.session, 'hex'), d.expires, nowSec)
    } catch (err) {
      throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', `session ${d.session}: ${(err as Error).message}`)
    }
  }

  /** IPsec mode: charon as responder behind an RFC 8229 bridge on this stream. */
  private async openTunnel (d: Descriptor, sock: Socket, log: Logger): Promise<void> {
    const ic = this.cfg.ipsec
    if (ic === undefined || this.ipsec === undefined) throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', 'IPsec mode is not enabled on this agent')
    const p = d.ipsec!
    // The agent's own policy: only services it exposes, only its own address.
    if (p.protocol === 'any' || !p.ports.every((port) => this.cfg.tcpPorts.includes(port))) {
      throw new BeckonError('BECKON_ERR_FORBIDDEN', `selectors ${p.protocol}/${p.ports.join(',')} exceed what this terminal exposes`)
    }
    if (ic.address !== undefined && ic.address !== p.terminal.address) throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', `terminal address ${p.terminal.address} is not ${ic.address}`)
    let psk: Buffer | undefined
    if (p.auth === 'psk') {
      if (ic.x25519Private === undefined) throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', 'psk mode needs keys.x25519_private')
      psk = unseal(Buffer.from(p.pskSealed!, 'base64url'), ic.x25519Private, Buffer.from(d.session))
    }
    await this.ipsec.host.ensure(p.terminal.address)
    const resumable = d.resumeS !== undefined && d.resumeS > 0
    // Attached once the reply is out: charon's datagrams must not overtake it.
    const bridge = await Rfc8229Bridge.open({ originator: false, resumable, charon: { host: '127.0.0.1', port: ic.natTPort }, log })
    try {
      await this.ipsec.tunnels.install({ session: d.session, side: 'responder', ipsec: p, psk, pubkey: this.ipsec.pubkey })
    } catch (err) {
      bridge.close()
      throw err
    }
    sock.write(encodeReply({ ready: true, info: { mode: 'ipsec', address: p.terminal.address } }))
    bridge.attach(sock)
    this.stats.accepted++
    this.stats.tunnels++
    log.info({ mode: 'ipsec', auth: p.auth, client: p.client.address, ports: p.ports, resumeS: d.resumeS }, 'agent: session open')
    const held = { bridge, user: d.user, timer: undefined as NodeJS.Timeout | undefined }
    this.bridges.set(d.session, held)
    bridge.on('detached', (reason: string) => {
      clearTimeout(held.timer)
      log.info({ reason, waitS: d.resumeS }, 'agent: path lost; keeping the SAs for a re-join')
      held.timer = setTimeout(() => bridge.close(new BeckonError('BECKON_ERR_PATH_LOST', `no re-join within ${d.resumeS} s`)), d.resumeS! * 1000)
      held.timer.unref()
    })
    bridge.on('attached', () => { clearTimeout(held.timer); held.timer = undefined })
    bridge.once('close', () => {
      clearTimeout(held.timer)
      this.bridges.delete(d.session)
      this.stats.tunnels--
      void this.ipsec!.tunnels.remove(d.session).then(() => log.info(bridge.stats, 'agent: session closed'))
    })
  }

  /** A descriptor naming an existing session: re-attach its bridge here, or end it. */
  private rejoin (d: Descriptor, sock: Socket, log: Logger): void {
    const held = this.bridges.get(d.resume!)
    log = log.child({ resumes: d.resume })
    if (held === undefined) throw new BeckonError('BECKON_ERR_PATH_LOST', `no session ${d.resume} here (ended, or never opened)`)
    if (held.user !== d.user) throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', `session ${d.resume} is not ${d.user}'s`)
    if (d.end === true) {
      sock.end(encodeReply({ ready: true, info: { mode: 'ipsec', ended: d.resume } }))
      log.info('agent: session ended by the relay')
      held.bridge.close(new BeckonError('BECKON_ERR_SESSION_ENDED', 'ended by the relay'))
      return
    }
    sock.write(encodeReply({ ready: true, info: { mode: 'ipsec', resumed: d.resume } }))
    held.bridge.attach(sock)
    log.info('agent: path re-joined; same SAs')
  }

  private async open (d: Descriptor): Promise<Socket> {
    if (!this.cfg.tcpPorts.includes(d.port!)) throw new BeckonError('BECKON_ERR_FORBIDDEN', `port ${d.port} is not exposed by this terminal`)
    try {
      return await connectTcp(this.cfg.serviceHost, d.port!, 3_000)
    } catch (err) {
      throw new BeckonError('BECKON_ERR_TERMINAL_REFUSED', `service ${this.cfg.serviceHost}:${d.port}: ${toBeckonError(err).message}`)
    }
  }
}
