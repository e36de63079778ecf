#!/usr/bin/env node
/**
 * The `beckon` command: one composition root per role, and operator tools.
 * Only code under cli/ wires components together and listens on sockets.
 *
 * Each command group lives in its own module and is imported only when its command runs:
 * loading every role, fastify, kysely and the LDAP client up front cost ~1 s per call,
 * which the management commands, `lab exec` and the tests pay many times over. With no
 * command (or --help) every module is loaded so the help lists them all.
 */
import { Command } from 'commander'
import { createRequire } from 'node:module'

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string }

// `beckon vici list-sas | head`: a reader that goes away ends us quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err })

type Register = (program: Command) => void
/** Module → the commands it registers. Order matters: manage's `gateway add|list…` extends roles' `gateway`. */
const MODULES: Array<[() => Promise<Register>, string[]]> = [
  [async () => (await import('./roles.js')).registerRoles, ['relay', 'gateway', 'agent', 'smsc', 'keygen', 'hash-password']],
  [async () => (await import('./connect.js')).registerConnect, ['connect']],
  [async () => (await import('./vici.js')).registerVici, ['vici']],
  [async () => (await import('./lab.js')).registerLab, ['lab']],
  [async () => (await import('./import.js')).registerImport, ['import']],
  [async () => (await import('./apply.js')).registerApply, ['apply']],
  [async () => (await import('./ca.js')).registerCa, ['ca']],
  [async () => (await import('./doctor.js')).registerDoctor, ['doctor']],
  [async () => (await import('./demo.js')).registerDemo, ['demo']],
  [async () => (await import('./manage.js')).registerManage, ['device', 'policy', 'user', 'group', 'gateway', 'directory', 'token', 'session', 'audit']],
]

const program = new Command('beckon')
  .description('reach mobile server terminals behind carrier NAT through a signalled rendezvous and end-to-end IPsec')
  .version(pkg.version)
  .showHelpAfterError()

const name = process.argv[2]
const known = MODULES.some(([, cmds]) => cmds.includes(name ?? ''))
for (const [load, cmds] of MODULES) {
  if (!known || cmds.includes(name!)) (await load())(program)
}

await program.parseAsync(process.argv)
