/**
 * A device's IPsec policy: the checks a JSON schema cannot express, and the grant the
 * relay derives from it for one user.
 *
 * A policy becomes, per session, one charon connection (tunnels.ts `connConfig`): IKE
 * `proposals` and child `esp_proposals` taken verbatim (grammar: proposals.ts, after
 * strongSwan's "IKEv2 Cipher Suites",
 * https://docs.strongswan.org/docs/5.9/config/IKEv2CipherSuites.html), and traffic
 * selectors on the terminal's side, one per granted port (`fd00::2/128[tcp/8080]`).
 * Hence the rules here:
 *   - a rule names at least one user or group, and those exist (when the caller knows
 *     the full directory; LDAP users may be unknown to the store);
 *   - a rule lists ports: without them the selector would be `protocol: any`, i.e. every
 *     port of the terminal, which the agent always refuses;
 *   - raw TCP needs `policy.raw_tcp` and protocol tcp;
 *   - the same (protocol, port) is granted once per user and per group name: two rules
 *     granting it to the same principal are a mistake waiting to diverge;
 *   - ports are the device's services when it lists any;
 *   - a CHILD_SA rekeys before its IKE_SA, and DPD fires between rekeys.
 * Errors are BECKON_ERR_POLICY_INVALID with the path of the field, e.g.
 * `policy.rules[2].ports[0]: tcp/8080 already granted to group physicians by policy.rules[0]`.
 */
import { BeckonError } from '../core/errors.js'
import type { Device, Policy, PolicyRule } from '../store/records.js'
import { validateProposals } from './proposals.js'

export interface PolicyContext {
  device: Device
  /** Every user name that may appear; undefined = unknown (LDAP), not checked. */
  knownUsers?: Set<string>
  /** Every group name that may appear; undefined = not checked. */
  knownGroups?: Set<string>
}

function invalid (detail: string): BeckonError {
  return new BeckonError('BECKON_ERR_POLICY_INVALID', detail)
}

/** Throws BECKON_ERR_POLICY_INVALID naming the first offending field. */
export function validatePolicy (policy: Policy, ctx: PolicyContext): void {
  validateProposals('policy.ike_proposals', policy.ike_proposals, 'ike')
  validateProposals('policy.esp_proposals', policy.esp_proposals, 'esp')
  checkLifetimes(policy)
  const services = ctx.device.services ?? []
  policy.rules.forEach((rule, i) => checkRule(policy, rule, `policy.rules[${i}]`, ctx, services))
  checkOverlaps(policy.rules)
  // psk mode seals each session's PSK for the agent's X25519 key: without the key every
  // IPsec CONNECT would fail after the signal — refuse it here instead.
  if (policy.auth === 'psk' && ctx.device.agent_public_key === undefined && policy.rules.some((r) => r.ipsec)) {
    throw invalid(`policy.auth: psk needs device ${ctx.device.name}'s agent_public_key (PSKs are sealed for the agent); set it, or use pubkey`)
  }
}

function checkLifetimes (p: Policy): void {
  if (p.child_rekey_s > p.ike_rekey_s) {
    throw invalid(`policy.child_rekey_s: ${p.child_rekey_s} s exceeds policy.ike_rekey_s (${p.ike_rekey_s} s); the CHILD_SA must rekey no later than its IKE_SA`)
  }
  if (p.dpd_s >= p.child_rekey_s) {
    // DPD is what notices a dead or moved path between rekeys (see the notes, §6).
    throw invalid(`policy.dpd_s: ${p.dpd_s} s must be below policy.child_rekey_s (${p.child_rekey_s} s)`)
  }
}

