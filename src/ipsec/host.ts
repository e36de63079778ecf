/**
 * Puts a permanent address on this host, so kernel-libipsec can use it as the source of
 * the route it installs through its TUN (table 220, `src <local TS address>`). It goes on
 * `lo` as a /128 without DAD: usable at once, belonging to no link. The rtnetlink work
 * runs in netlink-helper.ts as a child process (see there why).
 */
import { fileURLToPath } from 'node:url'
import { BeckonError } from '../core/errors.js'
import { run } from '../core/exec.js'

const HELPER = fileURLToPath(new URL('./netlink-helper.js', import.meta.url))

export interface HostAddresses {
  ensure (address: string): Promise<void>
}

export class NetlinkHostAddresses implements HostAddresses {
  private readonly done = new Set<string>()

  async ensure (address: string): Promise<void> {
    if (this.done.has(address)) return
    const r = await run(process.execPath, [HELPER, address], { allowFail: true, timeoutMs: 10_000 })
    if (r.code !== 0) {
      let msg = r.stderr.trim()
      try { msg = (JSON.parse(msg) as { error: { message: string } }).error.message } catch { /* raw stderr */ }
      throw new BeckonError('BECKON_ERR_IPSEC_FAILED', `cannot add ${address}: ${msg}`)
    }
    this.done.add(address)
  }
}
