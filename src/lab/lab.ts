/**
 * The namespace lab: the test network of docs/architecture.md on one host.
 *
 *   [client]──┐                             ┌──[relay]  (+ management API on its 127.0.0.1:8444)
 *   [smsc]────┤ internet 198.51.100.0/24    ├──[mail]
 *   [ldap]────┤                             │
 *             └─────────[switch: br-inet]───┴──[carrier-fw] nftables: masquerade out,
 *                                                   │           drop every new inbound
 *                                                   │ carrier 203.0.113.0/24
 *                              [gateway]──[switch: br-carrier]──[terminal]
 *
 * Every node is a namespace `<prefix>-<node>`; both bridges live in `<prefix>-switch`.
 * Internet nodes route 203.0.113.0/24 via the firewall, so a direct connection to the
 * terminal reaches carrier-fw and is dropped there (not merely unroutable).
 * `up` writes configs, keys, a lab CA and the relay's certificate under the state
 * directory, starts each role as its own process in its node, and waits for readiness.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify as toYaml } from 'yaml'
import { BeckonError, ERRORS, type ErrorCode } from '../core/errors.js'
import { generateRawKeyPair } from '../core/keys.js'
import { hashPassword } from '../directory/directory.js'
import { permanentAddress } from '../ipsec/addresses.js'
import { caInit, caIssue } from '../ipsec/ca.js'
import { ViciSession } from '../proto/vici/session.js'
import { CHARON_BIN, strongswanConf } from './charon.js'
import { MAIL_DOMAIN, writeMailConfig } from './mail.js'
import { run, waitFor } from '../core/exec.js'
import { Netns, createNetns, deleteNetns, listNetns, veth } from './netns.js'
import { LAB_LDAP_SUFFIX, slapdCommand, writeLdapConfig } from './ldap.js'
import { namedCommand, writeBindConfig } from './bind.js'
import { CGNAT, LOSS_RULES, PROXY, V6, firewallRules, netemArgs, squidConfig, tbfArgs, type NetOptions, type NetVariant, type VariantNode } from './variants.js'

export const NODE_NAMES = ['client', 'relay', 'smsc', 'mail', 'ldap', 'dns', 'carrier-fw', 'gateway', 'terminal'] as const
export type NodeName = typeof NODE_NAMES[number]

/** Addresses per node and interface (documentation ranges only). */
export const ADDRESSES: Record<NodeName, Record<string, string>> = {
  client: { eth0: '198.51.100.10/24' },
  relay: { eth0: '198.51.100.20/24' },
  smsc: { eth0: '198.51.100.30/24' },
  mail: { eth0: '198.51.100.40/24' },
  ldap: { eth0: '198.51.100.50/24' },
  dns: { eth0: '198.51.100.53/24' },
  'carrier-fw': { inet0: '198.51.100.1/24', carr0: '203.0.113.1/24' },
  gateway: { eth0: '203.0.113.10/24' },
  terminal: { eth0: '203.0.113.20/24' },
}
const PUBLIC = ['client', 'relay', 'smsc', 'mail', 'ldap'] as const
const CARRIER = ['gateway', 'terminal'] as const

export const PORTS = { relayClient: 8443, relayDialback: 7001, api: 8444, smpp: 2775, agent: 7400, service: 8080, sink: 9000, ldap: 389, ldaps: 636, dns: 53 }
export const DEVICE = { name: 'patient-phone', msisdn: '+15550100' }

const PKG_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const BECKON_MAIN = join(PKG_ROOT, 'dist/cli/main.js')
const GLUCOSE = join(PKG_ROOT, 'examples/telemedicine/glucose-service.mjs')
const SINK = join(PKG_ROOT, 'bench/sink.mjs')

export interface LabProcess { node: NodeName | VariantNode, pid: number, log: string, cmd: string[] }

export interface LabState {
  prefix: string
  stateDir: string
  nodes: Record<NodeName, { netns: string, addresses: Record<string, string> }> & Partial<Record<VariantNode, { netns: string, addresses: Record<string, string> }>>
  /** The carrier network's variants (src/lab/variants.ts) and their settings. */
  net: NetOptions & { proxy?: { carrier: string, clients: string, user: string, password: string, accessLog: string, clientUrl: string } }
  relay: { client: string, dialback: string, ca: string }
  terminal: { device: string, msisdn: string, agent: string, services: string[], permanentAddress: string }
  user: { name: string, password: string, permanentAddress: string }
  /** A second physician, for two users holding tunnels at once. */
  user2: { name: string, password: string, permanentAddress: string }
  visitor: { name: string, password: string }
  ipsec: { prefix: string, domain: string, auth: 'psk' | 'pubkey', terminalAddress: string, clientVici: string, terminalVici: string, ca: string }
  clientConfig: string
  channels: Array<'sms' | 'email'>
  mail: { smtp: string, imap: string, gatewayMailbox: string, relaySender: string, postfixConfig: string, dovecotConfig: string }
  /** The management API, reachable inside the relay node (`beckon lab exec relay -- beckon …`). */
  api: { url: string, ca: string, token: string, netns: string }
  /** slapd in the ldap node: dr-grey (physicians) and dr-house (cardiologists). */
  ldap: { url: string, suffix: string }
  /** BIND 9 in the dns node: primary for the zone, updated by the relay (TSIG key `key`). */
  dns: { server: string, zone: string, key: string, relayHost: string }
  processes: Record<string, LabProcess>
}

