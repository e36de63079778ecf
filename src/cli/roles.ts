/**
 * Composition roots: one per role. Each reads its YAML (+ BECKON_<ROLE>_* overrides),
 * builds its parts, listens, and shuts down on SIGTERM/SIGINT.
 */
import type { Command } from 'commander'
import { Fields, loadRoleConfig } from '../core/config.js'
import { generateRawKeyPair } from '../core/keys.js'
import { createLogger, type Logger } from '../core/log.js'
import { SmsChannel, type SignalChannel } from '../channels/channel.js'
import { SmppBind, SmppSmsReceiver, SmppSmsSender } from '../channels/sms/smpp.js'
import { MailInbox } from '../channels/mail/imap.js'
import { MailChannel } from '../channels/mail/smtp.js'
import { hashPassword } from '../directory/directory.js'
import { LdapDirectory, testLdap } from '../directory/ldap.js'
import { join } from 'node:path'
import type { HealthCheck } from '../api/deps.js'
import { connectTcp } from '../core/stream.js'
import { dataPath } from '../core/kernel-splice.js'
import { Metrics } from '../core/metrics.js'
import { checkPolicy } from '../ipsec/check.js'
import { Catalog } from '../roles/relay/catalog.js'
import { DnsPublisher } from '../dns/publisher.js'
import { deviceView } from '../api/routes/devices.js'
import { memoryStore } from '../store/memory.js'
import { describeStore, openStore } from '../store/open.js'
import type { Store } from '../store/store.js'
import { bootstrapToken, serveApi } from './api-server.js'
import { Smsc } from '../lab/smsc.js'
import { mkdirSync, readFileSync } from 'node:fs'
import { NetlinkHostAddresses } from '../ipsec/host.js'
import { TunnelManager } from '../ipsec/tunnels.js'
import { ViciSession } from '../proto/vici/session.js'
import { Agent, parseAgentConfig, type AgentIpsec } from '../roles/agent/agent.js'
import { Gateway, parseGatewayConfig } from '../roles/gateway/gateway.js'
import { Relay } from '../roles/relay/relay.js'
import { parseRelayConfig, type RelayConfig } from '../roles/relay/config.js'
import { exitWithError, onTerminate } from './output.js'
import { BeckonError } from '../core/errors.js'

function onShutdown (log: Logger, stop: () => Promise<void>): void {
  onTerminate(async (sig) => {
    log.info({ signal: sig }, 'shutting down')
    setTimeout(() => process.exit(1), 5_000).unref()
    await stop().catch((err) => log.error({ err }, 'shutdown failed'))
    process.exit(0)
  })
}

/**
 * The relay's store: the configured one (SQLite by default, in the state directory), or
 * — when relay.yaml still lists devices — a memory store seeded from the YAML. Devices in
 * both places are refused: which one is meant cannot be guessed.
 */
async function relayStore (cfg: RelayConfig, log: Logger): Promise<Store> {
  const yamlDevices = cfg.seed.devices?.length ?? 0
  mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 })
  const store = await openStore(cfg.store ?? { sqlite: join(cfg.stateDir, 'beckon.db') }, { log })
  if (yamlDevices === 0) return store
  const stored = (await store.list('device')).length
  if (stored > 0) {
    await store.close()
    throw new BeckonError('BECKON_ERR_IMPORT_CONFLICT', `relay.yaml lists ${yamlDevices} device(s) and the store (${describeStore(cfg.store ?? { sqlite: join(cfg.stateDir, 'beckon.db') })}) holds ${stored}: run \`beckon import\` once, then remove devices/users from relay.yaml`)
  }
  await store.close()
  log.warn({ devices: yamlDevices }, 'relay: devices come from relay.yaml (in memory); run `beckon import` to manage them through the API')
  const mem = await memoryStore({ log })
  await mem.import(cfg.seed, 'relay.yaml')
  return mem
}

