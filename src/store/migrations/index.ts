/**
 * The migrations as a static import map (not files discovered at run time), so they
 * are compiled into dist/ with the rest and `openStore` needs nothing beside the code.
 * Names sort in the order they apply; kysely records applied names in
 * `kysely_migration` and refuses to run when a recorded one is missing here.
 */
import type { Kysely, Migration, MigrationProvider } from 'kysely'
import type { SqlDialect } from '../schema.js'
import * as m001 from './001_initial.js'

type AnyDb = Kysely<any> // eslint-disable-line @typescript-eslint/no-explicit-any

interface DialectMigration {
  up: (db: AnyDb, dialect: SqlDialect) => Promise<void>
  down?: (db: AnyDb, dialect: SqlDialect) => Promise<void>
}

const MIGRATIONS: Record<string, DialectMigration> = {
  '001_initial': m001,
}

/** kysely's Migration takes only the db: bind the dialect in. */
export function migrationProvider (dialect: SqlDialect): MigrationProvider {
  return {
    async getMigrations (): Promise<Record<string, Migration>> {
      return Object.fromEntries(Object.entries(MIGRATIONS).map(([name, m]) => [name, {
        up: (db: AnyDb) => m.up(db, dialect),
        ...(m.down === undefined ? {} : { down: (db: AnyDb) => m.down!(db, dialect) }),
      }]))
    },
  }
}

export const LATEST_MIGRATION = Object.keys(MIGRATIONS).sort().at(-1)!
