/**
 * Several directories behind one: the relay's local users first, then LDAP, say.
 *
 * A directory that does not know the user (BECKON_ERR_AUTH_FAILED) hands on to the next.
 * One that is down (BECKON_ERR_DIRECTORY_UNAVAILABLE, or anything uncoded) is remembered
 * and also skipped; if no later directory authenticates, the outage is what the caller
 * sees (503), never "invalid credentials" (407): a physician whose directory is down
 * must learn that it is down, not that their password is wrong.
 */
import { BeckonError, isBeckonError } from '../core/errors.js'
import type { Credentials } from '../proto/connect/connect.js'
import type { Directory, User } from './directory.js'

export class ChainDirectory implements Directory {
  private readonly directories: readonly Directory[]

  constructor (directories: readonly Directory[]) {
    this.directories = [...directories]
  }

  async authenticate (c: Credentials): Promise<User> {
    let outage: BeckonError | undefined
    for (const d of this.directories) {
      try {
        return await d.authenticate(c)
      } catch (err) {
        if (isBeckonError(err, 'BECKON_ERR_AUTH_FAILED')) continue
        outage ??= isBeckonError(err, 'BECKON_ERR_DIRECTORY_UNAVAILABLE')
          ? err
          : new BeckonError('BECKON_ERR_DIRECTORY_UNAVAILABLE', err instanceof Error ? err.message : String(err), { cause: err })
      }
    }
    throw outage ?? new BeckonError('BECKON_ERR_AUTH_FAILED', c.scheme === 'basic' ? `user ${c.user}` : 'unknown bearer token')
  }
}
