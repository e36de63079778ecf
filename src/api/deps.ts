/**
 * What the management API needs from the process that hosts it. cli/ wires these from
 * the relay (its live sessions, its charon, its channels); tests pass small fakes.
 */
import type { Logger } from '../core/log.js'
import type { Metrics } from '../core/metrics.js'
import type { Device, LdapSettings, Policy, SessionRecord } from '../store/records.js'
import type { Store } from '../store/store.js'

/** The relay's live sessions as the API may act on them. */
export interface SessionControl {
  /** Ends a live session held by this relay; false when this relay does not hold it. */
  kill (id: string, reason: string, actor: string): boolean
  /** The live record with current counters and SA state, when this relay holds it. */
  live (id: string): SessionRecord | undefined
}

export interface HealthCheck {
  ok: boolean
  detail?: string
  ms?: number
}

export interface ApiDeps {
  store: Store
  log: Logger
  /**
   * The listener is TLS. On a plain listener every request carrying a token is refused
   * (BECKON_ERR_API_INSECURE): no secret may cross an unencrypted connection.
   */
  secure: boolean
  /** The deployment's ULA /48: derived permanent addresses are shown with records. */
  ipsecPrefix: string
  sessions?: SessionControl
  /** Loads the policy's generated connection into a charon and answers with its verdict. */
  checkPolicy?: (policy: Policy, device: Device) => Promise<{ connection: unknown }>
  /** Binds the directory's service account. */
  testLdap?: (settings: LdapSettings) => Promise<HealthCheck>
  /** Named dependency checks for /health (SMSC bind, SMTP, directory…); the store is always checked. */
  health?: Record<string, () => Promise<HealthCheck>>
  /** The relay's metrics, so /metrics carries the data path's figures too. */
  metrics?: Metrics
  rateLimit?: { max: number, windowMs: number }
  /** Skip per-request access logs (benchmarks). */
  quiet?: boolean
  now?: () => number
}
