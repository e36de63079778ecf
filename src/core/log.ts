/**
 * pino loggers: one root per process, children per role and per session.
 *
 * Secrets (passwords, PSKs, session keys, tokens, authorization headers) are redacted
 * by path so that a careless `log.info({ conf })` cannot leak them. Keep the key names
 * used for secrets across the code base to this list.
 */
import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

const SECRET_KEYS = [
  'password', 'passwd', 'secret', 'psk', 'data', 'key', 'privateKey', 'sessionKey',
  'token', 'adminToken', 'authorization', 'proxy-authorization', 'cookie',
]

/** Redaction paths for secret keys at the top level and up to three levels down. */
export const REDACT_PATHS: string[] = SECRET_KEYS.flatMap((k) => {
  const p = /^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`
  const dot = p.startsWith('[') ? '' : '.'
  return [p, `*${dot}${p}`, `*.*${dot}${p}`, `*.*.*${dot}${p}`]
})

export interface LogOptions {
  level?: string
  name?: string
  /** Defaults to stdout; CLI tools that print results on stdout log to stderr (fd 2). */
  destination?: DestinationStream | number
}

export function createLogger (opts: LogOptions = {}): Logger {
  const dest = typeof opts.destination === 'number'
    ? pino.destination({ dest: opts.destination, sync: true })
    : opts.destination
  const options = {
    level: opts.level ?? process.env.BECKON_LOG_LEVEL ?? 'info',
    base: opts.name === undefined ? {} : { role: opts.name },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  }
  return dest === undefined ? pino(options) : pino(options, dest)
}

/** A logger that discards everything (library default). */
export const silentLogger: Logger = pino({ level: 'silent' })
