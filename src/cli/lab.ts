/**
 * `beckon lab up | down | status [--json] | exec <node> -- <cmd…>`: the namespace test
 * network (src/lab/lab.ts). Needs root. State lives in --state-dir
 * (env BECKON_LAB_DIR, default /tmp/beckon-lab); namespaces are `<prefix>-<node>`.
 */
import type { Command } from 'commander'
import { BeckonError } from '../core/errors.js'
import { NODE_NAMES, labDown, labExec, labStatus, labUp, type LabState } from '../lab/lab.js'
import { parseNetVariants } from '../lab/variants.js'
import { Fields } from '../core/config.js'
import { exitWithError, printJson } from './output.js'

interface LabFlags { stateDir: string, prefix: string, json?: boolean, withSink?: boolean, ipsecAuth?: string, channels?: string, net?: string, wakeDelay?: string, wakeTimeout?: string, natTimeout?: string }

const defaults = { stateDir: process.env.BECKON_LAB_DIR ?? '/tmp/beckon-lab', prefix: process.env.BECKON_LAB_PREFIX ?? 'beckon' }

function table (st: LabState): string {
  const rows = (Object.keys(st.nodes) as Array<typeof NODE_NAMES[number]>).map((n) => `  ${n.padEnd(11)} ${st.nodes[n].netns.padEnd(20)} ${Object.entries(st.nodes[n].addresses).map(([i, a]) => `${i} ${a}`).join(', ')}`)
  return [
    'nodes:',
    ...rows,
    '',
    `relay:     CONNECT listener https://${st.relay.client} (CA ${st.relay.ca}), dial-back ${st.relay.dialback}`,
    `terminal:  ${st.terminal.device} (MSISDN ${st.terminal.msisdn}), agent ${st.terminal.agent}, service ${st.terminal.services.join(', ')}`,
    `user:      ${st.user.name} / ${st.user.password}, permanent address ${st.user.permanentAddress}`,
    `           ${st.user2.name} / ${st.user2.password}, permanent address ${st.user2.permanentAddress}`,
    `           (visitor without access: ${st.visitor.name} / ${st.visitor.password})`,
    `mail:      SMTP submission ${st.mail.smtp} (STARTTLS), IMAPS ${st.mail.imap}; ${st.terminal.device} signals by ${st.channels.join(' then ')}`,
    `IPsec:     ${st.terminal.device} at ${st.terminal.permanentAddress} (tcp/8080), auth ${st.ipsec.auth} (lab CA ${st.ipsec.ca})`,
    '',
    'try:',
    `  beckon lab exec client -- beckon connect ${st.terminal.device} &          # IPsec mode`,
    `  beckon lab exec client -- curl -s http://[${st.terminal.permanentAddress}]:8080/glucose`,
    `  beckon lab exec client -- beckon connect ${st.terminal.device} --tcp 8080 -L 18080 &   # raw mode`,
    '  beckon lab exec client -- curl -s http://127.0.0.1:18080/glucose',
    `  beckon lab exec client -- curl -s --proxytunnel --proxy https://${st.user.name}:${st.user.password}@${st.relay.client} --proxy-cacert ${st.relay.ca} http://${st.terminal.device}:8080/glucose`,
    `  beckon lab exec client -- curl -m 3 http://${st.terminal.services[0]}/glucose    # direct: refused by carrier-fw`,
    ...(st.net.variants.length === 0 ? [] : [`network:   ${st.net.variants.join(', ')}${st.net.proxy === undefined ? '' : ` (egress proxy ${st.net.proxy.carrier}; clients ${st.net.proxy.clients})`}`]),
    `logs: ${st.stateDir}/logs`,
  ].join('\n')
}

