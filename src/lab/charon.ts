/**
 * One charon per network namespace, as on separate machines.
 *
 * charon's pid file is compiled in as /var/run/charon.pid and it refuses to start
 * while that PID lives, so each instance mounts a private tmpfs on /run inside the
 * mount namespace that `ip netns exec` creates (the mount dies with the process).
 * The kernels here have XFRM but no ESP, so ESP runs in userspace (kernel-libipsec,
 * which forces UDP encapsulation and creates the `ipsec0` TUN device).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BeckonError } from '../core/errors.js'
import { ViciSession } from '../proto/vici/session.js'

export const CHARON_BIN = '/usr/lib/ipsec/charon'

/**
 * Plugins, in load order. `openssl` comes before any software crypto so it provides
 * AES/GCM/X25519; `kdf` provides KDF_PRF/PRF+ (5.9.8 fails IKE without it);
 * kernel-libipsec must precede kernel-netlink.
 */
export const CHARON_PLUGINS = [
  'random', 'nonce', 'openssl', 'pem', 'pkcs1', 'pkcs8', 'x509', 'revocation', 'constraints',
  'pubkey', 'kdf', 'kernel-libipsec', 'kernel-netlink', 'socket-default', 'vici',
]

export interface CharonConfig {
  /** Directory for the conf, the VICI socket and the log. */
  dir: string
  /** IKE port (0 = random); must differ from portNatT. */
  port?: number
  /** NAT-T port; connections over a relay use it as `local_port`. */
  portNatT?: number
  /** charon file-log level for the ike/cfg/net/enc groups (-1..4). */
  logLevel?: number
}

export function strongswanConf (c: CharonConfig): string {
  const lvl = c.logLevel ?? 1
  // One value per line: strongSwan's parser is line oriented and this stays diffable.
  return [
    'charon {',
    `  load = ${CHARON_PLUGINS.join(' ')}`,
    `  port = ${c.port ?? 500}`,
    `  port_nat_t = ${c.portNatT ?? 4500}`,
    '  install_routes = yes',
    '  retransmit_tries = 3',
    '  retransmit_timeout = 1.0',
    '  plugins {',
    '    vici {',
    `      socket = unix://${join(c.dir, 'charon.vici')}`,
    '    }',
    '  }',
    '  filelog {',
    '    charonlog {',
    `      path = ${join(c.dir, 'charon.log')}`,
    '      time_format = %T',
    '      default = 1',
    `      ike = ${lvl}`,
    `      cfg = ${lvl}`,
    `      net = ${lvl}`,
    `      enc = ${Math.min(lvl, 1)}`,
    '      flush_line = yes',
    '    }',
    '  }',
    '  syslog {',
    '    daemon {',
    '      default = -1',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n')
}

export class CharonProcess {
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()

  constructor (readonly netns: string, readonly config: CharonConfig) {}

  get viciUri (): string { return `unix://${join(this.config.dir, 'charon.vici')}` }
  get confPath (): string { return join(this.config.dir, 'strongswan.conf') }
  get logPath (): string { return join(this.config.dir, 'charon.log') }
  get pid (): number | undefined { return this.child?.pid }
  get running (): boolean { return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null }

  /** Starts charon and resolves once its VICI socket answers `version`. */
  async start (timeoutMs = 15_000): Promise<void> {
    if (this.running) return
    writeFileSync(this.confPath, strongswanConf(this.config))
    const out = openSync(join(this.config.dir, 'charon.stderr'), 'a')
    const child = spawn('ip', ['netns', 'exec', this.netns, 'sh', '-c', `mount -t tmpfs tmpfs /run && exec ${CHARON_BIN}`], {
      env: { ...process.env, STRONGSWAN_CONF: this.confPath },
      stdio: ['ignore', out, out],
    })
    closeSync(out)
    this.child = child
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    let died = false
    void this.exited.then(() => { died = true })
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (died) throw new BeckonError('BECKON_ERR_LAB', `charon in ${this.netns} exited during start: ${this.tail()}`)
      try {
        const s = await ViciSession.open({ uri: this.viciUri, reconnect: false, timeoutMs: 2_000 })
        try { await s.version() } finally { await s.close() }
        return
      } catch (err) {
        if (Date.now() > deadline) {
          await this.stop()
          throw new BeckonError('BECKON_ERR_LAB', `charon in ${this.netns} not ready after ${timeoutMs} ms: ${this.tail()}`, { cause: err })
        }
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    }
  }

  /** SIGTERM, then SIGKILL if it takes longer than `graceMs`. */
  async stop (graceMs = 5_000): Promise<void> {
    const child = this.child
    if (child === undefined || !this.running) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }

  /** Simulates a crash. */
  async kill (): Promise<void> {
    if (!this.running) return
    this.child?.kill('SIGKILL')
    await this.exited
  }

  tail (lines = 15): string {
    const read = (p: string): string => { try { return readFileSync(p, 'utf8') } catch { return '' } }
    const text = read(join(this.config.dir, 'charon.stderr')) + read(this.logPath)
    return text.trim().split('\n').slice(-lines).join('\n')
  }
}
