/**
 * Programs the local charon from a session descriptor, over VICI.
 *
 * Per session: connection `beckon-<session>` with child `svc`, and in psk mode the
 * secret `beckon-<session>`. The initiator (client) sends IKE from charon's NAT-T port
 * to the RFC 8229 bridge on 127.0.0.1:<bridge port> (strongSwan 5.9.8 must send from
 * port_nat_t when the peer is not on 500, see the notes); the responder (agent) accepts
 * from %any and tells its peers apart by identity. Tunnel mode, IPv6 selectors narrowed
 * to the descriptor's protocol and ports, UDP encapsulation (kernel-libipsec needs it).
 *
 * charon restarts are survived: on the session's `reconnect` every active tunnel is
 * loaded again and the initiator initiates again.
 */
import { BeckonError, toBeckonError } from '../core/errors.js'
import { silentLogger, type Logger } from '../core/log.js'
import type { IpsecParams } from '../proto/descriptor/descriptor.js'
import type { ViciInput, ViciInputValue } from '../proto/vici/codec.js'
import type { ViciSession, IkeSa } from '../proto/vici/session.js'

export interface PubkeyCreds {
  certPem: string
  keyPem: string
  caPem: string
}

export interface TunnelSpec {
  session: string
  side: 'initiator' | 'responder'
  ipsec: IpsecParams
  /** Initiator: the bridge's UDP port (charon's remote_port). */
  bridgePort?: number
  psk?: Buffer
  pubkey?: PubkeyCreds
}

export function connName (session: string): string { return `beckon-${session}` }

/** Selectors on the terminal's side: one per port, e.g. fd00::2/128[tcp/8080]. */
export function terminalSelectors (p: IpsecParams): string[] {
  const host = `${p.terminal.address}/128`
  if (p.protocol === 'any') return [host]
  if (p.ports.length === 0) return [`${host}[${p.protocol}]`]
  return p.ports.map((port) => `${host}[${p.protocol}/${port}]`)
}

/** The body of `load-conn <name> { … }` for one side. */
export function connConfig (s: TunnelSpec, natTPort: number): ViciInput {
  const p = s.ipsec
  const initiator = s.side === 'initiator'
  const me = initiator ? p.client : p.terminal
  const peer = initiator ? p.terminal : p.client
  const clientTs = [`${p.client.address}/128`]
  const terminalTs = terminalSelectors(p)
  const local: Record<string, ViciInputValue> = { auth: p.auth, id: me.id }
  const remote: Record<string, ViciInputValue> = { auth: p.auth, id: peer.id }
  if (p.auth === 'pubkey') {
    if (s.pubkey === undefined) throw new BeckonError('BECKON_ERR_IPSEC_FAILED', 'pubkey mode needs a certificate and key on this end')
    local.certs = [s.pubkey.certPem]
    remote.cacerts = [s.pubkey.caPem]
  }
  return {
    version: 2,
    local_addrs: ['127.0.0.1'],
    remote_addrs: [initiator ? '127.0.0.1' : '%any'],
    local_port: natTPort,
    remote_port: initiator ? s.bridgePort : undefined,
    encap: 'yes',
    mobike: 'no',
    proposals: p.ikeProposals,
    rekey_time: `${p.ikeRekeyS}s`,
    dpd_delay: `${p.dpdS}s`,
    unique: 'never',
    local,
    remote,
    children: {
      svc: {
        mode: 'tunnel',
        local_ts: initiator ? clientTs : terminalTs,
        remote_ts: initiator ? terminalTs : clientTs,
        esp_proposals: p.espProposals,
        rekey_time: `${p.childRekeyS}s`,
        start_action: 'none',
        dpd_action: 'clear',
      },
    },
  }
}

export class TunnelManager {
  private readonly active = new Map<string, TunnelSpec>()
  private readonly loadedKeys = new Set<string>()
  private readonly log: Logger

  constructor (private readonly vici: ViciSession, private readonly natTPort = 4500, log?: Logger) {
    this.log = log ?? silentLogger
    vici.on('reconnect', () => { void this.reloadAll() })
  }

  get sessions (): string[] { return [...this.active.keys()] }

  private async load (s: TunnelSpec): Promise<void> {
    const name = connName(s.session)
    if (s.ipsec.auth === 'psk') {
      if (s.psk === undefined) throw new BeckonError('BECKON_ERR_IPSEC_FAILED', 'psk mode without a PSK')
      await this.vici.loadShared({ id: name, type: 'IKE', data: s.psk, owners: [s.ipsec.client.id, s.ipsec.terminal.id] })
    } else if (s.pubkey !== undefined && !this.loadedKeys.has(s.pubkey.keyPem)) {
      await this.vici.loadKey({ type: 'any', data: s.pubkey.keyPem })
      await this.vici.loadCert({ type: 'X509', flag: 'CA', data: s.pubkey.caPem })
      this.loadedKeys.add(s.pubkey.keyPem)
    }
    await this.vici.loadConn(name, connConfig(s, this.natTPort))
  }

  /** Loads the connection (and secret); the responder is then ready for IKE. */
  async install (s: TunnelSpec): Promise<void> {
    try {
      await this.load(s)
    } catch (err) {
      await this.remove(s.session).catch(() => {})
      throw new BeckonError('BECKON_ERR_IPSEC_FAILED', toBeckonError(err).message, { cause: err })
    }
    this.active.set(s.session, s)
  }

  /** Initiator: brings IKE_SA and CHILD_SA up; resolves with the IKE_SA as charon lists it. */
  async initiate (session: string, timeoutMs = 15_000): Promise<IkeSa> {
    const name = connName(session)
    const lines: string[] = []
    try {
      await this.vici.initiate({ child: 'svc', ike: name, timeout: timeoutMs, onLog: (l) => lines.push(l.msg) })
    } catch (err) {
      // charon's errmsg only says that it failed; its log says why (e.g. the peer's
      // AUTHENTICATION_FAILED notify, or no trusted certificate).
      const why = lines.filter((l) => /AUTHENTICATION_FAILED|NO_PROPOSAL|TS_UNACCEPTABLE|no trusted|constraint|failed to|not found|unable to/i.test(l)).slice(-2)
      throw new BeckonError('BECKON_ERR_IPSEC_FAILED', [toBeckonError(err).detail ?? toBeckonError(err).message, ...why].join('; '), { cause: err })
    }
    const sa = (await this.vici.listSas({ ike: name }))[0]
    if (sa === undefined) throw new BeckonError('BECKON_ERR_IPSEC_FAILED', `${name} not listed after initiate`)
    return sa
  }

  /** Tears the session down in charon: SAs, connection, secret. */
  async remove (session: string): Promise<void> {
    const name = connName(session)
    this.active.delete(session)
    await this.vici.terminate({ ike: name, force: true, timeout: 3_000 }).catch(() => {})
    await this.vici.unloadConn(name).catch(() => {})
    await this.vici.unloadShared(name).catch(() => {})
  }

  private async reloadAll (): Promise<void> {
    this.loadedKeys.clear()
    for (const s of this.active.values()) {
      try {
        await this.load(s)
        if (s.side === 'initiator') await this.vici.initiate({ child: 'svc', ike: connName(s.session), timeout: 15_000 })
        this.log.info({ session: s.session }, 'ipsec: tunnel reloaded after charon restart')
      } catch (err) {
        this.log.error({ session: s.session, err: toBeckonError(err).message }, 'ipsec: reload after charon restart failed')
      }
    }
  }
}
