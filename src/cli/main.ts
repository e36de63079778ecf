#!/usr/bin/env node
/**
 * The `beckon` command: one composition root per role, and operator tools.
 * Only code under cli/ wires components together and listens on sockets.
 */
import { Command } from 'commander'
import { createRequire } from 'node:module'
import { registerConnect } from './connect.js'
import { registerLab } from './lab.js'
import { registerRoles } from './roles.js'
import { registerVici } from './vici.js'

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string }

const program = new Command('beckon')
  .description('reach mobile server terminals behind carrier NAT through a signalled rendezvous and end-to-end IPsec')
  .version(pkg.version)
  .showHelpAfterError()

registerRoles(program)
registerConnect(program)
registerVici(program)
registerLab(program)

await program.parseAsync(process.argv)
