/**
 * Hostile carrier networks as lab variants (`beckon lab up --net <variant>[,<variant>…]`).
 * Each is a real kernel, nftables, tc or daemon set-up in the lab's namespaces; nothing
 * here simulates a network in our own code.
 *
 *   double-nat         CGNAT: a second masquerading router between carrier-fw and the
 *                      Internet; 192.0.2.0/24 inside it stands in for 100.64.0.0/10.
 *
 *       [relay]──br-inet──[cgnat]──br-cgn 192.0.2.0/24──[carrier-fw]──br-carrier──[gateway]
 *                inet0 198.51.100.1   cgn0 .1      inet0 .2            carr0 203.0.113.1
 *
 *   symmetric-nat      `masquerade random,fully-random` on every NAT: a different external
 *                      port per connection (and so per destination).
 *   egress-proxy       carrier-fw forwards only the signal channels (SMPP to the SMSC, IMAPS
 *                      to the mail host: the operator's own elements); everything else must
 *                      go through Squid on a `proxy` node between the carrier and the
 *                      Internet, with Basic proxy authentication, CONNECT only:
 *                        carrier port 203.0.113.30:3128 → the relay's dial-back port only
 *                        client  port 198.51.100.60:3128 → the relay's CONNECT port only
 *   ipv6-only          the public side has IPv6 only (fd00:198:51:100::/64); the carrier
 *                      side is dual-stack (fd00:203:0:113::/64 beside 203.0.113.0/24).
 *                      carrier-fw routes IPv6 natively behind the same stateful filter
 *                      (new inbound dropped) and translates nothing: what mobile carriers
 *                      do for IPv6 (3GPP dual-stack bearers, RFC 6092 filtering; NAT66 is
 *                      not deployed, NAT64 would serve IPv6-only hosts reaching IPv4, the
 *                      other way round). The relay signals its IPv6 address.
 *   lossy              tc netem on both directions of the carrier link (carrier-fw ⇄
 *                      br-carrier): 2 % loss, 150 ms ± 30 ms delay, 25 % reordering. On a
 *                      kernel without netem (this one: "qdisc kind is unknown"; no fq,
 *                      sfq or cake either): 2 % loss each way from nftables (numgen) and
 *                      a 20 Mbit/s tbf bottleneck whose queue holds up to 150 ms — the
 *                      delay a loaded mobile link adds, but no fixed delay and no
 *                      reordering. Recorded in the lab state as `lossy: 'nft-loss-tbf'`.
 *   sleepy             the SMSC holds every message for the wake delay (eDRX/PSM paging)
 *                      and the device's wake timeout is long (10 min unless given).
 *   short-nat-timeout  carrier-fw's conntrack forgets idle established TCP after 30 s
 *                      (`nf_conntrack_tcp_timeout_established`, per namespace) and does not
 *                      pick up mid-stream packets (`nf_conntrack_tcp_loose=0`), so a
 *                      forgotten binding is a dead connection, as on a real CGNAT. The
 *                      gateway's keepalives (SMPP enquire_link, TCP keepalive on dial-backs)
 *                      are sized from its `nat_keepalive` setting, half the timeout.
 */
import { BeckonError } from '../core/errors.js'

export const NET_VARIANTS = ['double-nat', 'symmetric-nat', 'egress-proxy', 'ipv6-only', 'lossy', 'sleepy', 'short-nat-timeout'] as const
export type NetVariant = typeof NET_VARIANTS[number]

/** Nodes that exist only with some variants. */
export const VARIANT_NODES = ['cgnat', 'proxy'] as const
export type VariantNode = typeof VARIANT_NODES[number]

export interface NetOptions {
  variants: NetVariant[]
  /** sleepy: how long the SMSC holds a message (default 60 s). */
  wakeDelayMs?: number
  /** The device's wake timeout (default 10 s; sleepy: 10 min). */
  wakeTimeoutMs?: number
  /** short-nat-timeout: conntrack's established-TCP timeout in carrier-fw (default 30 s). */
  natTimeoutS?: number
  /** lossy: what the kernel allowed (netem: loss, delay, reordering; else loss + a tbf bottleneck). */
  lossy?: 'netem' | 'nft-loss-tbf'
}

/** Parses `--net a,b`; refuses unknown names and combinations that cannot coexist. */
export function parseNetVariants (spec: string): NetVariant[] {
  const names = spec.split(',').map((s) => s.trim()).filter(Boolean)
  for (const n of names) {
    if (!(NET_VARIANTS as readonly string[]).includes(n)) throw new BeckonError('BECKON_ERR_USAGE', `--net ${n}: unknown variant (known: ${NET_VARIANTS.join(', ')})`)
  }
  const v = [...new Set(names)] as NetVariant[]
  if (v.includes('ipv6-only') && v.includes('double-nat')) throw new BeckonError('BECKON_ERR_USAGE', '--net ipv6-only,double-nat: the IPv6 carrier is routed, not translated; there is no second NAT to put in front')
  if (v.includes('ipv6-only') && v.includes('egress-proxy')) throw new BeckonError('BECKON_ERR_USAGE', '--net ipv6-only,egress-proxy: the lab proxy listens on IPv4 only')
  return v
}

