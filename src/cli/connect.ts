/**
 * `beckon connect <device>`: the client terminal. IPsec mode (default) programs the
 * local charon and keeps the tunnel up until interrupted; `--tcp <port> -L <localport>`
 * is raw mode (plain CONNECT per local connection).
 *
 * Relay and credentials come from flags, else from the client config
 * (--config, BECKON_CLIENT_CONFIG, /etc/beckon/client.yaml) and BECKON_CLIENT_* vars.
 * Stages go to stderr as plain lines (or JSON lines with --json). Raw mode opens one
 * relay session per local connection; the first is opened at once, so the stages and
 * any refusal show before the first local client arrives.
 */
import type { Command } from 'commander'
import { existsSync, readFileSync } from 'node:fs'
import net, { type Socket } from 'node:net'
import { Fields, loadRoleConfig } from '../core/config.js'
import { BeckonError } from '../core/errors.js'
import { resetSocket, splice, wasReset } from '../core/stream.js'
import { createLogger } from '../core/log.js'
import { NetlinkHostAddresses } from '../ipsec/host.js'
import { TunnelManager } from '../ipsec/tunnels.js'
import { ViciSession } from '../proto/vici/session.js'
import { parseProxyUrl } from '../proto/connect/proxy.js'
import { resolveRelays, systemResolver, type RelayTarget } from '../dns/resolve.js'
import { openSession, type ClientOptions, type Session, type Stage } from '../roles/client/client.js'
import { openTunnel, type Tunnel } from '../roles/client/ipsec.js'
import { exitWithError, onTerminate } from './output.js'

interface ConnectFlags {
  relay?: string
  tcp?: string
  listen?: string
  L?: string
  user?: string
  config?: string
  json?: boolean
  once?: boolean
}

function clientFields (flags: ConnectFlags): Fields {
  const path = flags.config ?? process.env.BECKON_CLIENT_CONFIG ?? (existsSync('/etc/beckon/client.yaml') ? '/etc/beckon/client.yaml' : undefined)
  return new Fields(loadRoleConfig('client', path), path ?? 'client config')
}

function clientOptions (flags: ConnectFlags, fromDns?: RelayTarget[]): ClientOptions {
  const f = clientFields(flags)
  const raw = { ...f.obj }
  if (flags.relay !== undefined) raw.relay = flags.relay
  const first = fromDns?.[0]
  if (first !== undefined) raw.relay = `${first.host.includes(':') ? `[${first.host}]` : first.host}:${first.port}`
  // The config's password belongs to the config's user, not to one given with --user.
  if (flags.user !== undefined && flags.user !== raw.user) { raw.user = flags.user; delete raw.password }
  if (process.env.BECKON_PASSWORD !== undefined) raw.password = process.env.BECKON_PASSWORD
  const g = new Fields(raw, f.path)
  if (!g.has('relay')) throw new BeckonError('BECKON_ERR_USAGE', 'no relay: pass --relay host:port or set relay in the client config')
  const tls = g.bool('tls', true)
  const ca = g.optStr('ca')
  return {
    relay: g.hostPort('relay'),
    ...(fromDns === undefined ? {} : { relays: fromDns.map((r) => ({ host: r.host, port: r.port, name: r.name })), connectTimeoutMs: g.ms('relay_connect_timeout', 1_000) }),
    tls: tls ? { ca: ca === undefined ? undefined : readFileSync(ca), servername: g.optStr('servername') } : undefined,
    user: g.optStr('user'),
    password: g.optStr('password'),
    token: g.optStr('token'),
    // An HTTP proxy between the client and the relay; else HTTPS_PROXY/NO_PROXY.
    proxy: g.has('proxy') ? parseProxyUrl(g.str('proxy'), `${f.path}.proxy`) : undefined,
  }
}

/**
 * Steps A/B: a target `<device>.<zone>` (or `<device>` with `zone` in the config), when no
 * relay is configured or the relay is `dns`, is looked up as SRV `_beckon._tcp.<device>.<zone>`
 * through this host's resolver; the relays are tried in RFC 2782 order. Otherwise the
 * configured relay is used and the device is the target's first label.
 */
