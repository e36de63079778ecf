/**
 * `beckon import [relay.yaml]`: moves the devices, users, groups, gateways and policies
 * written in relay.yaml into the relay's store (the one its `store:` names, SQLite in
 * the state directory by default). Idempotent: a second run reports everything
 * unchanged. Afterwards remove `devices:` and `users:` from the YAML — the relay refuses
 * to start with devices in both places.
 */
import type { Command } from 'commander'
import { join } from 'node:path'
import { loadRoleConfig } from '../core/config.js'
import { createLogger } from '../core/log.js'
import { parseRelayConfig } from '../roles/relay/config.js'
import { describeStore, openStore } from '../store/open.js'
import { exitWithError, printJson } from './output.js'

export function registerImport (program: Command): void {
  program.command('import').description('move relay.yaml\'s devices, users, groups, gateways and policies into the store')
    .argument('[config]', 'relay.yaml', process.env.BECKON_RELAY_CONFIG ?? '/etc/beckon/relay.yaml')
    .option('--store <spec>', 'sqlite:<path> or postgres://… (default: relay.yaml\'s store)')
    .option('--json', 'print the report as JSON')
    .action(async (path: string, o: { store?: string, json?: boolean }) => {
      try {
        const cfg = parseRelayConfig(loadRoleConfig('relay', path), path)
        const spec = o.store === undefined
          ? cfg.store ?? { sqlite: join(cfg.stateDir, 'beckon.db') }
          : o.store.startsWith('sqlite:') ? { sqlite: o.store.slice(7) } : { postgres: o.store }
        const store = await openStore(spec, { log: createLogger({ name: 'import', destination: 2, level: 'warn' }) })
        try {
          const report = await store.import(cfg.seed, `import:${path}`)
          if (o.json === true) printJson({ store: describeStore(spec), report })
          else {
            process.stdout.write(`imported ${path} into ${describeStore(spec)}\n`)
            for (const [kind, r] of Object.entries(report)) process.stdout.write(`  ${kind.padEnd(8)} ${String(r.created).padStart(4)} created ${String(r.updated).padStart(4)} updated ${String(r.unchanged).padStart(4)} unchanged\n`)
            if ((cfg.seed.devices?.length ?? 0) > 0) process.stdout.write('now remove devices:, users: and gateways: from the YAML; the relay refuses devices in both places\n')
          }
        } finally { await store.close() }
      } catch (err) { exitWithError(err) }
    })
}