export interface LabOptions {
  stateDir: string
  prefix: string
  /** Also run the bench sink on the terminal (port 9000) and allow it by policy. */
  sink?: boolean
  /** IPsec authentication for the sample device (default psk). */
  ipsecAuth?: 'psk' | 'pubkey'
  /** The sample device's signal channels, in order (default ['sms']). */
  channels?: Array<'sms' | 'email'>
  /** API requests per minute per client address (default 1200; benches raise it). */
  apiRateLimit?: number
  /** Carrier network variants (src/lab/variants.ts), e.g. ['double-nat', 'lossy']. */
  net?: NetVariant[]
  /** sleepy: how long the SMSC holds a message (default 60 s). */
  wakeDelayMs?: number
  /** The device's wake timeout (default 10 s; with sleepy 10 min). */
  wakeTimeoutMs?: number
  /** short-nat-timeout: carrier-fw's idle TCP binding lifetime (default 30 s). */
  natTimeoutS?: number
}

const ip = (cidr: string): string => cidr.split('/')[0]!
/** host:port, IPv6 in brackets. */
const hp = (addr: string, port: number): string => addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`

/** The nodes' addresses under the given variants (public side IPv6 with ipv6-only). */
export function labAddresses (net: readonly NetVariant[]): Record<NodeName, Record<string, string>> & Partial<Record<VariantNode, Record<string, string>>> {
  const a: Record<string, Record<string, string>> = structuredClone(ADDRESSES)
  if (net.includes('ipv6-only')) {
    for (const n of PUBLIC) a[n] = { eth0: V6[n] }
    a['carrier-fw'] = { inet0: V6.fwInet, carr0: ADDRESSES['carrier-fw'].carr0!, carr0v6: V6.fwCarrier }
    a.gateway = { eth0: ADDRESSES.gateway.eth0!, eth0v6: V6.gateway }
    a.terminal = { eth0: ADDRESSES.terminal.eth0!, eth0v6: V6.terminal }
  }
  if (net.includes('double-nat')) {
    a['carrier-fw']!.inet0 = CGNAT.fwOutside
    a.cgnat = { cgn0: CGNAT.inside, inet0: ADDRESSES['carrier-fw'].inet0! }
  }
  if (net.includes('egress-proxy')) a.proxy = { carr0: PROXY.carrier, inet0: PROXY.inet }
  return a as ReturnType<typeof labAddresses>
}

function statePath (dir: string): string { return join(dir, 'lab.json') }

export function readLabState (stateDir: string): LabState {
  const p = statePath(stateDir)
  if (!existsSync(p)) throw new BeckonError('BECKON_ERR_LAB', `no lab at ${stateDir} (run beckon lab up)`)
  return JSON.parse(readFileSync(p, 'utf8')) as LabState
}

function nodeNs (prefix: string, node: NodeName | 'switch'): Netns {
  return new Netns(`${prefix}-${node}`)
}

// ---- network --------------------------------------------------------------------

async function buildNetwork (prefix: string, net: NetOptions): Promise<void> {
  const v = (x: NetVariant): boolean => net.variants.includes(x)
  const A = labAddresses(net.variants)
  const sw = await createNetns(`${prefix}-switch`)
  await sw.ip('link', 'add', 'br-inet', 'type', 'bridge')
  await sw.ip('link', 'add', 'br-carrier', 'type', 'bridge')
  await sw.up('br-inet')
  await sw.up('br-carrier')
  if (v('double-nat')) {
    await sw.ip('link', 'add', 'br-cgn', 'type', 'bridge')
    await sw.up('br-cgn')
  }
  const names: Array<NodeName | VariantNode> = [...NODE_NAMES, ...(v('double-nat') ? ['cgnat' as const] : []), ...(v('egress-proxy') ? ['proxy' as const] : [])]
  const ns = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await createNetns(`${prefix}-${n}`)] as const))) as Record<NodeName | VariantNode, Netns>
  // IPv6 forwarding and addresses without router advertisements or DAD delays.
  for (const n of names) await ns[n].exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_ra=0', 'net.ipv6.conf.default.accept_ra=0'])

  const attach = async (node: NodeName | VariantNode, ifName: string, bridge: string, swIf: string): Promise<void> => {
    await veth(ns[node], ifName, sw, swIf)
    await sw.ip('link', 'set', swIf, 'master', bridge)
    for (const [k, cidr] of Object.entries(A[node] ?? {})) if (k === ifName || k === `${ifName}v6`) await ns[node].addAddress(ifName, cidr)
  }
  for (const n of PUBLIC) await attach(n, 'eth0', 'br-inet', `i-${n}`)
  await attach('carrier-fw', 'inet0', v('double-nat') ? 'br-cgn' : 'br-inet', v('double-nat') ? 'g-fw' : 'i-fw')
  await attach('carrier-fw', 'carr0', 'br-carrier', 'c-fw')
  for (const n of CARRIER) await attach(n, 'eth0', 'br-carrier', `c-${n}`)
  if (v('double-nat')) {
    await attach('cgnat', 'cgn0', 'br-cgn', 'g-cgnat')
    await attach('cgnat', 'inet0', 'br-inet', 'i-cgnat')
  }
  if (v('egress-proxy')) {
    await attach('proxy', 'carr0', 'br-carrier', 'c-proxy')
    await attach('proxy', 'inet0', 'br-inet', 'i-proxy')
  }

  // Public nodes know the carrier range lies behind the firewall (the outermost NAT);
  // carrier nodes use it as their default gateway (their only way out).
  const edge = v('double-nat') ? A.cgnat!.inet0! : A['carrier-fw'].inet0!
  if (v('ipv6-only')) {
    for (const n of PUBLIC) await ns[n].ip('-6', 'route', 'add', V6.carrier, 'via', ip(V6.fwInet))
    for (const n of CARRIER) await ns[n].ip('-6', 'route', 'add', 'default', 'via', ip(V6.fwCarrier))
  } else {
    for (const n of PUBLIC) await ns[n].ip('route', 'add', '203.0.113.0/24', 'via', ip(edge))
  }
  for (const n of CARRIER) await ns[n].ip('route', 'add', 'default', 'via', ip(A['carrier-fw'].carr0!))

  const fw = ns['carrier-fw']
  await fw.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
  const allowOut = v('egress-proxy')
    ? [{ addr: ip(A.smsc.eth0!), port: PORTS.smpp }, { addr: ip(A.mail.eth0!), port: 993 }]
    : undefined
  await fw.exec('nft', ['-f', '-'], { input: firewallRules({ inside: 'carr0', outside: 'inet0', randomPorts: v('symmetric-nat'), allowOut, ipv6: v('ipv6-only') }) })
  if (v('double-nat')) {
    // The CGNAT: carrier-fw's outside is a private range; this router shares one
    // public address among all carriers' firewalls behind it.
    await fw.ip('route', 'add', 'default', 'via', ip(CGNAT.inside))
    const cg = ns.cgnat
    await cg.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
    await cg.ip('route', 'add', '203.0.113.0/24', 'via', ip(CGNAT.fwOutside))
    await cg.exec('nft', ['-f', '-'], { input: firewallRules({ inside: 'cgn0', outside: 'inet0', randomPorts: v('symmetric-nat') }) })
  }
  if (v('egress-proxy')) {
    // The proxy is dual-homed between the carrier and the Internet; it forwards nothing.
    await ns.proxy.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=0'])
  }
  if (v('short-nat-timeout')) {
    // conntrack's sysctls are per namespace: this NAT forgets, the host does not.
    await fw.exec('sysctl', ['-qw', `net.netfilter.nf_conntrack_tcp_timeout_established=${net.natTimeoutS ?? 30}`, 'net.netfilter.nf_conntrack_tcp_loose=0'])
  }
  if (v('lossy')) {
    // Both directions of the carrier link: downlink leaves carrier-fw's carr0, uplink
    // leaves the switch's port towards carrier-fw.
    const netem = await fw.exec('tc', netemArgs('carr0'), { allowFail: true })
    if (netem.code === 0) {
      await sw.exec('tc', netemArgs('c-fw'))
      net.lossy = 'netem'
    } else if (/qdisc kind is unknown/.test(netem.stderr)) {
      await fw.exec('nft', ['-f', '-'], { input: LOSS_RULES })
      await fw.exec('tc', tbfArgs('carr0'))
      await sw.exec('tc', tbfArgs('c-fw'))
      net.lossy = 'nft-loss-tbf'
    } else throw new BeckonError('BECKON_ERR_LAB', `tc netem on carr0: ${netem.stderr.trim()}`)
  }
}

/** carrier-fw: masquerade what leaves the carrier; nothing new comes in. */
export const FIREWALL_RULES = firewallRules({ inside: 'carr0', outside: 'inet0' })

// ---- the dns node --------------------------------------------------------------------

export const LAB_ZONE = 'lab.beckon.example'

/** `ip netns exec <ns>` bind-mounts the files of this directory over /etc (resolv.conf here). */
const resolvConfDir = (netns: string): string => join('/etc/netns', netns)

/**
 * The dns node joins the internet bridge (kept out of buildNetwork, which the network
 * variants own), and the client node's resolver points at it: BIND answers for the zone
 * and refuses recursion, so nothing leaves the lab.
 */
async function attachDnsNode (prefix: string): Promise<void> {
  const sw = nodeNs(prefix, 'switch')
  const dns = nodeNs(prefix, 'dns')
  await veth(dns, 'eth0', sw, 'i-dns')
  await sw.ip('link', 'set', 'i-dns', 'master', 'br-inet')
  await dns.addAddress('eth0', ADDRESSES.dns.eth0!)
  const dir = resolvConfDir(`${prefix}-client`)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'resolv.conf'), `# beckon lab ${prefix}: the dns node (authoritative for ${LAB_ZONE} only)\nnameserver ${ip(ADDRESSES.dns.eth0!)}\noptions timeout:1 attempts:2\n`)
}

