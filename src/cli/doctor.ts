/**
 * `beckon doctor [--role R] [--config path] [--json] [--online]`: checks what a role needs
 * from this host (src/doctor/doctor.ts) and says how to fix each miss. Exit 1 when any
 * check fails. This file wires in what the doctor module may not import: the roles' config
 * parsers and the channel probes (SMPP bind, SMTP and IMAP login).
 */
import type { Command } from 'commander'
import { readFileSync } from 'node:fs'
import { ImapFlow } from 'imapflow'
import nodemailer from 'nodemailer'
import { BeckonError } from '../core/errors.js'
import type { Obj } from '../core/config.js'
import { SmppBind } from '../channels/sms/smpp.js'
import { parseAgentConfig } from '../roles/agent/agent.js'
import { parseGatewayConfig } from '../roles/gateway/gateway.js'
import { parseRelayConfig } from '../roles/relay/config.js'
import { ROLES, defaultEnv, formatTable, runDoctor, type OnlineProbes, type Role } from '../doctor/doctor.js'
import { exitWithError } from './output.js'

function parseConfig (role: Role, obj: Obj, source: string): void {
  if (role === 'relay') parseRelayConfig(obj, source)
  else if (role === 'gateway') parseGatewayConfig(obj, source)
  else if (role === 'agent') parseAgentConfig(obj, source)
  // client.yaml has no schema of its own yet: doctor's required keys are the check.
}

function address (o: Obj, fallbackPort: number): { host: string, port: number } {
  const s = String(o.address ?? '')
  const i = s.lastIndexOf(':')
  return i < 0 ? { host: s, port: fallbackPort } : { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
}

const ca = (o: Obj): Buffer | undefined => typeof o.ca === 'string' ? readFileSync(o.ca) : undefined

export const onlineProbes: OnlineProbes = {
  async smppBind (o) {
    const bind = new SmppBind({ url: o.url, systemId: o.systemId, password: o.password, mode: o.mode })
    bind.start()
    try { await bind.waitBound(5_000) } finally { await bind.stop() }
  },
  async smtpLogin (o) {
    const { host, port } = address(o, 587)
    const tx = nodemailer.createTransport({
      host, port, secure: port === 465, requireTLS: port !== 465,
      tls: { ca: ca(o), servername: host },
      auth: { user: String(o.user), pass: String(o.password) },
      connectionTimeout: 5_000, greetingTimeout: 5_000, socketTimeout: 5_000,
    })
    try { await tx.verify() } finally { tx.close() }
  },
  async imapLogin (o) {
    const { host, port } = address(o, 993)
    const client = new ImapFlow({ host, port, secure: true, tls: { ca: ca(o), servername: host }, auth: { user: String(o.user), pass: String(o.password) }, logger: false } as ConstructorParameters<typeof ImapFlow>[0])
    client.on('error', () => {})
    try { await client.connect() } finally { client.close() }
  },
}

interface DoctorOpts { role?: string, config?: string, json?: boolean, online?: boolean, dialback?: string, vici?: string }

export function registerDoctor (program: Command): void {
  program.command('doctor')
    .description('check what a role needs from this host (charon and plugins, kernel, VICI socket, config, ports, clock) and how to fix each miss')
    .option('--role <role>', `one of ${ROLES.join(', ')} (default: host checks only)`)
    .option('-c, --config <path>', 'the role\'s YAML (default /etc/beckon/<role>.yaml)')
    .option('--json', 'print the checks as a JSON array')
    .option('--online', 'also dial out: SMSC bind, SMTP/IMAP login, the relay\'s dial-back port, the store')
    .option('--dialback <host:port>', 'with --online --role gateway: the relay\'s dial-back port')
    .option('--vici <uri>', 'charon\'s VICI socket (default: the config\'s, then unix:///var/run/charon.vici)')
    .action(async (o: DoctorOpts) => {
      try {
        if (o.role !== undefined && !(ROLES as readonly string[]).includes(o.role)) throw new BeckonError('BECKON_ERR_USAGE', `--role must be one of ${ROLES.join(', ')}`)
        const env = defaultEnv({
          role: o.role as Role | undefined,
          configPath: o.config,
          parseConfig,
          viciUri: o.vici,
          environ: process.env,
          // BECKON_DOCTOR_ROOT: check a staged tree (appliance/install.sh --root) instead of /.
          root: process.env.BECKON_DOCTOR_ROOT ?? '',
          online: { ...onlineProbes, dialback: o.dialback },
        })
        const results = await runDoctor(env, { online: o.online === true })
        process.stdout.write(o.json === true ? JSON.stringify(results, null, process.stdout.isTTY ? 2 : 0) + '\n' : formatTable(results))
        process.exitCode = results.some((r) => r.status === 'fail') ? 1 : 0
      } catch (err) {
        exitWithError(err)
      }
    })
}
