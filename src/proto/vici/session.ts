/**
 * VICI session: the typed public API over two connections.
 *
 * Commands run on one connection (charon serves each connection serially); broadcast
 * event subscriptions run on a second one, created on first use, so that a blocking
 * `initiate` never delays an `ike-updown` and an event never waits behind a command.
 * A response with `success = no` becomes BECKON_ERR_VICI_COMMAND_FAILED carrying
 * charon's `errmsg`. Command shapes: strongSwan src/libcharon/plugins/vici/README.md.
 */
import { EventEmitter } from 'node:events'
import { BeckonError } from '../../core/errors.js'
import {
  bool, list, num, sections, str, sub,
  type ViciInput, type ViciSection,
} from './codec.js'
import { ViciConnection, type ConnectionOptions } from './conn.js'

/** Commands whose results arrive as events, and the event that carries them. */
export const STREAMED_COMMANDS: Readonly<Record<string, string>> = {
  'list-sas': 'list-sa',
  'list-conns': 'list-conn',
  'list-policies': 'list-policy',
  'list-certs': 'list-cert',
  'list-authorities': 'list-authority',
  initiate: 'control-log',
  terminate: 'control-log',
}

/** Broadcast events a controller subscribes to (5.9.x). */
export const BROADCAST_EVENTS = ['ike-updown', 'child-updown', 'ike-rekey', 'child-rekey', 'ike-update', 'log'] as const
export type BroadcastEvent = typeof BROADCAST_EVENTS[number]

export interface VersionInfo {
  daemon: string
  version: string
  sysname: string
  release: string
  machine: string
}

export interface ChildSa {
  /** Key in the parent's `child-sas` section: `<name>-<uniqueid>`. */
  key: string
  name: string
  uniqueid: string
  reqid: string | undefined
  state: string
  mode: string | undefined
  protocol: string | undefined
  encap: boolean
  spiIn: string | undefined
  spiOut: string | undefined
  encrAlg: string | undefined
  bytesIn: number
  bytesOut: number
  packetsIn: number
  packetsOut: number
  localTs: string[]
  remoteTs: string[]
  raw: ViciSection
}

export interface IkeSa {
  name: string
  uniqueid: string
  version: string | undefined
  state: string
  localHost: string | undefined
  localPort: number | undefined
  localId: string | undefined
  remoteHost: string | undefined
  remotePort: number | undefined
  remoteId: string | undefined
  initiator: boolean
  natLocal: boolean
  natRemote: boolean
  encrAlg: string | undefined
  established: number | undefined
  children: ChildSa[]
  raw: ViciSection
}

export function parseChildSa (key: string, s: ViciSection): ChildSa {
  return {
    key,
    name: str(s, 'name') ?? key,
    uniqueid: str(s, 'uniqueid') ?? '',
    reqid: str(s, 'reqid'),
    state: str(s, 'state') ?? '',
    mode: str(s, 'mode'),
    protocol: str(s, 'protocol'),
    encap: bool(s, 'encap'),
    spiIn: str(s, 'spi-in'),
    spiOut: str(s, 'spi-out'),
    encrAlg: str(s, 'encr-alg'),
    bytesIn: num(s, 'bytes-in') ?? 0,
    bytesOut: num(s, 'bytes-out') ?? 0,
    packetsIn: num(s, 'packets-in') ?? 0,
    packetsOut: num(s, 'packets-out') ?? 0,
    localTs: list(s, 'local-ts'),
    remoteTs: list(s, 'remote-ts'),
    raw: s,
  }
}

export function parseIkeSa (name: string, s: ViciSection): IkeSa {
  return {
    name,
    uniqueid: str(s, 'uniqueid') ?? '',
    version: str(s, 'version'),
    state: str(s, 'state') ?? '',
    localHost: str(s, 'local-host'),
    localPort: num(s, 'local-port'),
    localId: str(s, 'local-id'),
    remoteHost: str(s, 'remote-host'),
    remotePort: num(s, 'remote-port'),
    remoteId: str(s, 'remote-id'),
    initiator: bool(s, 'initiator'),
    natLocal: bool(s, 'nat-local'),
    natRemote: bool(s, 'nat-remote'),
    encrAlg: str(s, 'encr-alg'),
    established: num(s, 'established'),
    children: sections(sub(s, 'child-sas')).map(([k, c]) => parseChildSa(k, c)),
    raw: s,
  }
}

/** Every IKE_SA section of a message (`list-sa`, `ike-updown`, `child-updown`). */
export function ikeSasOf (message: ViciSection): IkeSa[] {
  return sections(message).map(([name, s]) => parseIkeSa(name, s))
}

export interface ViciEvent {
  name: string
  message: ViciSection
  /** For updown events: `up` present means up; charon omits it on down. */
  up: boolean
}

export type EventHandler = (ev: ViciEvent) => void

export interface ControlLog {
  group: string | undefined
  level: number | undefined
  ikeName: string | undefined
  msg: string
}