export function registerLab (program: Command): void {
  const lab = program.command('lab').description('build, inspect and tear down the namespace test network (root)')
  const common = (c: Command): Command => c
    .option('--state-dir <dir>', 'lab state directory (env BECKON_LAB_DIR)', defaults.stateDir)
    .option('--prefix <p>', 'namespace name prefix (env BECKON_LAB_PREFIX)', defaults.prefix)

  common(lab.command('up').description('create the nodes, start SMSC, relay, gateway, agent and the sample service'))
    .option('--json', 'print the status as JSON')
    .option('--with-sink', 'also run the bench byte sink on terminal:9000 (bench/splice)')
    .option('--ipsec-auth <mode>', 'psk (default) or pubkey for the sample device')
    .option('--channels <list>', 'the sample device\'s signal channels in order: sms (default), email, sms,email')
    .option('--net <variants>', 'carrier network variants, comma-separated: double-nat, symmetric-nat, egress-proxy, ipv6-only, lossy, sleepy, short-nat-timeout')
    .option('--wake-delay <duration>', 'sleepy: how long the SMSC holds a message (default 60s)')
    .option('--wake-timeout <duration>', 'the sample device\'s wake timeout (default 10s; sleepy 10m)')
    .option('--nat-timeout <duration>', 'short-nat-timeout: carrier-fw\'s idle TCP timeout (default 30s)')
    .action(async (f: LabFlags) => {
      try {
        if (f.ipsecAuth !== undefined && f.ipsecAuth !== 'psk' && f.ipsecAuth !== 'pubkey') throw new BeckonError('BECKON_ERR_USAGE', '--ipsec-auth must be psk or pubkey')
        const channels = (f.channels ?? 'sms').split(',').map((c) => c.trim())
        if (channels.length === 0 || !channels.every((c) => c === 'sms' || c === 'email') || new Set(channels).size !== channels.length) throw new BeckonError('BECKON_ERR_USAGE', '--channels must list sms and/or email, e.g. sms,email')
        const d = new Fields({ wake_delay: f.wakeDelay, wake_timeout: f.wakeTimeout, nat_timeout: f.natTimeout }, 'lab up')
        const natMs = d.has('nat_timeout') ? d.ms('nat_timeout') : undefined
        const st = await labUp({
          stateDir: f.stateDir,
          prefix: f.prefix,
          sink: f.withSink,
          ipsecAuth: f.ipsecAuth as 'psk' | 'pubkey' | undefined,
          channels: channels as Array<'sms' | 'email'>,
          net: f.net === undefined ? [] : parseNetVariants(f.net),
          ...(d.has('wake_delay') ? { wakeDelayMs: d.ms('wake_delay') } : {}),
          ...(d.has('wake_timeout') ? { wakeTimeoutMs: d.ms('wake_timeout') } : {}),
          ...(natMs === undefined ? {} : { natTimeoutS: Math.max(1, Math.round(natMs / 1000)) }),
        })
        if (f.json === true) printJson(labStatus(st.stateDir))
        else process.stdout.write(table(st) + '\n')
      } catch (err) { exitWithError(err) }
    })
  common(lab.command('down').description('stop every process and remove every namespace and file of the lab'))
    .action(async (f: LabFlags) => {
      try { await labDown(f.stateDir, f.prefix) } catch (err) { exitWithError(err) }
    })
  common(lab.command('status').description('nodes, addresses, credentials and processes'))
    .option('--json', 'as JSON')
    .action((f: LabFlags) => {
      try {
        const st = labStatus(f.stateDir)
        if (f.json === true) printJson(st)
        else process.stdout.write(table(st) + '\n\nprocesses:\n' + Object.entries(st.running).map(([n, up]) => `  ${n.padEnd(8)} ${up ? 'running' : 'STOPPED'} (pid ${st.processes[n]!.pid})`).join('\n') + '\n')
      } catch (err) { exitWithError(err) }
    })
  common(lab.command('exec').description('run a command in a node: beckon lab exec client -- curl …'))
    .argument('<node>', `one of ${NODE_NAMES.join(', ')}`)
    .argument('<cmd...>', 'the command and its arguments (after --)')
    .action(async (node: string, cmd: string[], f: LabFlags) => {
      try {
        if (cmd.length === 0) throw new BeckonError('BECKON_ERR_USAGE', 'nothing to run')
        process.exitCode = await labExec(f.stateDir, node, cmd)
      } catch (err) { exitWithError(err) }
    })
}
