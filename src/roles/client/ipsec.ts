/**
 * The client's IPsec mode (step I and the data plane): CONNECT <device>:ipsec, then
 * program the local charon as initiator from the descriptor in the 200, bridge it onto
 * the relay stream (RFC 8229, we are the TCP originator) and bring the CHILD_SA up.
 * Afterwards any application reaches the terminal at its permanent address.
 *
 * When the TCP path breaks (the stream ends, fails, or stays silent past `stallMs`) and
 * the relay offered resumption, the bridge keeps its UDP socket and charon its SAs, and
 * the client re-joins: a CONNECT with `Beckon-Resume` (proof of the session's secret),
 * retried with backoff (250 ms doubling to 2 s) until the relay's window closes. A
 * refusal that will not change (ended by an operator, policy, wrong proof) ends at once.
 */
import { BeckonError, toBeckonError, type ErrorCode } from '../../core/errors.js'
import { resumeHeader } from '../../proto/signal/resume.js'
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
  /** Path liveness: ping after `pingMs` of silence; the path is lost after `stallMs`. */
  liveness?: { pingMs: number, stallMs: number }
}

/** Refusals a retry cannot change: the re-join ends there. */
const FINAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['BECKON_ERR_SESSION_ENDED', 'BECKON_ERR_PATH_LOST', 'BECKON_ERR_RESUME_REFUSED', 'BECKON_ERR_FORBIDDEN', 'BECKON_ERR_AUTH_FAILED', 'BECKON_ERR_AUTH_REQUIRED', 'BECKON_ERR_UNKNOWN_DEVICE', 'BECKON_ERR_INSECURE_CREDENTIALS'])

export interface Tunnel {
  session: string
  descriptor: Descriptor
  sa: IkeSa
  bridge: Rfc8229Bridge
  /** Resolves when the session ends: undefined after close(), else why. */
  closed: Promise<BeckonError | undefined>
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
    const bridge = await Rfc8229Bridge.open({ stream: s.socket, originator: true, resumable: s.resume !== undefined, liveness: s.resume === undefined ? undefined : ip.liveness ?? { pingMs: 1_000, stallMs: 3_000 }, charon: { host: '127.0.0.1', port: ip.natTPort }, log: ip.log })
    const closed = new Promise<BeckonError | undefined>((resolve) => bridge.once('close', (e?: BeckonError) => resolve(e)))
    if (s.resume !== undefined) {
      const resume = s.resume
      bridge.on('detached', (reason: string) => { void rejoin(o, device, d.session, resume, bridge, reason, onStage) })
    }
    await ip.tunnels.install({ session: d.session, side: 'initiator', ipsec: p, bridgePort: bridge.port, psk: s.psk, pubkey: ip.pubkey })
    onStage?.('ipsec-loaded', { elapsedMs: Date.now() - started, auth: p.auth })
    let sa: IkeSa
    try {
      sa = await ip.tunnels.initiate(d.session)
    } catch (err) {
      // On purpose, not a path break: the agent unloads at once.
      bridge.finish()
      await ip.tunnels.remove(d.session)
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
      close: async () => { bridge.finish(); await ip.tunnels.remove(d.session) },
    }
  } catch (err) {
    s.socket.destroy()
    throw err
  }
}

/**
 * Re-joins the session's path after the bridge detached: bounded attempts with backoff,
 * each a resume CONNECT; on success the bridge carries on over the new stream.
 */
async function rejoin (o: ClientOptions, device: string, session: string, resume: { secret: Buffer, windowMs: number }, bridge: Rfc8229Bridge, reason: string, onStage?: (stage: Stage, detail: Record<string, unknown>) => void): Promise<void> {
  const lostAt = Date.now()
  // A little inside the relay's window, so the last attempt still finds the session.
  const deadline = lostAt + Math.max(1_000, resume.windowMs - 1_000)
  onStage?.('path-lost', { reason, windowMs: resume.windowMs })
  let last: BeckonError | undefined
  for (let attempt = 1; Date.now() < deadline && !bridge.isClosed; attempt++) {
    onStage?.('rejoining', { attempt, elapsedMs: Date.now() - lostAt })
    try {
      // With relays from DNS, a relay that is gone is skipped for the next (which takes
      // the session over); those switches show in the stages.
      let name: unknown
      const s = await openSession({ ...o, timeoutMs: Math.max(1, Math.min(deadline - Date.now(), 10_000)), headers: { ...o.headers, 'Beckon-Resume': resumeHeader(resume.secret, session, Date.now()) } }, `${device}:ipsec`, (stage, d) => {
        if (stage === 'relay-failed') onStage?.(stage, { ...d, attempt })
        if (stage === 'connecting') name = d.name
      })
      if (s.session !== session) { s.socket.destroy(); throw new BeckonError('BECKON_ERR_PROTOCOL', `re-joined session ${s.session}, not ${session}`) }
      if (bridge.isClosed) { s.socket.destroy(); return }
      bridge.attach(s.socket)
      onStage?.('rejoined', { attempt, elapsedMs: Date.now() - lostAt, session, relay: s.relay, ...(name === undefined ? {} : { name }) })
      return
    } catch (err) {
      last = toBeckonError(err)
      if (FINAL.has(last.code)) break
      const backoff = Math.min(2_000, 250 * 2 ** (attempt - 1))
      await new Promise((resolve) => setTimeout(resolve, Math.min(backoff, Math.max(0, deadline - Date.now()))))
    }
  }
  if (bridge.isClosed || bridge.attached) return
  const end = last !== undefined && FINAL.has(last.code) ? last : new BeckonError('BECKON_ERR_PATH_LOST', `no re-join within ${resume.windowMs} ms${last === undefined ? '' : ` (last: ${last.message})`}`)
  bridge.close(end)
}
