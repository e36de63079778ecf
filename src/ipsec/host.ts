/**
 * Puts a permanent address on this host (rtnetlink, via the `netlink` package), so
 * kernel-libipsec can use it as the source of the route it installs through its TUN
 * (table 220, `src <local TS address>`). It goes on `lo` as a /128 without DAD: the
 * address must be usable at once and belongs to no link.
 */
import { createRtNetlink } from 'netlink'
import { BeckonError } from '../core/errors.js'
import { ipv6Bytes } from './addresses.js'

const AF_INET6 = 10

export interface HostAddresses {
  ensure (address: string): Promise<void>
}

export class NetlinkHostAddresses implements HostAddresses {
  private readonly done = new Set<string>()

  async ensure (address: string): Promise<void> {
    if (this.done.has(address)) return
    const bytes = ipv6Bytes(address)
    const rt = createRtNetlink()
    try {
      const lo = (await rt.getLinks()).find((l) => l.attrs.ifname === 'lo')
      if (lo?.data.index === undefined) throw new BeckonError('BECKON_ERR_IPSEC_FAILED', 'no loopback interface')
      try {
        await rt.newAddress({ family: AF_INET6, prefixlen: 128, index: lo.data.index, flags: { nodad: true, permanent: true } }, { address: bytes, local: bytes })
      } catch (err) {
        if (!/EEXIST/.test(String((err as Error).message))) throw new BeckonError('BECKON_ERR_IPSEC_FAILED', `adding ${address}: ${(err as Error).message}`)
      }
      this.done.add(address)
    } finally {
      rt.socket.close()
    }
  }
}

/** For unit tests: records instead of touching the host. */
export class MemoryHostAddresses implements HostAddresses {
  readonly added: string[] = []
  async ensure (address: string): Promise<void> { if (!this.added.includes(address)) this.added.push(address) }
}
