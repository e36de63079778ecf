/**
 * The client's IPsec mode (step I and the data plane): CONNECT <device>:ipsec, then
 * program the local charon as initiator from the descriptor in the 200, bridge it onto
 * the relay stream (RFC 8229, we are the TCP originator) and bring the CHILD_SA up.
 * Afterwards any application reaches the terminal at its permanent address.
 */
import { BeckonError } from '../../core/errors.js'
import type { Logger } from '../../core/log.js'
import { parseDescriptorFrame, type Descriptor } from '../../proto/descriptor/descriptor.js'
import { Rfc8229Bridge } from '../../proto/rfc8229/bridge.js'
import type { IkeSa } from '../../proto/vici/session.js'
import type { HostAddresses } from '../../ipsec/host.js'
import type { PubkeyCreds, TunnelManager } from '../../ipsec/tunnels.js'
import { openSession, type ClientOptions, type Stage } from './client.js'

export interface ClientIpsec {
  tunnels: TunnelManager
  host: HostAddresses
  natTPort: number
  pubkey: PubkeyCreds | undefined
  log?: Logger
}

export interface Tunnel {
  session: string
  descriptor: Descriptor
  sa: IkeSa
  bridge: Rfc8229Bridge
  /** Resolves when the path or the tunnel ends. */
  closed: Promise<void>
  close: () => Promise<void>
}

export async function openTunnel (o: ClientOptions, device: string, ip: ClientIpsec, onStage?: (stage: Stage, detail: Record<string, unknown>) => void): Promise<Tunnel> {
  const s = await openSession(o, `${device}:ipsec`, onStage)
  const started = Date.now() - s.elapsedMs
  try {
    if (s.descriptor === undefined) throw new BeckonError('BECKON_ERR_PROTOCOL', 'the relay sent no descriptor for IPsec mode')
    const d = parseDescriptorFrame(s.descriptor)
    if (d.mode !== 'ipsec' || d.ipsec === undefined || d.session !== s.session || d.device !== device) {
      throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', 'descriptor does not match this session')
    }
    const p = d.ipsec
    if (p.auth === 'psk' && s.psk === undefined) throw new BeckonError('BECKON_ERR_PROTOCOL', 'psk mode but no PSK in the response')
    await ip.host.ensure(p.client.address)
    const bridge = await Rfc8229Bridge.open({ stream: s.socket, originator: true, charon: { host: '127.0.0.1', port: ip.natTPort }, log: ip.log })
    const closed = new Promise<void>((resolve) => bridge.once('close', () => resolve()))
    await ip.tunnels.install({ session: d.session, side: 'initiator', ipsec: p, bridgePort: bridge.port, psk: s.psk, pubkey: ip.pubkey })
    onStage?.('ipsec-loaded', { elapsedMs: Date.now() - started, auth: p.auth })
    let sa: IkeSa
    try {
      sa = await ip.tunnels.initiate(d.session)
    } catch (err) {
      await ip.tunnels.remove(d.session)
      bridge.close()
      throw err
    }
    onStage?.('tunnel-up', {
      elapsedMs: Date.now() - started,
      local: p.client.address,
      remote: p.terminal.address,
      selectors: p.protocol === 'any' ? 'any' : `${p.protocol}/${p.ports.join(',')}`,
      ike: sa.name,
    })
    void closed.then(() => ip.tunnels.remove(d.session))
    return {
      session: d.session,
      descriptor: d,
      sa,
      bridge,
      closed,
      close: async () => { await ip.tunnels.remove(d.session); bridge.close() },
    }
  } catch (err) {
    s.socket.destroy()
    throw err
  }
}