function parseControlLog (m: ViciSection): ControlLog {
  return { group: str(m, 'group'), level: num(m, 'level'), ikeName: str(m, 'ikesa-name'), msg: str(m, 'msg') ?? '' }
}

export interface CallOptions {
  timeoutMs?: number
}

export interface SharedSecret {
  id?: string
  type: 'IKE' | 'EAP' | 'XAUTH' | 'NTLM' | 'PPK'
  data: string | Buffer
  owners?: string[]
}

export interface InitiateOptions {
  child?: string
  ike?: string
  /** charon's own timeout in ms (0 = wait forever, -1 = do not wait); default 10 s. */
  timeout?: number
  initLimits?: boolean
  loglevel?: number
  onLog?: (log: ControlLog) => void
}

export interface TerminateOptions {
  child?: string
  ike?: string
  childId?: number | string
  ikeId?: number | string
  force?: boolean
  timeout?: number
  loglevel?: number
  onLog?: (log: ControlLog) => void
}

export interface SaFilter {
  noblock?: boolean
  ike?: string
  ikeId?: number | string
  child?: string
  childId?: number | string
}

/** Slack beyond charon's own timeout before we declare the connection stuck. */
const TIMEOUT_SLACK_MS = 5_000

/** Emits `reconnect` after the command connection came back (charon restarted). */
export class ViciSession extends EventEmitter {
  readonly conn: ViciConnection
  private events: Promise<ViciConnection> | undefined
  private readonly handlers = new Map<string, Set<EventHandler>>()

  constructor (private readonly opts: ConnectionOptions = {}) {
    super()
    this.conn = new ViciConnection(opts)
    this.conn.on('connect', (reconnected: boolean) => { if (reconnected) this.emit('reconnect') })
    this.conn.on('disconnect', (err: Error) => this.emit('disconnect', err))
  }

  /** Creates a session and connects, waiting up to `waitMs` for charon's socket. */
  static async open (opts: ConnectionOptions & { waitMs?: number } = {}): Promise<ViciSession> {
    const s = new ViciSession(opts)
    await s.conn.connect({ waitMs: opts.waitMs })
    return s
  }

  /** Any command; rejects with COMMAND_FAILED when charon answers `success = no`. */
  async call (name: string, message: ViciInput = {}, opts: CallOptions = {}): Promise<ViciSection> {
    return checked(name, await this.conn.request(name, message, { timeoutMs: opts.timeoutMs }))
  }

  /** A streamed command: the events it produced, and its final response. */
  async streamed (name: string, event: string, message: ViciInput = {}, opts: CallOptions & { onEvent?: (m: ViciSection) => void } = {}): Promise<{ events: ViciSection[], response: ViciSection }> {
    const events: ViciSection[] = []
    const response = await this.conn.request(name, message, {
      timeoutMs: opts.timeoutMs,
      stream: { event, onEvent: (m) => { events.push(m); opts.onEvent?.(m) } },
    })
    return { events, response: checked(name, response) }
  }

  async version (): Promise<VersionInfo> {
    const m = await this.call('version')
    return {
      daemon: str(m, 'daemon') ?? '',
      version: str(m, 'version') ?? '',
      sysname: str(m, 'sysname') ?? '',
      release: str(m, 'release') ?? '',
      machine: str(m, 'machine') ?? '',
    }
  }

  /** Daemon statistics (uptime, workers, queues, IKE_SA counts); shape varies by build. */
  async stats (): Promise<ViciSection> {
    return await this.call('stats')
  }

  /** Loads (or replaces, by name) a connection; `conf` is the body of `<name> { … }`. */
  async loadConn (name: string, conf: ViciInput): Promise<void> {
    await this.call('load-conn', { [name]: conf })
  }

  async unloadConn (name: string): Promise<void> {
    await this.call('unload-conn', { name })
  }

  /** Names of the connections loaded over VICI. */
  async getConns (): Promise<string[]> {
    return list(await this.call('get-conns'), 'conns')
  }

  async listConns (filter: { ike?: string } = {}): Promise<Array<{ name: string, conf: ViciSection }>> {
    const { events } = await this.streamed('list-conns', 'list-conn', filter)
    return events.flatMap((m) => sections(m).map(([name, conf]) => ({ name, conf })))
  }

  async loadShared (secret: SharedSecret): Promise<void> {
    await this.call('load-shared', { id: secret.id, type: secret.type, data: secret.data, owners: secret.owners })
  }

  /** charon answers success even for an unknown id (5.9.8). */
  async unloadShared (id: string): Promise<void> {
    await this.call('unload-shared', { id })
  }

  async getShared (): Promise<string[]> {
    return list(await this.call('get-shared'), 'keys')
  }

  /** Loads a private key (PEM or DER); returns its key id (hex SHA-1 of the public key). */
  async loadKey (key: { type: 'rsa' | 'ecdsa' | 'ed25519' | 'ed448' | 'any', data: string | Buffer }): Promise<string> {
    return str(await this.call('load-key', key), 'id') ?? ''
  }

  async unloadKey (id: string): Promise<void> {
    await this.call('unload-key', { id })
  }