async function plan (target: string, flags: ConnectFlags): Promise<{ device: string, opts: ClientOptions }> {
  const f = clientFields(flags)
  const relay = flags.relay ?? (f.has('relay') ? f.str('relay') : undefined)
  const zone = f.optStr('zone')
  const named = target.includes('.')
  if (relay !== undefined && relay !== 'dns') return { device: named ? target.split('.')[0]! : target, opts: clientOptions(flags) }
  if (!named && zone === undefined) throw new BeckonError('BECKON_ERR_USAGE', `no relay: pass --relay host:port, or name the device as <device>.<zone> (or set zone in the client config) to find relays in DNS`)
  const fqdn = named ? target.replace(/\.$/, '') : `${target}.${zone!}`
  const found = await resolveRelays(fqdn, systemResolver(1_000))
  const line = { stage: 'resolved', name: fqdn, relays: found.relays.map((r) => `${r.name} ${r.host}:${r.port} priority ${r.priority}`), skipped: found.skipped.map((s) => `${s.name}: ${s.reason}`) }
  if (flags.json === true) process.stderr.write(JSON.stringify(line) + '\n')
  else process.stderr.write(`beckon: ${fqdn} → ${line.relays.join(', ')}${line.skipped.length > 0 ? ` (skipped ${line.skipped.join(', ')})` : ''}\n`)
  return { device: fqdn.split('.')[0]!, opts: clientOptions({ ...flags, relay: undefined }, found.relays) }
}

function reporter (json: boolean, device: string): (stage: Stage, detail: Record<string, unknown>) => void {
  return (stage, d) => {
    if (json) { process.stderr.write(JSON.stringify({ stage, ...d }) + '\n'); return }
    const ms = typeof d.elapsedMs === 'number' ? ` (${d.elapsedMs} ms)` : ''
    const text: Record<Stage, string> = {
      connecting: `connecting to relay ${d.name === undefined ? '' : `${String(d.name)} `}${String(d.relay)}`,
      'relay-failed': `relay ${d.name === undefined ? '' : `${String(d.name)} `}${String(d.relay)} failed (${String(d.code)}: ${String(d.reason)})${d.next === undefined ? '' : `; trying ${String(d.next)}`}`,
      requested: `asking for ${device}${ms}`,
      signalled: `signalled via ${String(d.channel ?? '?')}; waiting for call-back${ms}`,
      'called-back': `terminal called back${ms}`,
      connected: `connected${ms}, session ${String(d.session)}`,
      'ipsec-loaded': `charon programmed (${String(d.auth)})${ms}`,
      'tunnel-up': `IPsec tunnel up${ms}: ${String(d.local)} ⇄ ${String(d.remote)} (${String(d.selectors)})`,
      'path-lost': `the path to the device broke (${String(d.reason)}); charon keeps the SAs, re-joining for up to ${Number(d.windowMs) / 1000} s`,
      rejoining: `re-joining, attempt ${String(d.attempt)}${ms}`,
      rejoined: `path re-joined after ${String(d.elapsedMs)} ms; same IPsec SAs`,
      closed: `session ended${d.code === undefined ? '' : ` (${String(d.code)}: ${String(d.message)})`}`,
    }
    process.stderr.write(`beckon: ${text[stage]}\n`)
  }
}

/** IPsec mode (the default): a tunnel to the device's permanent address until Ctrl-C. */
async function connectIpsec (target: string, flags: ConnectFlags): Promise<void> {
  const { device, opts } = await plan(target, flags)
  const ip = clientFields(flags).sub('ipsec')
  const pk = ip.sub('pubkey')
  const log = createLogger({ name: 'client', destination: 2, level: process.env.BECKON_LOG_LEVEL ?? 'warn' })
  const vici = await ViciSession.open({ uri: ip.str('vici', 'unix:///var/run/charon.vici'), waitMs: 5_000, log })
  const tunnels = new TunnelManager(vici, ip.num('nat_t_port', 4500, 1, 65535), log)
  const pubkey = ip.has('pubkey') ? { certPem: readFileSync(pk.str('cert'), 'utf8'), keyPem: readFileSync(pk.str('key'), 'utf8'), caPem: readFileSync(pk.str('ca'), 'utf8') } : undefined
  let tunnel: Tunnel
  try {
    tunnel = await openTunnel(opts, device, { tunnels, host: new NetlinkHostAddresses(), natTPort: ip.num('nat_t_port', 4500, 1, 65535), pubkey, log }, reporter(flags.json === true, `${device}:ipsec`))
  } catch (err) {
    await vici.close()
    throw err
  }
  const stop = async (code: number): Promise<never> => {
    await tunnel.close().catch(() => {})
    await vici.close()
    process.exit(code)
  }
  onTerminate(() => stop(0))
  const why = await tunnel.closed
  const end = why === undefined ? {} : { code: why.code, message: why.message }
  if (flags.json === true) process.stderr.write(JSON.stringify({ stage: 'closed', ...end }) + '\n')
  else process.stderr.write(`beckon: the path to the device closed${why === undefined ? '' : ` (${why.code}: ${why.message})`}\n`)
  await stop(1)
}

