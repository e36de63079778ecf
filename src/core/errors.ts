/**
 * The one error-code table (after fastify's lib/errors.js).
 *
 * Domain code throws `BeckonError` with a code from this table and knows nothing of
 * HTTP; the API and the CONNECT handler are the only places that read `status`.
 * docs/errors.md lists the same codes; test/unit/core/errors.test.ts keeps the two equal.
 */

interface ErrorSpec {
  readonly status: number
  readonly message: string
}

export const ERRORS = {
  // generic
  BECKON_ERR_CONFIG: { status: 500, message: 'invalid configuration' },
  BECKON_ERR_USAGE: { status: 400, message: 'invalid usage' },
  BECKON_ERR_INTERNAL: { status: 500, message: 'internal error' },
  BECKON_ERR_PROTOCOL: { status: 502, message: 'protocol violation' },
  BECKON_ERR_TIMEOUT: { status: 504, message: 'timed out' },

  // VICI (strongSwan control protocol)
  BECKON_ERR_VICI_MALFORMED: { status: 502, message: 'malformed VICI packet' },
  BECKON_ERR_VICI_LIMIT: { status: 500, message: 'VICI protocol limit exceeded' },
  BECKON_ERR_VICI_INVALID: { status: 500, message: 'message cannot be encoded for VICI' },
  BECKON_ERR_VICI_CONNECT: { status: 503, message: 'cannot connect to charon' },
  BECKON_ERR_VICI_CLOSED: { status: 503, message: 'VICI connection closed' },
  BECKON_ERR_VICI_TIMEOUT: { status: 504, message: 'VICI request timed out' },
  BECKON_ERR_VICI_UNKNOWN_COMMAND: { status: 500, message: 'charon does not know this command' },
  BECKON_ERR_VICI_UNKNOWN_EVENT: { status: 500, message: 'charon does not know this event' },
  BECKON_ERR_VICI_COMMAND_FAILED: { status: 502, message: 'charon refused the command' },

  // rendezvous: the client-facing CONNECT (statuses are what the client sees)
  BECKON_ERR_BAD_REQUEST: { status: 400, message: 'bad CONNECT request' },
  BECKON_ERR_AUTH_REQUIRED: { status: 407, message: 'proxy authentication required' },
  BECKON_ERR_AUTH_FAILED: { status: 407, message: 'invalid credentials' },
  BECKON_ERR_INSECURE_CREDENTIALS: { status: 403, message: 'Basic credentials refused on an unencrypted listener' },
  BECKON_ERR_FORBIDDEN: { status: 403, message: 'not allowed by the device policy' },
  BECKON_ERR_UNKNOWN_DEVICE: { status: 404, message: 'unknown device' },
  BECKON_ERR_RATE_LIMITED: { status: 429, message: 'too many requests' },
  BECKON_ERR_OVERLOADED: { status: 503, message: 'relay overloaded' },
  BECKON_ERR_WAKE_TIMEOUT: { status: 504, message: 'the terminal did not call back in time' },
  BECKON_ERR_TERMINAL_UNREACHABLE: { status: 502, message: 'the gateway could not reach the terminal' },
  BECKON_ERR_TERMINAL_REFUSED: { status: 502, message: 'the terminal refused the session' },
  BECKON_ERR_DIALBACK_REFUSED: { status: 403, message: 'dial-back refused' },
  BECKON_ERR_PROXY_REFUSED: { status: 502, message: 'the egress proxy refused the connection' },
  BECKON_ERR_DESCRIPTOR_INVALID: { status: 403, message: 'invalid session descriptor' },

  // access request signal (token) and dial-back
  BECKON_ERR_SIGNAL_MALFORMED: { status: 400, message: 'malformed signal token' },
  BECKON_ERR_SIGNAL_TOO_LARGE: { status: 500, message: 'signal does not fit one SMS' },
  BECKON_ERR_SIGNAL_UNKNOWN_KEY: { status: 403, message: 'signal from an untrusted relay key' },
  BECKON_ERR_SIGNAL_FORGED: { status: 403, message: 'forged signal' },
  BECKON_ERR_SIGNAL_EXPIRED: { status: 403, message: 'expired signal' },
  BECKON_ERR_SIGNAL_REPLAYED: { status: 403, message: 'replayed signal' },

  // signal channels (SMS over SMPP, e-mail)
  BECKON_ERR_CHANNEL_UNAVAILABLE: { status: 503, message: 'signal channel unavailable' },
  BECKON_ERR_CHANNEL_REFUSED: { status: 502, message: 'signal channel refused the message' },
  BECKON_ERR_SMS_MALFORMED: { status: 400, message: 'malformed SMS payload' },
  BECKON_ERR_MAIL_MALFORMED: { status: 400, message: 'malformed signal e-mail' },

  // IPsec data plane
  BECKON_ERR_RFC8229_MALFORMED: { status: 502, message: 'malformed RFC 8229 stream' },
  BECKON_ERR_IPSEC_FAILED: { status: 502, message: 'IPsec tunnel could not be established' },

  // control plane: store, management API, directory, policies
  BECKON_ERR_STORE: { status: 500, message: 'store operation failed' },
  BECKON_ERR_STORE_UNAVAILABLE: { status: 503, message: 'store unavailable' },
  BECKON_ERR_NOT_FOUND: { status: 404, message: 'not found' },
  BECKON_ERR_CONFLICT: { status: 409, message: 'already exists' },
  BECKON_ERR_VALIDATION: { status: 400, message: 'invalid request body' },
  BECKON_ERR_POLICY_INVALID: { status: 400, message: 'invalid IPsec policy' },
  BECKON_ERR_POLICY_REJECTED: { status: 422, message: 'charon rejected the generated connection' },
  BECKON_ERR_API_UNAUTHORIZED: { status: 401, message: 'missing or invalid API token' },
  BECKON_ERR_API_FORBIDDEN: { status: 403, message: 'the API token lacks the scope for this route' },
  BECKON_ERR_API_INSECURE: { status: 403, message: 'secrets are refused on an unencrypted listener' },
  BECKON_ERR_DIRECTORY_UNAVAILABLE: { status: 503, message: 'user directory unavailable' },
  BECKON_ERR_SESSION_ENDED: { status: 410, message: 'session ended' },
  BECKON_ERR_PATH_LOST: { status: 502, message: 'the path to the device was lost' },
  BECKON_ERR_RESUME_REFUSED: { status: 403, message: 'session resume refused' },
  BECKON_ERR_IMPORT_CONFLICT: { status: 409, message: 'devices both in relay.yaml and in the store' },

  // DNS steps A/B: publishing the device zone (RFC 2136 + TSIG) and resolving relays
  BECKON_ERR_DNS_MALFORMED: { status: 502, message: 'malformed DNS message' },
  BECKON_ERR_DNS_TSIG: { status: 502, message: 'DNS TSIG verification failed' },
  BECKON_ERR_DNS_UPDATE_REFUSED: { status: 502, message: 'the DNS server refused the update' },
  BECKON_ERR_DNS_UNAVAILABLE: { status: 503, message: 'DNS server unreachable' },
  BECKON_ERR_DNS_LOOKUP: { status: 502, message: 'no relay found in DNS' },
  BECKON_ERR_RELAYS_UNREACHABLE: { status: 503, message: 'no relay could be reached' },

  // lab / test network
  BECKON_ERR_LAB: { status: 500, message: 'lab network operation failed' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

export class BeckonError extends Error {
  readonly code: ErrorCode
  readonly status: number
  /** The specific part of the message (the table holds the generic part). */
  readonly detail: string | undefined

  constructor (code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const spec = ERRORS[code]
    super(detail === undefined ? spec.message : `${spec.message}: ${detail}`, options)
    this.name = 'BeckonError'
    this.code = code
    this.status = spec.status
    this.detail = detail
  }

  toJSON (): { code: ErrorCode, message: string } {
    return { code: this.code, message: this.message }
  }
}

export function isBeckonError (err: unknown, code?: ErrorCode): err is BeckonError {
  return err instanceof BeckonError && (code === undefined || err.code === code)
}

/** Wraps anything thrown into a BeckonError, keeping coded errors as they are. */
export function toBeckonError (err: unknown, fallback: ErrorCode = 'BECKON_ERR_INTERNAL'): BeckonError {
  if (err instanceof BeckonError) return err
  const msg = err instanceof Error ? err.message : String(err)
  return new BeckonError(fallback, msg, { cause: err })
}
