/**
 * How CLI commands print results and coded errors. Results go to stdout as JSON;
 * errors go to stderr as `{"error":{"code","message"}}` with a non-zero exit status
 * (2 for usage errors, 1 otherwise), so scripts can branch on the code.
 */
import { toBeckonError } from '../core/errors.js'

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n')
}

export function exitWithError (err: unknown): never {
  const e = toBeckonError(err)
  process.stderr.write(JSON.stringify({ error: e.toJSON() }) + '\n')
  process.exit(e.code === 'BECKON_ERR_USAGE' ? 2 : 1)
}

/**
 * Runs `stop` on the first SIGINT/SIGTERM. The handlers stay installed, so a repeated
 * signal (a supervisor and a shell both forwarding one) cannot cut the cleanup short.
 */
export function onTerminate (stop: (signal: NodeJS.Signals) => Promise<unknown> | void): void {
  let stopping = false
  const handler = (sig: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    void Promise.resolve(stop(sig)).catch(() => {})
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
}