async function connect (targetName: string, flags: ConnectFlags): Promise<void> {
  if (flags.tcp === undefined) return await connectIpsec(targetName, flags)
  const port = Number(flags.tcp)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new BeckonError('BECKON_ERR_USAGE', `--tcp ${flags.tcp} is not a port`)
  const localSpec = flags.L ?? flags.listen
  if (localSpec === undefined) throw new BeckonError('BECKON_ERR_USAGE', 'pass -L <localport> (or [host:]port) to forward local connections')
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(localSpec)
  if (m === null) throw new BeckonError('BECKON_ERR_USAGE', `-L ${localSpec}: expected [host:]port`)
  const localHost = m[1] ?? '127.0.0.1'
  const localPort = Number(m[2])
  const { device, opts } = await plan(targetName, flags)
  const target = `${device}:${port}`
  const report = reporter(flags.json === true, target)

  let first: Promise<Session> | undefined = openSession(opts, target, report)
  await first // refusals end the command here, with their code
  const server = net.createServer({ allowHalfOpen: true }, (local: Socket) => {
    local.on('error', () => {})
    local.pause()
    const s = first ?? openSession(opts, target, flags.json === true ? report : undefined)
    first = undefined
    s.then(async (sess) => {
      // A raw TCP session cannot resume: a broken path reaches the local client as a
      // reset (never as a clean end that would make a truncated transfer look whole).
      const lost = (why: string): void => {
        const e = new BeckonError('BECKON_ERR_PATH_LOST', `${target}: ${why}; a raw TCP session cannot resume (its TCP state is gone)`)
        if (flags.json === true) process.stderr.write(JSON.stringify({ stage: 'closed', code: e.code, message: e.message }) + '\n')
        else process.stderr.write(`beckon: ${e.code}: ${e.message}\n`)
        resetSocket(local)
      }
      sess.socket.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ETIMEDOUT') lost(err.code)
      })
      // Node may report the relay's reset as a clean end (see wasReset).
      sess.socket.once('end', () => { if (wasReset(sess.socket)) lost('reset by the relay') })
      await splice(local, sess.socket)
      if (flags.once === true) server.close()
    }, (err: BeckonError) => {
      process.stderr.write(`beckon: ${err.code}: ${err.message}\n`)
      local.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(localPort, localHost, resolve) })
  const addr = server.address() as net.AddressInfo
  if (flags.json === true) process.stderr.write(JSON.stringify({ stage: 'forwarding', listen: `${addr.address}:${addr.port}`, target }) + '\n')
  else process.stderr.write(`beckon: forwarding ${addr.address}:${addr.port} → ${target}\n`)
  onTerminate(() => { server.close(); process.exit(0) })
}

export function registerConnect (program: Command): void {
  program.command('connect').description('reach a device through the relay and forward a local port to it')
    .argument('<device>', 'device name (patient-phone, with --relay or a configured relay) or <device>.<zone> (relays from DNS SRV)')
    .option('--relay <host:port>', 'relay client listener, or `dns` to find relays in DNS')
    .option('--tcp <port>', 'raw TCP mode to this service port (default: IPsec mode to the device\'s permanent address)')
    .option('-L, --listen <[host:]port>', 'local port to forward')
    .option('--user <name>', 'user name (password from the config or BECKON_PASSWORD)')
    .option('--config <path>', 'client config YAML')
    .option('--json', 'print stages as JSON lines on stderr')
    .option('--once', 'exit after the first forwarded connection ends')
    .action(async (device: string, flags: ConnectFlags) => {
      try {
        await connect(device, flags)
      } catch (err) {
        exitWithError(err)
      }
    })
}