function checkRule (policy: Policy, rule: PolicyRule, at: string, ctx: PolicyContext, services: Device['services']): void {
  const users = rule.users ?? []
  const groups = rule.groups ?? []
  const ports = rule.ports ?? []
  if (users.length === 0 && groups.length === 0) throw invalid(`${at}: names no user or group, so it grants nothing`)
  if (ctx.knownUsers !== undefined) {
    users.forEach((u, j) => { if (!ctx.knownUsers!.has(u)) throw invalid(`${at}.users[${j}]: unknown user ${u}`) })
  }
  if (ctx.knownGroups !== undefined) {
    groups.forEach((g, j) => { if (!ctx.knownGroups!.has(g)) throw invalid(`${at}.groups[${j}]: unknown group ${g}`) })
  }
  if (ports.length === 0) {
    throw invalid(`${at}.ports: empty; a rule without ports would make the traffic selector protocol "any" (every port of the terminal), which the agent always refuses — list the ports`)
  }
  if (!rule.ipsec && !rule.raw_tcp) throw invalid(`${at}: grants neither ipsec nor raw_tcp`)
  if (rule.raw_tcp && !policy.raw_tcp) throw invalid(`${at}.raw_tcp: needs policy.raw_tcp (raw TCP is off for this device)`)
  if (rule.raw_tcp && rule.protocol !== 'tcp') throw invalid(`${at}.raw_tcp: needs protocol tcp, not ${rule.protocol}`)
  const seen = new Set<number>()
  ports.forEach((port, k) => {
    const sel = `${rule.protocol}/${port}`
    if (seen.has(port)) throw invalid(`${at}.ports[${k}]: ${sel} listed twice`)
    seen.add(port)
    if (services.length > 0 && !services.some((s) => s.port === port && s.protocol === rule.protocol)) {
      const offered = services.map((s) => `${s.name} ${s.protocol}/${s.port}`).join(', ')
      throw invalid(`${at}.ports[${k}]: ${sel} is not a service of device ${ctx.device.name} (${offered})`)
    }
  })
}

function checkOverlaps (rules: readonly PolicyRule[]): void {
  // (protocol/port, "user x" | "group y") → index of the first rule granting it.
  const granted = new Map<string, number>()
  rules.forEach((rule, i) => {
    const principals = [...(rule.users ?? []).map((u) => `user ${u}`), ...(rule.groups ?? []).map((g) => `group ${g}`)]
    rule.ports.forEach((port, k) => {
      const sel = `${rule.protocol}/${port}`
      for (const who of principals) {
        const first = granted.get(`${sel} ${who}`)
        if (first !== undefined && first !== i) throw invalid(`policy.rules[${i}].ports[${k}]: ${sel} already granted to ${who} by policy.rules[${first}]`)
        granted.set(`${sel} ${who}`, i)
      }
    })
  })
}

/** What one user may open on one device. */
export interface Grant {
  /** The selectors' protocol: tcp when any tcp port is granted over IPsec, else udp. */
  protocol: 'tcp' | 'udp'
  /** Every port of `protocol` granted in either mode, sorted. */
  ports: number[]
  /** Ports an IPsec session's selectors carry (of `protocol`), sorted; empty = no IPsec. */
  ipsec: number[]
  /** TCP ports a raw TCP session may reach, sorted; empty unless policy.raw_tcp. */
  rawTcp: number[]
}

/**
 * The union of what the rules naming this user (or one of its groups) give it. One
 * session carries one protocol in its selectors (IpsecParams.protocol), so a user
 * granted tcp and udp ports over IPsec gets the tcp ones. Ports that are not services
 * of a device listing services are left out (a policy older than a service change).
 */
export function grantFor (policy: Policy, device: Device, user: { name: string, groups: readonly string[] }): Grant {
  const services = device.services ?? []
  const offered = (protocol: 'tcp' | 'udp', port: number): boolean => services.length === 0 || services.some((s) => s.port === port && s.protocol === protocol)
  const ipsec = { tcp: new Set<number>(), udp: new Set<number>() }
  const rawTcp = new Set<number>()
  for (const r of policy.rules) {
    if (!((r.users ?? []).includes(user.name) || (r.groups ?? []).some((g) => user.groups.includes(g)))) continue
    for (const port of r.ports) {
      if (!offered(r.protocol, port)) continue
      if (r.ipsec) ipsec[r.protocol].add(port)
      if (r.raw_tcp && policy.raw_tcp && r.protocol === 'tcp') rawTcp.add(port)
    }
  }
  const sorted = (s: Iterable<number>): number[] => [...new Set(s)].sort((a, b) => a - b)
  const protocol = ipsec.tcp.size > 0 || ipsec.udp.size === 0 ? 'tcp' : 'udp'
  const ipsecPorts = sorted(ipsec[protocol])
  const raw = sorted(rawTcp)
  return {
    protocol,
    ports: protocol === 'tcp' ? sorted([...ipsecPorts, ...raw]) : ipsecPorts,
    ipsec: ipsecPorts,
    rawTcp: raw,
  }
}
