/**
 * `beckon apply <file>`: makes the control plane hold what a YAML (or JSON) file says,
 * through the management API — gateways, groups, users, devices, their policies and the
 * LDAP connection, in the order their references need. Each record is created when
 * absent and replaced when it differs; nothing else is touched. Idempotent: a second run
 * reports everything unchanged. This is how `beckon lab up` seeds the lab.
 *
 *   gateways: [{ name: carrier-gw, public_key: … }]
 *   groups:   [{ name: visitors }]
 *   users:    [{ name: visitor, password: …, groups: [visitors] }]
 *   ldap:     { url: ldap://…, starttls: true, base_dn: …, … }
 *   devices:  [{ name: patient-phone, gateway: carrier-gw, msisdn: …, services: […] }]
 *   policies: { patient-phone: { rules: [{ groups: [physicians], ports: [8080] }] } }
 */
import type { Command } from 'commander'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { BeckonError, isBeckonError } from '../core/errors.js'
import { ApiClient, resolveApiTarget, seg } from './api-client.js'
import { exitWithError, printJson } from './output.js'

type Outcome = 'created' | 'updated' | 'unchanged'
type Obj = Record<string, unknown>

/** True when every field the file gives already has that value (the API adds defaults). */
function covers (have: unknown, want: unknown): boolean {
  if (want === null || typeof want !== 'object') return JSON.stringify(have) === JSON.stringify(want)
  if (Array.isArray(want)) return Array.isArray(have) && have.length === want.length && want.every((w, i) => covers(have[i], w))
  if (have === null || typeof have !== 'object') return false
  return Object.entries(want as Obj).every(([k, v]) => covers((have as Obj)[k], v))
}

async function upsert (api: ApiClient, path: string, body: Obj, secretFields: string[]): Promise<Outcome> {
  let have: unknown
  try {
    have = await api.get(path)
  } catch (err) {
    if (!isBeckonError(err, 'BECKON_ERR_NOT_FOUND')) throw err
  }
  // Secrets (passwords) are write-only: they cannot be compared, so they are sent only
  // when the record is created.
  const visible = Object.fromEntries(Object.entries(body).filter(([k]) => !secretFields.includes(k)))
  if (have !== undefined && covers(have, visible)) return 'unchanged'
  if (have === undefined) {
    const collection = path.replace(/\/[^/]+$/, '')
    // Singletons (a device's policy, the LDAP connection) are PUT; collections POSTed.
    if (/\/policy$|\/directory\/ldap$/.test(path)) await api.request('PUT', path, { body })
    else await api.request('POST', collection, { body })
    return 'created'
  }
  await api.request('PUT', path, { body: visible })
  return 'updated'
}

export async function apply (api: ApiClient, doc: Obj): Promise<Array<{ kind: string, name: string, outcome: Outcome }>> {
  const list = (k: string): Obj[] => {
    const v = doc[k]
    if (v === undefined) return []
    if (!Array.isArray(v)) throw new BeckonError('BECKON_ERR_USAGE', `${k}: must be a list`)
    return v as Obj[]
  }
  for (const k of Object.keys(doc)) {
    if (!['gateways', 'groups', 'users', 'ldap', 'devices', 'policies'].includes(k)) throw new BeckonError('BECKON_ERR_USAGE', `${k}: unknown section (gateways, groups, users, ldap, devices, policies)`)
  }
  const done: Array<{ kind: string, name: string, outcome: Outcome }> = []
  const each = async (kind: string, items: Obj[], path: (name: string) => string, secrets: string[] = []): Promise<void> => {
    for (const it of items) {
      const name = String(it.name)
      done.push({ kind, name, outcome: await upsert(api, path(name), it, secrets) })
    }
  }
  await each('gateway', list('gateways'), (n) => `/v1/gateways/${seg(n)}`)
  await each('group', list('groups'), (n) => `/v1/groups/${seg(n)}`)
  await each('user', list('users'), (n) => `/v1/users/${seg(n)}`, ['password'])
  if (doc.ldap !== undefined) done.push({ kind: 'ldap', name: 'ldap', outcome: await upsert(api, '/v1/directory/ldap', doc.ldap as Obj, ['bind_password']) })
  await each('device', list('devices'), (n) => `/v1/devices/${seg(n)}`)
  for (const [device, policy] of Object.entries((doc.policies ?? {}) as Record<string, Obj>)) {
    done.push({ kind: 'policy', name: device, outcome: await upsert(api, `/v1/devices/${seg(device)}/policy`, policy, []) })
  }
  return done
}

export function registerApply (program: Command): void {
  program.command('apply').description('create or replace gateways, groups, users, LDAP, devices and policies from a YAML file, through the API')
    .argument('<file>', 'YAML or JSON')
    .option('--json', 'print what was done as JSON')
    .option('--api <url>', 'management API URL (BECKON_API)')
    .option('--ca <file>', 'PEM CA for the API\'s certificate (BECKON_API_CA)')
    .option('--api-config <path>', 'YAML with url, token, ca (BECKON_API_CONFIG)')
    .action(async (file: string, o: { json?: boolean, api?: string, ca?: string, apiConfig?: string }) => {
      let client: ApiClient | undefined
      try {
        let doc: unknown
        try { doc = parseYaml(readFileSync(file, 'utf8')) } catch (err) { throw new BeckonError('BECKON_ERR_USAGE', `${file}: ${(err as Error).message}`) }
        if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new BeckonError('BECKON_ERR_USAGE', `${file}: the top level must be a mapping`)
        client = new ApiClient(resolveApiTarget({ api: o.api, ca: o.ca, apiConfig: o.apiConfig }))
        const done = await apply(client, doc as Obj)
        if (o.json === true) printJson(done)
        else for (const d of done) process.stdout.write(`${d.kind.padEnd(8)} ${d.name.padEnd(24)} ${d.outcome}\n`)
      } catch (err) {
        client?.close()
        exitWithError(err)
      }
      client?.close()
    })
}
