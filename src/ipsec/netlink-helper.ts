/**
 * `node netlink-helper.js <ipv6>`: adds the address to `lo` (rtnetlink) and exits.
 *
 * Run as a short-lived child on purpose: loading the `netlink` package's native addon
 * into a process made its socket splices ~40 % more expensive per byte (measured with
 * bench/splice's per-hop CPU: gateway 1.4 → 1.9–2.1 CPU-s/GiB), and the agent and the
 * client carry the data path. An address is added once per process, so a child is cheap.
 */
import { createRtNetlink } from 'netlink'
import { BeckonError, toBeckonError } from '../core/errors.js'
import { ipv6Bytes } from './addresses.js'

const AF_INET6 = 10

async function main (address: string): Promise<void> {
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
  } finally {
    rt.socket.close()
  }
}

main(process.argv[2] ?? '').then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(JSON.stringify({ error: toBeckonError(err, 'BECKON_ERR_IPSEC_FAILED').toJSON() }) + '\n')
  process.exit(1)
})