async function relay (configPath: string | undefined): Promise<void> {
  const cfg = parseRelayConfig(loadRoleConfig('relay', configPath), configPath ?? 'relay config')
  const log = createLogger({ name: 'relay' })
  const metrics = new Metrics({ process: true })
  const channels = new Map<string, SignalChannel>()
  const health: Record<string, () => Promise<HealthCheck>> = {}
  let bind: SmppBind | undefined
  if (cfg.smpp !== undefined) {
    bind = new SmppBind({ url: cfg.smpp.url, systemId: cfg.smpp.systemId, password: cfg.smpp.password, mode: 'transmitter', log })
    bind.start()
    channels.set('sms', new SmsChannel(new SmppSmsSender(bind, cfg.smpp.sourceAddr)))
    const b = bind
    health.smsc = async () => ({ ok: b.bound, ...(b.bound ? {} : { detail: 'not bound to the SMSC' }) })
  }
  let mail: MailChannel | undefined
  if (cfg.smtp !== undefined) {
    const s = cfg.smtp
    mail = new MailChannel({ host: s.host, port: s.port, secure: s.secure, user: s.user, password: s.password, from: s.from, domain: s.domain, ca: s.ca === undefined ? undefined : readFileSync(s.ca) })
    channels.set('email', mail)
    health.smtp = () => tcpReachable(s.host, s.port)
  }
  const store = await relayStore(cfg, log)
  const catalog = new Catalog({ store, prefix: cfg.ipsec.prefix, log, metrics, ldap: (s) => new LdapDirectory(s, log) })
  const r = new Relay({ config: cfg, catalog, store, channels, log, metrics })
  await r.reapStale()
  await r.listen()
  // Kills flagged through another relay's API (shared store) are picked up here.
  const poll = setInterval(() => { void r.pollKills().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'relay: kill poll failed')) }, 1_000)
  poll.unref()
  // Steps A/B: the device zone follows the store (reconciled now, then each revision).
  let dns: DnsPublisher | undefined
  if (cfg.dns !== undefined) {
    const prefix = cfg.ipsec.prefix
    dns = new DnsPublisher({ store, config: cfg.dns, addressOf: (d) => deviceView(prefix, d).address!, log })
    const pub = dns
    health.dns = async () => pub.health()
    await dns.start()
  }
  let api: Awaited<ReturnType<typeof serveApi>> | undefined
  if (cfg.api !== undefined) {
    const viciUri = cfg.api.vici
    health.directory = async () => {
      const s = await store.get('setting', 'ldap')
      if (s === undefined) return { ok: true, detail: 'local users only' }
      const t = await testLdap(s)
      return { ok: t.ok, ms: t.ms, ...(t.error === undefined ? {} : { detail: t.error }) }
    }
    await bootstrapToken(store, cfg.stateDir, log)
    api = await serveApi(cfg.api, cfg.stateDir, {
      store,
      log,
      metrics,
      ipsecPrefix: cfg.ipsec.prefix,
      health,
      sessions: { kill: (id, reason, actor) => r.kill(id, reason, actor), live: (id) => r.session(id) },
      testLdap: async (s) => { const t = await testLdap(s); return { ok: t.ok, ms: t.ms, ...(t.error === undefined ? {} : { detail: t.error }) } },
      ...(viciUri === undefined ? {} : {
        checkPolicy: async (policy, device) => {
          const v = await ViciSession.open({ uri: viciUri, reconnect: false, timeoutMs: 5_000 })
          try { return await checkPolicy(v, policy, device) } finally { await v.close() }
        },
      }),
    })
  }
  onShutdown(log, async () => { clearInterval(poll); await dns?.stop(); await api?.close(); await r.close(); await bind?.stop(); mail?.close(); await store.close() })
}

/** A TCP connect to host:port within 2 s. */
async function tcpReachable (host: string, port: number): Promise<HealthCheck> {
  const s = await connectTcp(host, port, 2_000)
  s.destroy()
  return { ok: true }
}

async function gateway (configPath: string | undefined): Promise<void> {
  const cfg = parseGatewayConfig(loadRoleConfig('gateway', configPath), configPath ?? 'gateway config')
  const log = createLogger({ name: 'gateway' })
  if (cfg.smpp === undefined && cfg.imap === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `${configPath ?? 'gateway config'}: configure at least one signal channel (smpp, imap)`)
  const g = new Gateway(cfg, log)
  let bind: SmppBind | undefined
  if (cfg.smpp !== undefined) {
    bind = new SmppBind({ url: cfg.smpp.url, systemId: cfg.smpp.systemId, password: cfg.smpp.password, mode: 'receiver', addressRange: cfg.smpp.addressRange, enquireLinkMs: cfg.natKeepaliveMs, log })
    g.attach(new SmppSmsReceiver(bind), 'sms')
    bind.start()
  }
  let inbox: MailInbox | undefined
  if (cfg.imap !== undefined) {
    const m = cfg.imap
    inbox = new MailInbox({ host: m.host, port: m.port, user: m.user, password: m.password, ca: m.ca === undefined ? undefined : readFileSync(m.ca), log },
      (token, meta) => {
        const s = g.accept(token, { ...meta })
        return s instanceof BeckonError ? { ok: false, error: s } : { ok: true, then: () => g.dial(s) }
      },
      (err, meta) => g.refuse(err, { ...meta }))
    inbox.start()
  }
  log.info({ terminals: [...cfg.terminals.keys()], channels: [bind === undefined ? [] : ['sms'], inbox === undefined ? [] : ['email']].flat(), dataPath: dataPath() }, 'gateway started')
  onShutdown(log, async () => { await bind?.stop(); await inbox?.stop(); g.close() })
}

