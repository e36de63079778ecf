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
