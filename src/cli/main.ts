#!/usr/bin/env node
/**
 * The `beckon` command: one composition root per role, and operator tools.
 * Only code under cli/ wires components together and listens on sockets.
 */
import { Command } from 'commander'
import { createRequire } from 'node:module'
import { registerCa } from './ca.js'
import { registerConnect } from './connect.js'
import { registerDemo } from './demo.js'
import { registerDoctor } from './doctor.js'
import { registerApply } from './apply.js'
import { registerImport } from './import.js'
import { registerLab } from './lab.js'
import { registerManage } from './manage.js'
import { registerRoles } from './roles.js'
import { registerVici } from './vici.js'

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string }

// `beckon vici list-sas | head`: a reader that goes away ends us quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err })

const program = new Command('beckon')
  .description('reach mobile server terminals behind carrier NAT through a signalled rendezvous and end-to-end IPsec')
  .version(pkg.version)
  .showHelpAfterError()

registerRoles(program)
registerConnect(program)
registerVici(program)
registerLab(program)
registerImport(program)
registerApply(program)
registerCa(program)
registerDoctor(program)
registerDemo(program)
registerManage(program)

await program.parseAsync(process.argv)