async function agent (configPath: string | undefined): Promise<void> {
  const cfg = parseAgentConfig(loadRoleConfig('agent', configPath), configPath ?? 'agent config')
  const log = createLogger({ name: 'agent' })
  let vici: ViciSession | undefined
  let ipsec: AgentIpsec | undefined
  if (cfg.ipsec !== undefined) {
    vici = await ViciSession.open({ uri: cfg.ipsec.vici, waitMs: 10_000, log })
    const pk = cfg.ipsec.pubkey
    ipsec = {
      tunnels: new TunnelManager(vici, cfg.ipsec.natTPort, log),
      host: new NetlinkHostAddresses(),
      pubkey: pk === undefined ? undefined : { certPem: readFileSync(pk.cert, 'utf8'), keyPem: readFileSync(pk.key, 'utf8'), caPem: readFileSync(pk.ca, 'utf8') },
    }
  }
  const a = new Agent(cfg, log, Date.now, ipsec)
  await a.listen()
  onShutdown(log, async () => { await a.close(); await vici?.close() })
}

async function smsc (configPath: string | undefined): Promise<void> {
  const f = new Fields(loadRoleConfig('smsc', configPath), configPath ?? 'smsc config')
  const log = createLogger({ name: 'smsc' })
  const s = new Smsc({
    accounts: f.entries('accounts').map(([systemId, a]) => ({ systemId, password: a.str('password'), addressRange: a.optStr('address_range') })),
    holdMs: f.ms('hold', 0),
    log,
  })
  const listen = f.hostPort('listen', '0.0.0.0:2775')
  const port = await s.listen(listen.port, listen.host)
  log.info({ listen: `${listen.host}:${port}` }, 'smsc listening')
  onShutdown(log, () => s.close())
}

export function registerRoles (program: Command): void {
  const roles: Array<[string, string, (p: string | undefined) => Promise<void>]> = [
    ['relay', 'run the public relay (CONNECT listener, signals, dial-backs)', relay],
    ['gateway', 'run the carrier-side gateway (receives signals, dials out)', gateway],
    ['agent', 'run the terminal agent (predetermined port, local services)', agent],
    ['smsc', 'run the lab store-and-forward SMSC (SMPP)', smsc],
  ]
  for (const [name, description, start] of roles) {
    program.command(name).description(description)
      .option('-c, --config <path>', `YAML config (default /etc/beckon/${name}.yaml; BECKON_${name.toUpperCase()}_* overrides keys)`)
      .action(async (o: { config?: string }) => {
        try {
          await start(o.config ?? process.env[`BECKON_${name.toUpperCase()}_CONFIG`] ?? `/etc/beckon/${name}.yaml`)
        } catch (err) {
          exitWithError(err)
        }
      })
  }
  program.command('keygen').description('print a fresh key pair (raw 32 bytes, base64url) as JSON')
    .argument('<kind>', 'x25519 (signals) or ed25519 (descriptors)')
    .action((kind: string) => {
      if (kind !== 'x25519' && kind !== 'ed25519') exitWithError(new BeckonError('BECKON_ERR_USAGE', 'kind must be x25519 or ed25519'))
      process.stdout.write(JSON.stringify(generateRawKeyPair(kind)) + '\n')
    })
  program.command('hash-password').description('read a password on stdin, print its scrypt hash for relay.yaml')
    .action(async () => {
      let pw = ''
      for await (const chunk of process.stdin) pw += String(chunk)
      pw = pw.replace(/\r?\n$/, '')
      if (pw === '') exitWithError(new BeckonError('BECKON_ERR_USAGE', 'empty password on stdin'))
      process.stdout.write(await hashPassword(pw) + '\n')
    })
}