// ---- configs and credentials --------------------------------------------------------

async function makeTls (dir: string, A: Record<NodeName, Record<string, string>>): Promise<{ ca: string, cert: string, key: string, mailCert: string, mailKey: string, ldapCert: string, ldapKey: string, apiCert: string, apiKey: string }> {
  const o = (f: string): string => join(dir, f)
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', o('ca.key'), '-out', o('ca.crt'), '-days', '30', '-subj', '/CN=Beckon lab CA'])
  const issue = async (name: string, host: string, addr: string): Promise<void> => {
    writeFileSync(o(`${name}.ext`), `subjectAltName=IP:${addr},DNS:${host}\n`)
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', o(`${name}.key`), '-out', o(`${name}.csr`), '-subj', `/CN=${host}`])
    await run('openssl', ['x509', '-req', '-in', o(`${name}.csr`), '-CA', o('ca.crt'), '-CAkey', o('ca.key'), '-CAcreateserial', '-out', o(`${name}.crt`), '-days', '30', '-extfile', o(`${name}.ext`)])
  }
  await issue('relay', 'relay.lab.beckon.example', ip(A.relay.eth0!))
  await issue('mail', `mail.${MAIL_DOMAIN}`, ip(A.mail.eth0!))
  await issue('ldap', 'ldap.lab.beckon.example', ip(A.ldap.eth0!))
  await issue('api', 'api.lab.beckon.example', '127.0.0.1')
  chmodSync(o('mail.key'), 0o600)
  return { ca: o('ca.crt'), cert: o('relay.crt'), key: o('relay.key'), mailCert: o('mail.crt'), mailKey: o('mail.key'), ldapCert: o('ldap.crt'), ldapKey: o('ldap.key'), apiCert: o('api.crt'), apiKey: o('api.key') }
}

