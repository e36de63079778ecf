/**
 * Prometheus metrics of one process (prom-client), one registry per instance so tests
 * and several roles in one process never share counters. The relay records into it;
 * the management API serves it at /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export class Metrics {
  readonly registry = new Registry()
  /** Live sessions by stage (authorized → signalled → called-back → connected). */
  readonly sessions = new Gauge({ name: 'beckon_sessions', help: 'sessions in progress by stage', labelNames: ['stage'] as const, registers: [this.registry] })
  readonly outcomes = new Counter({ name: 'beckon_sessions_total', help: 'ended or refused sessions by outcome (ok or error code)', labelNames: ['outcome'] as const, registers: [this.registry] })
  readonly connectSeconds = new Histogram({ name: 'beckon_connect_seconds', help: 'CONNECT to 200, seconds', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600], registers: [this.registry] })
  readonly bytes = new Counter({ name: 'beckon_spliced_bytes_total', help: 'bytes spliced between client and dial-back, by direction', labelNames: ['direction'] as const, registers: [this.registry] })
  readonly signals = new Counter({ name: 'beckon_signals_total', help: 'access request signals by channel and result', labelNames: ['channel', 'result'] as const, registers: [this.registry] })
  readonly storeSeconds = new Histogram({ name: 'beckon_store_seconds', help: 'store round trips, seconds', labelNames: ['op'] as const, buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1], registers: [this.registry] })
  readonly apiRequests = new Counter({ name: 'beckon_api_requests_total', help: 'management API requests by route and status', labelNames: ['route', 'status'] as const, registers: [this.registry] })

  constructor (opts: { process?: boolean } = {}) {
    if (opts.process === true) collectDefaultMetrics({ register: this.registry, prefix: 'beckon_' })
  }

  /** Times one store call under `op`. */
  async timeStore<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const end = this.storeSeconds.startTimer({ op })
    try { return await fn() } finally { end() }
  }
}
