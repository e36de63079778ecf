/**
 * `beckon ca init` / `beckon ca issue <identity>`: the deployment's CA for IPsec pubkey
 * mode (src/ipsec/ca.ts). Prints the files it wrote as JSON.
 */
import type { Command } from 'commander'
import { caInit, caIssue } from '../ipsec/ca.js'
import { exitWithError, printJson } from './output.js'

export function registerCa (program: Command): void {
  const ca = program.command('ca').description('the deployment CA for IPsec pubkey mode (strongSwan pki)')
  ca.command('init').description('create the CA key and certificate')
    .option('--dir <dir>', 'CA directory', '/etc/beckon/ca')
    .option('--name <cn>', 'CA common name', 'Beckon CA')
    .action(async (o: { dir: string, name: string }) => {
      try { printJson(await caInit(o.dir, o.name)) } catch (err) { exitWithError(err) }
    })
  ca.command('issue').description('issue a key and certificate for an IKE identity (user@domain or device.domain)')
    .argument('<identity>')
    .option('--dir <dir>', 'CA directory', '/etc/beckon/ca')
    .action(async (identity: string, o: { dir: string }) => {
      try { printJson(await caIssue(o.dir, identity)) } catch (err) { exitWithError(err) }
    })
}