/** IPv6 addresses of the ipv6-only variant, per node and interface. */
export const V6 = {
  public: 'fd00:198:51:100::/64',
  carrier: 'fd00:203:0:113::/64',
  client: 'fd00:198:51:100::10/64',
  relay: 'fd00:198:51:100::20/64',
  smsc: 'fd00:198:51:100::30/64',
  mail: 'fd00:198:51:100::40/64',
  ldap: 'fd00:198:51:100::50/64',
  fwInet: 'fd00:198:51:100::1/64',
  fwCarrier: 'fd00:203:0:113::1/64',
  gateway: 'fd00:203:0:113::10/64',
  terminal: 'fd00:203:0:113::20/64',
}

export const CGNAT = { inside: '192.0.2.1/24', fwOutside: '192.0.2.2/24' }
export const PROXY = { carrier: '203.0.113.30/24', inet: '198.51.100.60/24', port: 3128 }

export interface FirewallOptions {
  /** Interface towards the protected side and towards the Internet. */
  inside: string
  outside: string
  /** symmetric-nat: a random external port per connection. */
  randomPorts?: boolean
  /** egress-proxy: forward only these `ip daddr tcp dport` pairs outward (plus replies). */
  allowOut?: Array<{ addr: string, port: number }>
  /** ipv6-only: let neighbour discovery reach the router on both sides. */
  ipv6?: boolean
}

/** A masquerading stateful firewall: nothing new comes in; out as allowed. */
export function firewallRules (o: FirewallOptions): string {
  const out = o.allowOut === undefined
    ? [`iifname "${o.inside}" oifname "${o.outside}" accept`]
    : [...o.allowOut.map((a) => `iifname "${o.inside}" oifname "${o.outside}" ip daddr ${a.addr} tcp dport ${a.port} accept`),
        `iifname "${o.inside}" oifname "${o.outside}" counter drop comment "egress not through the proxy: dropped"`]
  return `
table inet beckon_fw {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ${out.join('\n    ')}
    counter comment "new inbound: dropped"
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    iifname "${o.inside}" icmp type echo-request accept${o.ipv6 === true ? `
    iifname "${o.inside}" icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept
    iifname "${o.outside}" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept` : ''}
  }
}
table ip beckon_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat;
    oifname "${o.outside}" masquerade${o.randomPorts === true ? ' random,fully-random' : ''}
  }
}
`
}

/**
 * Without netem in the kernel (CONFIG_NET_SCH_NETEM unset, as on this project's CI
 * machines) the lossy variant keeps the loss, from nftables' random number generator, and
 * reports that delay and reordering are missing: packets forwarded to or from the carrier
 * link are dropped with probability 2 %.
 */
export const LOSS_RULES = `
table inet beckon_lossy {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "carr0" numgen random mod 100 < 2 counter drop comment "lossy: uplink"
    oifname "carr0" numgen random mod 100 < 2 counter drop comment "lossy: downlink"
  }
}
`

/** `tc qdisc` arguments for one direction of the lossy carrier link. */
/** Without netem: a 20 Mbit/s bottleneck whose queue adds up to 150 ms under load. */
export function tbfArgs (dev: string): string[] {
  return ['qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', '20mbit', 'burst', '32kb', 'latency', '150ms']
}

export function netemArgs (dev: string): string[] {
  return ['qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', '150ms', '30ms', 'distribution', 'normal', 'loss', '2%', 'reorder', '25%', '50%', 'limit', '10000']
}

/**
 * Squid for the egress-proxy variant: listens on the proxy node's two lab addresses
 * only, demands Basic proxy authentication, and allows nothing but CONNECT to the
 * relay's dial-back port (carrier port) or the relay's CONNECT port (client port).
 * No cache, no disk, logs under `dir`.
 */
export function squidConfig (o: { dir: string, relay: string, dialbackPort: number, clientPort: number, passwd: string }): string {
  const carrierIp = PROXY.carrier.split('/')[0]!
  const inetIp = PROXY.inet.split('/')[0]!
  return `# Beckon lab egress proxy (src/lab/variants.ts); generated, do not edit.
http_port ${carrierIp}:${PROXY.port} name=carrier
http_port ${inetIp}:${PROXY.port} name=clients
pid_filename ${o.dir}/squid.pid
access_log stdio:${o.dir}/access.log
cache_log ${o.dir}/cache.log
cache_store_log none
cache deny all
cache_mem 8 MB
cache_effective_user proxy
coredump_dir ${o.dir}
shutdown_lifetime 1 seconds
dns_nameservers 127.0.0.1
auth_param basic program /usr/lib/squid/basic_ncsa_auth ${o.passwd}
auth_param basic realm beckon-lab-egress
acl lab_src src 203.0.113.0/24 198.51.100.0/24
acl relay dst ${o.relay}
acl carrier_port myportname carrier
acl clients_port myportname clients
acl dialback port ${o.dialbackPort}
acl relay_connect port ${o.clientPort}
acl CONNECT method CONNECT
acl authed proxy_auth REQUIRED
http_access deny !lab_src
http_access deny !CONNECT
http_access deny !relay
http_access deny carrier_port !dialback
http_access deny clients_port !relay_connect
http_access allow authed
http_access deny all
`
}