  async loadCert (cert: { type: 'X509' | 'X509_AC' | 'X509_CRL', flag?: 'NONE' | 'CA' | 'AA' | 'OCSP', data: string | Buffer }): Promise<void> {
    await this.call('load-cert', cert)
  }

  async loadPool (name: string, conf: ViciInput): Promise<void> {
    await this.call('load-pool', { [name]: conf })
  }

  async unloadPool (name: string): Promise<void> {
    await this.call('unload-pool', { name })
  }

  async getPools (opts: { leases?: boolean, name?: string } = {}): Promise<ViciSection> {
    return await this.call('get-pools', opts)
  }

  /** Initiates a CHILD_SA (and its IKE_SA); resolves once charon reports it up. */
  async initiate (o: InitiateOptions): Promise<ControlLog[]> {
    const timeout = o.timeout ?? 10_000
    const logs: ControlLog[] = []
    await this.streamed('initiate', 'control-log', {
      child: o.child, ike: o.ike, timeout, 'init-limits': o.initLimits, loglevel: o.loglevel,
    }, {
      timeoutMs: requestTimeout(timeout),
      onEvent: (m) => { const l = parseControlLog(m); logs.push(l); o.onLog?.(l) },
    })
    return logs
  }

  async terminate (o: TerminateOptions): Promise<{ matches: number, terminated: number }> {
    const timeout = o.timeout ?? 10_000
    const { response } = await this.streamed('terminate', 'control-log', {
      child: o.child, ike: o.ike, 'child-id': o.childId, 'ike-id': o.ikeId, force: o.force, timeout, loglevel: o.loglevel,
    }, {
      timeoutMs: requestTimeout(timeout),
      onEvent: (m) => o.onLog?.(parseControlLog(m)),
    })
    return { matches: num(response, 'matches') ?? 0, terminated: num(response, 'terminated') ?? 0 }
  }

  async rekey (o: { child?: string, ike?: string, childId?: number | string, ikeId?: number | string, reauth?: boolean }): Promise<{ matches: number }> {
    const m = await this.call('rekey', { child: o.child, ike: o.ike, 'child-id': o.childId, 'ike-id': o.ikeId, reauth: o.reauth })
    return { matches: num(m, 'matches') ?? 0 }
  }

  async listSas (f: SaFilter = {}): Promise<IkeSa[]> {
    const { events } = await this.streamed('list-sas', 'list-sa', {
      noblock: f.noblock, ike: f.ike, 'ike-id': f.ikeId, child: f.child, 'child-id': f.childId,
    })
    return events.flatMap(ikeSasOf)
  }

  /**
   * Subscribes `handler` to broadcast events on the event connection (registrations
   * survive charon restarts). Returns the function that unsubscribes.
   */
  async subscribe (names: readonly string[], handler: EventHandler): Promise<() => Promise<void>> {
    const conn = await this.eventConnection()
    for (const name of names) {
      let set = this.handlers.get(name)
      if (set === undefined) {
        set = new Set()
        this.handlers.set(name, set)
        try {
          await conn.register(name)
        } catch (err) {
          this.handlers.delete(name)
          throw err
        }
      }
      set.add(handler)
    }
    return async () => {
      for (const name of names) {
        const set = this.handlers.get(name)
        if (set === undefined) continue
        set.delete(handler)
        if (set.size === 0) {
          this.handlers.delete(name)
          if (conn.isConnected) await conn.unregister(name).catch(() => {})
        }
      }
    }
  }

  private eventConnection (): Promise<ViciConnection> {
    if (this.events !== undefined) return this.events
    const conn = new ViciConnection(this.opts)
    conn.on('event', (name: string, message: ViciSection) => {
      const ev: ViciEvent = { name, message, up: bool(message, 'up') }
      for (const h of this.handlers.get(name) ?? []) h(ev)
    })
    // Memoized as a promise so concurrent subscribers share one connection; a failed
    // connect is forgotten so the next subscribe tries again.
    this.events = conn.connect({ waitMs: 2_000 }).then(() => conn, (err) => {
      this.events = undefined
      throw err
    })
    return this.events
  }

  async close (): Promise<void> {
    const events = this.events
    this.events = undefined
    await Promise.all([this.conn.close(), events?.then((c) => c.close(), () => {})])
  }
}

/** Our deadline for a blocking command given charon's own `timeout` parameter. */
function requestTimeout (charonTimeoutMs: number): number | undefined {
  if (charonTimeoutMs > 0) return charonTimeoutMs + TIMEOUT_SLACK_MS
  if (charonTimeoutMs === 0) return 10 * 60_000 // "forever" for charon; bounded for us
  return undefined
}

function checked (name: string, m: ViciSection): ViciSection {
  const success = str(m, 'success')
  if (success !== undefined && success !== 'yes') {
    throw new BeckonError('BECKON_ERR_VICI_COMMAND_FAILED', `${name}: ${str(m, 'errmsg') ?? 'no error message'}`)
  }
  return m
}