function writeYaml (path: string, v: unknown): void {
  writeFileSync(path, toYaml(v), { mode: 0o600 })
}

// ---- processes ----------------------------------------------------------------------

function startProcess (st: LabState, name: string, node: NodeName | VariantNode, cmd: string[], env?: Record<string, string>): LabProcess {
  const log = join(st.stateDir, 'logs', `${name}.log`)
  const fd = openSync(log, 'a')
  const child = spawn('ip', ['netns', 'exec', st.nodes[node]!.netns, ...cmd], { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, ...env } })
  closeSync(fd)
  child.unref()
  if (child.pid === undefined) throw new BeckonError('BECKON_ERR_LAB', `cannot start ${name}`)
  const p = { node, pid: child.pid, log, cmd }
  st.processes[name] = p
  return p
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

async function listening (ns: string, port: number): Promise<boolean> {
  const r = await run('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`], { allowFail: true })
  return r.stdout.trim() !== ''
}

function logHas (path: string, re: RegExp): boolean {
  try { return re.test(readFileSync(path, 'utf8')) } catch { return false }
}

async function viciAnswers (uri: string): Promise<boolean> {
  try {
    const v = await ViciSession.open({ uri, reconnect: false, timeoutMs: 1_000 })
    try { await v.version() } finally { await v.close() }
    return true
  } catch { return false }
}

export type LabRole = 'named' | 'smsc' | 'relay' | 'gateway' | 'agent' | 'service' | 'sink' | 'charon-client' | 'charon-terminal' | 'charon-relay' | 'postfix' | 'dovecot' | 'slapd' | 'squid'

/** Starts (or restarts) one lab role and waits until it is ready. */
export async function startRole (st: LabState, name: LabRole): Promise<void> {
  const node = process.execPath
  const cfg = (role: string): string => join(st.stateDir, 'etc', `${role}.yaml`)
  const specs = {
    smsc: { node: 'smsc' as const, cmd: [node, BECKON_MAIN, 'smsc', '--config', cfg('smsc')], ready: () => listening(st.nodes.smsc.netns, PORTS.smpp) },
    relay: { node: 'relay' as const, cmd: [node, BECKON_MAIN, 'relay', '--config', cfg('relay')], ready: async () => await listening(st.nodes.relay.netns, PORTS.relayClient) && await listening(st.nodes.relay.netns, PORTS.api) && logHas(st.processes.relay?.log ?? '', /smpp bound/) },
    named: { node: 'dns' as const, cmd: namedCommand(join(st.stateDir, 'dns', 'named.conf')), ready: () => listening(st.nodes.dns.netns, PORTS.dns) },
    slapd: { node: 'ldap' as const, cmd: slapdCommand(join(st.stateDir, 'ldap')), ready: async () => await listening(st.nodes.ldap.netns, PORTS.ldap) && await listening(st.nodes.ldap.netns, PORTS.ldaps) },
    gateway: { node: 'gateway' as const, cmd: [node, BECKON_MAIN, 'gateway', '--config', cfg('gateway')], ready: () => logHas(st.processes.gateway?.log ?? '', /smpp bound/) },
    agent: { node: 'terminal' as const, cmd: [node, BECKON_MAIN, 'agent', '--config', cfg('agent')], ready: () => listening(st.nodes.terminal.netns, PORTS.agent) },
    service: { node: 'terminal' as const, cmd: [node, GLUCOSE, String(PORTS.service), '::'], ready: () => listening(st.nodes.terminal.netns, PORTS.service) },
    sink: { node: 'terminal' as const, cmd: [node, SINK, String(PORTS.sink), '::'], ready: () => listening(st.nodes.terminal.netns, PORTS.sink) },
    postfix: { node: 'mail' as const, cmd: ['postfix', '-c', st.mail.postfixConfig, 'start-fg'], env: { MAIL_CONFIG: st.mail.postfixConfig }, ready: () => listening(st.nodes.mail.netns, 587) },
    dovecot: { node: 'mail' as const, cmd: ['dovecot', '-c', st.mail.dovecotConfig, '-F'], ready: () => listening(st.nodes.mail.netns, 993) },
    // charon gets a private /run (its pid file path is compiled in); see charon.ts.
    'charon-client': { node: 'client' as const, cmd: ['sh', '-c', `mount -t tmpfs tmpfs /run && exec ${CHARON_BIN}`], env: { STRONGSWAN_CONF: join(st.stateDir, 'charon', 'client', 'strongswan.conf') }, ready: () => viciAnswers(st.ipsec.clientVici) },
    'charon-terminal': { node: 'terminal' as const, cmd: ['sh', '-c', `mount -t tmpfs tmpfs /run && exec ${CHARON_BIN}`], env: { STRONGSWAN_CONF: join(st.stateDir, 'charon', 'terminal', 'strongswan.conf') }, ready: () => viciAnswers(st.ipsec.terminalVici) },
    // The relay's own charon, where `policy check` tries generated connections.
    // egress-proxy: Squid on the proxy node (src/lab/variants.ts), foreground, no disk cache.
    squid: { node: 'proxy' as const, cmd: ['squid', '-N', '-f', join(st.stateDir, 'proxy', 'squid.conf')], ready: () => listening(st.nodes.proxy?.netns ?? '', PROXY.port) },
    'charon-relay': { node: 'relay' as const, cmd: ['sh', '-c', `mount -t tmpfs tmpfs /run && exec ${CHARON_BIN}`], env: { STRONGSWAN_CONF: join(st.stateDir, 'charon', 'relay', 'strongswan.conf') }, ready: () => viciAnswers(`unix://${join(st.stateDir, 'charon', 'relay', 'charon.vici')}`) },
  }
  const s: { node: NodeName | VariantNode, cmd: string[], env?: Record<string, string>, ready: () => Promise<boolean> | boolean } = specs[name]
  const prev = st.processes[name]
  if (prev !== undefined && alive(prev.pid)) throw new BeckonError('BECKON_ERR_LAB', `${name} is already running (pid ${prev.pid})`)
  if (prev !== undefined) rmSync(prev.log, { force: true })
  const p = startProcess(st, name, s.node, s.cmd, s.env)
  writeFileSync(statePath(st.stateDir), JSON.stringify(st, null, 2))
  await waitFor(`${name} to be ready`, async () => {
    if (!alive(p.pid)) throw new BeckonError('BECKON_ERR_LAB', `${name} exited: ${readFileSync(p.log, 'utf8').trim().split('\n').slice(-3).join(' | ')}`)
    return await s.ready()
  }, 15_000)
}

/** Stops one lab role (SIGTERM, then SIGKILL). */
export async function stopRole (st: LabState, name: string): Promise<void> {
  const p = st.processes[name]
  if (p === undefined || !alive(p.pid)) return
  process.kill(p.pid, 'SIGTERM')
  try {
    await waitFor(`${name} to exit`, () => !alive(p.pid), 3_000)
  } catch {
    try { process.kill(p.pid, 'SIGKILL') } catch { /* gone */ }
    await waitFor(`${name} to die`, () => !alive(p.pid), 2_000)
  }
}

// ---- up / down / status ---------------------------------------------------------------

export async function labUp (o: LabOptions): Promise<LabState> {
  const stateDir = resolve(o.stateDir)
  if (existsSync(statePath(stateDir))) throw new BeckonError('BECKON_ERR_LAB', `a lab is already up at ${stateDir}; run beckon lab down first`)
  const taken = (await listNetns()).filter((n) => n.startsWith(`${o.prefix}-`))
  if (taken.length > 0) throw new BeckonError('BECKON_ERR_LAB', `namespaces ${taken.join(', ')} exist; run beckon lab down or choose another --prefix`)
  for (const d of ['etc', 'logs', 'tls', 'bin', 'client', 'charon/client', 'charon/terminal', 'charon/relay', 'ca', 'mail', 'relay', 'ldap', 'dns']) mkdirSync(join(stateDir, d), { recursive: true })
  // Postfix and Dovecot run as their own users and must traverse into mail/ and tls/;
  // 0711 lets them in without listing anything (secrets inside are 0600).
  chmodSync(stateDir, 0o711)

  const variants = o.net ?? []
  const sleepy = variants.includes('sleepy')
  const net: LabState['net'] = {
    variants,
    ...(sleepy ? { wakeDelayMs: o.wakeDelayMs ?? 60_000 } : {}),
    wakeTimeoutMs: o.wakeTimeoutMs ?? (sleepy ? 600_000 : 10_000),
    ...(variants.includes('short-nat-timeout') ? { natTimeoutS: o.natTimeoutS ?? 30 } : {}),
  }
  const A = labAddresses(variants)
  const nodes = Object.fromEntries(Object.entries(A).map(([n, a]) => [n, { netns: `${o.prefix}-${n}`, addresses: a }])) as LabState['nodes']
  const relayAddr = ip(A.relay.eth0!)
  const prefix = 'fd00:beca::/48'
  const user = { name: 'dr-grey', password: randomBytes(9).toString('base64url'), permanentAddress: permanentAddress(prefix, 'user', 'dr-grey') }
  const user2 = { name: 'dr-house', password: randomBytes(9).toString('base64url'), permanentAddress: permanentAddress(prefix, 'user', 'dr-house') }
  const visitor = { name: 'visitor', password: randomBytes(9).toString('base64url') }
  const st: LabState = {
    prefix: o.prefix,
    stateDir,
    nodes,
    net,
    relay: { client: hp(relayAddr, PORTS.relayClient), dialback: hp(relayAddr, PORTS.relayDialback), ca: join(stateDir, 'tls', 'ca.crt') },
    terminal: { device: DEVICE.name, msisdn: DEVICE.msisdn, agent: `${ip(A.terminal.eth0!)}:${PORTS.agent}`, services: [`${ip(A.terminal.eth0!)}:${PORTS.service}`], permanentAddress: permanentAddress(prefix, 'device', DEVICE.name) },
    user,
    user2,
    visitor,
    ipsec: { prefix, domain: 'lab.beckon.example', auth: o.ipsecAuth ?? 'psk', ca: join(stateDir, 'ca', 'ca.crt'), terminalAddress: permanentAddress(prefix, 'device', DEVICE.name), clientVici: `unix://${join(stateDir, 'charon', 'client', 'charon.vici')}`, terminalVici: `unix://${join(stateDir, 'charon', 'terminal', 'charon.vici')}` },
    clientConfig: join(stateDir, 'client', 'client.yaml'),
    channels: o.channels ?? ['sms'],
    mail: {
      smtp: hp(ip(A.mail.eth0!), 587),
      imap: hp(ip(A.mail.eth0!), 993),
      gatewayMailbox: `gateway@${MAIL_DOMAIN}`,
      relaySender: `beckon-relay@${MAIL_DOMAIN}`,
      postfixConfig: join(stateDir, 'mail', 'postfix'),
      dovecotConfig: join(stateDir, 'mail', 'dovecot', 'dovecot.conf'),
    },
    api: { url: `https://127.0.0.1:${PORTS.api}`, ca: join(stateDir, 'tls', 'ca.crt'), token: '', netns: nodes.relay.netns },
    ldap: { url: `ldap://${hp(ip(A.ldap.eth0!), PORTS.ldap)}`, suffix: LAB_LDAP_SUFFIX },
    dns: { server: `${ip(ADDRESSES.dns.eth0!)}:${PORTS.dns}`, zone: LAB_ZONE, key: 'beckon-relay', relayHost: `relay.${LAB_ZONE}` },
    processes: {},
  }
  if (variants.includes('egress-proxy')) {
    // Squid runs as `proxy`: it owns its directory; the password file is for it alone.
    const dir = join(stateDir, 'proxy')
    mkdirSync(dir, { recursive: true })
    const users = { gateway: randomBytes(9).toString('base64url'), client: randomBytes(9).toString('base64url') }
    const hash = apr1Hash
    writeFileSync(join(dir, 'passwd'), `beckon-gw:${await hash(users.gateway)}\nbeckon-client:${await hash(users.client)}\n`)
    writeFileSync(join(dir, 'squid.conf'), squidConfig({ dir, relay: relayAddr, dialbackPort: PORTS.relayDialback, clientPort: PORTS.relayClient, passwd: join(dir, 'passwd') }))
    await run('chown', ['-R', 'proxy:proxy', dir])
    chmodSync(join(dir, 'passwd'), 0o600)
    // clientUrl: the client's second case, its CONNECT to the relay through the same Squid.
    net.proxy = { carrier: hp(ip(PROXY.carrier), PROXY.port), clients: hp(ip(PROXY.inet), PROXY.port), user: 'beckon-gw', password: users.gateway, accessLog: join(dir, 'access.log'), clientUrl: `http://beckon-client:${users.client}@${hp(ip(PROXY.inet), PROXY.port)}` }
  }
  // The state file goes first, so `down` can clean up after a failed `up`.
  writeFileSync(statePath(stateDir), JSON.stringify(st, null, 2))
  try {
    await buildNetwork(o.prefix, net)
    const tls = await makeTls(join(stateDir, 'tls'), A)
    await attachDnsNode(o.prefix)
    const tsigSecret = randomBytes(32).toString('base64')
    writeBindConfig(join(stateDir, 'dns'), { listen: { address: ip(ADDRESSES.dns.eth0!), port: PORTS.dns }, zone: LAB_ZONE, key: { name: st.dns.key, secret: tsigSecret }, ns: { name: `ns.${LAB_ZONE}`, address: ip(ADDRESSES.dns.eth0!) } })
    const relayX = generateRawKeyPair('x25519')
    const relayEd = generateRawKeyPair('ed25519')
    const gwX = generateRawKeyPair('x25519')
    const agentX = generateRawKeyPair('x25519')
    for (const n of ['client', 'terminal', 'relay']) writeFileSync(join(stateDir, 'charon', n, 'strongswan.conf'), strongswanConf({ dir: join(stateDir, 'charon', n) }))
    const ldapIp = ip(A.ldap.eth0!)
    await writeLdapConfig(join(stateDir, 'ldap'), {
      listen: [`ldap://${hp(ldapIp, PORTS.ldap)}/`, `ldaps://${hp(ldapIp, PORTS.ldaps)}/`],
      suffix: LAB_LDAP_SUFFIX,
      tls: { cert: tls.ldapCert, key: tls.ldapKey, ca: tls.ca },
      users: [{ uid: user.name, password: user.password, groups: ['physicians'] }, { uid: user2.name, password: user2.password, groups: ['cardiologists'] }],
      adminPassword: randomBytes(12).toString('base64url'),
    })
    // The deployment CA and certificates for pubkey mode (identities as the relay names them).
    const caDir = join(stateDir, 'ca')
    await caInit(caDir, 'Beckon lab CA')
    const certOf = async (id: string): Promise<{ cert: string, key: string, ca: string }> => ({ ...(await caIssue(caDir, id)), ca: st.ipsec.ca })
    const [userCert, user2Cert, deviceCert] = await Promise.all([
      certOf(`${user.name}@${st.ipsec.domain}`), certOf(`${user2.name}@${st.ipsec.domain}`), certOf(`${DEVICE.name}.${st.ipsec.domain}`),
    ])
    writeYaml(join(stateDir, 'client', 'client2.yaml'), { relay: st.relay.client, tls: true, ca: tls.ca, user: user2.name, password: user2.password, ipsec: { vici: st.ipsec.clientVici, pubkey: user2Cert } })
    const smscUrl = `smpp://${hp(ip(A.smsc.eth0!), PORTS.smpp)}`
    const smppPw = { relay: randomBytes(6).toString('hex'), gateway: randomBytes(6).toString('hex') }
    const mailPw = { relay: randomBytes(9).toString('base64url'), gateway: randomBytes(9).toString('base64url') }
    writeMailConfig(join(stateDir, 'mail'), ip(A.mail.eth0!), { cert: tls.mailCert, key: tls.mailKey }, [
      { user: st.mail.relaySender, password: mailPw.relay },
      { user: st.mail.gatewayMailbox, password: mailPw.gateway },
    ])
    const etc = (f: string): string => join(stateDir, 'etc', f)

    writeYaml(etc('smsc.yaml'), {
      listen: hp(ip(A.smsc.eth0!), PORTS.smpp),
      // sleepy: the SMSC holds each message until the terminal would wake (eDRX/PSM).
      ...(net.wakeDelayMs === undefined ? {} : { hold: `${net.wakeDelayMs}ms` }),
      accounts: { relay: { password: smppPw.relay }, gateway: { password: smppPw.gateway, address_range: '+1555' } },
    })
    writeYaml(etc('relay.yaml'), {
      client_listen: hp(relayAddr, PORTS.relayClient),
      tls: { cert: tls.cert, key: tls.key },
      dialback_listen: hp(relayAddr, PORTS.relayDialback),
      public_address: relayAddr,
      keys: { x25519_private: relayX.privateKey, ed25519_private: relayEd.privateKey },
      smpp: { url: smscUrl, system_id: 'relay', password: smppPw.relay, source_addr: 'beckon' },
      smtp: { address: st.mail.smtp, user: st.mail.relaySender, password: mailPw.relay, from: st.mail.relaySender, ca: tls.ca, domain: MAIL_DOMAIN },
      ipsec: { prefix, domain: st.ipsec.domain },
      // The control plane: devices, users and policies live in the store and arrive
      // through the API (seeded below), not in this file.
      state_dir: join(stateDir, 'relay'),
      relay_id: 'relay-1',
      store: { sqlite: join(stateDir, 'relay', 'beckon.db') },
      // Steps A/B: the relay publishes each device into the zone on the dns node.
      dns: { server: st.dns.server, zone: LAB_ZONE, tsig: { name: st.dns.key, algorithm: 'hmac-sha256', secret: tsigSecret }, relays: [{ host: st.dns.relayHost, address: st.relay.client.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''), port: PORTS.relayClient, priority: 10 }] },
      api: { listen: `127.0.0.1:${PORTS.api}`, tls: { cert: tls.apiCert, key: tls.apiKey }, vici: `unix://${join(stateDir, 'charon', 'relay', 'charon.vici')}`, ...(o.apiRateLimit === undefined ? {} : { rate_limit: o.apiRateLimit }) },
    })
    const ports = o.sink === true ? [PORTS.service, PORTS.sink] : [PORTS.service]
    writeYaml(etc('seed.yaml'), {
      gateways: [{ name: 'carrier-gw', public_key: gwX.publicKey, description: 'lab carrier network' }],
      groups: [{ name: 'visitors' }],
      users: [{ name: visitor.name, password: visitor.password, groups: ['visitors'] }],
      ldap: {
        url: st.ldap.url, starttls: true, ca_pem: readFileSync(tls.ca, 'utf8'),
        base_dn: `ou=people,${LAB_LDAP_SUFFIX}`, user_filter: '(uid={user})', group_attribute: 'memberOf', timeout_ms: 2000,
      },
      devices: [{
        name: DEVICE.name, gateway: 'carrier-gw', msisdn: DEVICE.msisdn, email: st.mail.gatewayMailbox, channels: st.channels,
        agent_public_key: agentX.publicKey, wake_timeout_ms: net.wakeTimeoutMs, port: PORTS.agent,
        services: [{ name: 'glucose', protocol: 'tcp', port: PORTS.service }, ...(o.sink === true ? [{ name: 'sink', protocol: 'tcp', port: PORTS.sink }] : [])],
      }],
      policies: {
        [DEVICE.name]: {
          auth: st.ipsec.auth, dpd_s: 10, raw_tcp: true,
          rules: [{ groups: ['physicians', 'cardiologists'], protocol: 'tcp', ports, ipsec: true, raw_tcp: true }],
        },
      },
    })
    writeYaml(etc('gateway.yaml'), {
      smpp: { url: smscUrl, system_id: 'gateway', password: smppPw.gateway, address_range: '+1555' },
      keys: { x25519_private: gwX.privateKey },
      trusted_relays: [relayX.publicKey],
      imap: { address: st.mail.imap, user: st.mail.gatewayMailbox, password: mailPw.gateway, ca: tls.ca },
      // The same terminal by MSISDN (SMS) and by its e-mail reference (the device name).
      terminals: { [DEVICE.msisdn]: { address: st.terminal.agent }, [DEVICE.name]: { address: st.terminal.agent } },
      connect_timeout: '3s',
      state_dir: join(stateDir, 'gateway'),
      // The carrier's NAT forgets idle bindings: keepalives at half its timeout.
      ...(net.natTimeoutS === undefined ? {} : { nat_keepalive: `${Math.max(1, Math.floor(net.natTimeoutS / 2))}s` }),
      ...(net.proxy === undefined ? {} : { egress_proxy: `http://${net.proxy.user}:${net.proxy.password}@${net.proxy.carrier}` }),
    })
    writeYaml(etc('agent.yaml'), {
      listen: st.terminal.agent,
      device: DEVICE.name,
      relay_keys: [relayEd.publicKey],
      tcp_ports: o.sink === true ? [PORTS.service, PORTS.sink] : [PORTS.service],
      service_host: '127.0.0.1',
      keys: { x25519_private: agentX.privateKey },
      ipsec: { vici: st.ipsec.terminalVici, address: st.ipsec.terminalAddress, pubkey: deviceCert },
    })
    writeYaml(st.clientConfig, { relay: st.relay.client, tls: true, ca: tls.ca, user: user.name, password: user.password, ipsec: { vici: st.ipsec.clientVici, pubkey: userCert } })
    if (net.proxy !== undefined) writeYaml(join(stateDir, 'client', 'client-proxy.yaml'), { relay: st.relay.client, tls: true, ca: tls.ca, user: user.name, password: user.password, proxy: net.proxy.clientUrl, ipsec: { vici: st.ipsec.clientVici, pubkey: userCert } })
    // Public keys and secrets tests may need (e.g. to forge or replay signals).
    writeYaml(etc('lab-secrets.yaml'), { smsc_url: smscUrl, smpp_relay_password: smppPw.relay, smtp_relay_password: mailPw.relay, imap_gateway_password: mailPw.gateway, relay_x25519_public: relayX.publicKey, gateway_x25519_public: gwX.publicKey })
    const shim = join(stateDir, 'bin', 'beckon')
    writeFileSync(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BECKON_MAIN)} "$@"\n`)
    chmodSync(shim, 0o755)

    await Promise.all([startRole(st, 'charon-client'), startRole(st, 'charon-terminal'), startRole(st, 'charon-relay'), startRole(st, 'slapd')])
    await startRole(st, 'named')
    await startRole(st, 'smsc')
    // Postfix first: it creates the queue whose private/ directory holds Dovecot's sockets.
    await startRole(st, 'postfix')
    await startRole(st, 'dovecot')
    await startRole(st, 'service')
    if (o.sink === true) await startRole(st, 'sink')
    await startRole(st, 'agent')
    if (net.proxy !== undefined) await startRole(st, 'squid')
    await Promise.all([startRole(st, 'relay'), startRole(st, 'gateway')])
    // The relay wrote a bootstrap admin token into its state directory at first start.
    st.api.token = readFileSync(join(stateDir, 'relay', 'admin.token'), 'utf8').trim()
    writeFileSync(statePath(stateDir), JSON.stringify(st, null, 2))
    await labCli(st, ['apply', etc('seed.yaml')])
    return st
  } catch (err) {
    await labDown(stateDir, o.prefix).catch(() => {})
    throw err
  }
}

export async function labDown (stateDir: string, prefix?: string): Promise<void> {
  const dir = resolve(stateDir)
  let pfx = prefix
  if (existsSync(statePath(dir))) {
    const st = readLabState(dir)
    pfx = st.prefix
    await Promise.all(Object.keys(st.processes).map((n) => stopRole(st, n).catch(() => {})))
  }
  if (pfx !== undefined) {
    for (const n of NODE_NAMES) rmSync(resolvConfDir(`${pfx}-${n}`), { recursive: true, force: true })
    for (const n of await listNetns()) if (n.startsWith(`${pfx}-`)) await deleteNetns(n)
  }
  rmSync(dir, { recursive: true, force: true })
}

export interface LabStatus extends LabState {
  running: Record<string, boolean>
}

export function labStatus (stateDir: string): LabStatus {
  const st = readLabState(resolve(stateDir))
  const running = Object.fromEntries(Object.entries(st.processes).map(([n, p]) => [n, alive(p.pid)]))
  return { ...st, running }
}

/** Runs a command in a node with the lab's client config and `beckon` on PATH. */
export function labExec (stateDir: string, node: string, argv: string[]): Promise<number> {
  const st = readLabState(resolve(stateDir))
  if (!Object.hasOwn(st.nodes, node)) throw new BeckonError('BECKON_ERR_USAGE', `unknown node ${node}; nodes: ${Object.keys(st.nodes).join(', ')}`)
  if (argv.length === 0) throw new BeckonError('BECKON_ERR_USAGE', 'nothing to run')
  const env = { ...process.env, PATH: `${join(st.stateDir, 'bin')}:${process.env.PATH ?? ''}`, BECKON_CLIENT_CONFIG: st.clientConfig }
  const child = spawn('ip', ['netns', 'exec', st.nodes[node as NodeName].netns, ...argv], { stdio: 'inherit', env })
  return new Promise((resolve) => {
    const fwd = (sig: NodeJS.Signals): void => { child.kill(sig) }
    process.on('SIGINT', fwd)
    process.on('SIGTERM', fwd)
    child.on('close', (code, signal) => {
      process.off('SIGINT', fwd)
      process.off('SIGTERM', fwd)
      resolve(code ?? (signal === null ? 1 : 128))
    })
  })
}

/**
 * Runs `beckon <args> --json` inside the relay node against the lab's management API
 * (as an engineer on the relay host would) and returns its parsed output.
 */
export async function labCli (st: LabState, args: string[], input?: string): Promise<unknown> {
  const env = { ...process.env, BECKON_API: st.api.url, BECKON_TOKEN: st.api.token, BECKON_API_CA: st.api.ca }
  const r = await run('ip', ['netns', 'exec', st.api.netns, process.execPath, BECKON_MAIN, ...args, '--json'], { env, allowFail: true, ...(input === undefined ? {} : { input }) })
  if (r.code !== 0) {
    // The CLI's coded error, as the API gave it: `{"error":{"code","message"}}` on stderr.
    let e: { code?: string, message?: string } | undefined
    try { e = (JSON.parse(r.stderr.trim().split('\n').pop() ?? '') as { error?: typeof e }).error } catch { e = undefined }
    const code = (e?.code !== undefined && e.code in ERRORS ? e.code : 'BECKON_ERR_LAB') as ErrorCode
    throw new BeckonError(code, `beckon ${args[0] ?? ''} ${args[1] ?? ''}: ${e?.message ?? r.stderr.trim().slice(0, 500)}`)
  }
  const out = r.stdout.trim()
  return out === '' ? undefined : JSON.parse(out)
}

/**
 * An htpasswd (apr1) hash for Squid's basic_ncsa_auth. The password goes on stdin: a
 * base64url one may start with '-' (openssl took it for an option: a flaky lab start),
 * and argv is visible to every process.
 */
export async function apr1Hash (pw: string): Promise<string> {
  return (await run('openssl', ['passwd', '-apr1', '-stdin'], { input: `${pw}\n` })).stdout.trim()
}
