/**
 * OpenLDAP's slapd (Debian's `slapd` package) as the lab's and the tests' user directory.
 *
 * One private instance per directory: a slapd.conf (one directive per line), an mdb
 * database seeded with slapadd, and slapd run in the foreground by the caller, so that
 * several labs and the host's own slapd (if any) never meet.
 *
 *   <suffix>                         e.g. dc=lab,dc=beckon,dc=example
 *   ├── cn=admin                     rootdn (the service account in the lab)
 *   ├── ou=people
 *   │   └── uid=dr-grey              inetOrgPerson, userPassword {SSHA}, memberOf (operational)
 *   └── ou=groups
 *       └── cn=physicians            groupOfNames, member: uid=dr-grey,ou=people,…
 *
 * `memberOf` is maintained by the memberof overlay (with refint) for later changes over
 * LDAP; slapadd bypasses overlays, so the seed writes the initial memberOf values itself,
 * exactly as the overlay would have. Passwords are stored as {SSHA} (RFC 2307 scheme,
 * SHA-1 of password‖salt, then salt), computed here so no slappasswd run leaks them in argv.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { BeckonError } from '../core/errors.js'
import { run, waitFor } from '../core/exec.js'

export const LAB_LDAP_SUFFIX = 'dc=lab,dc=beckon,dc=example'

export interface LdapLabUser {
  uid: string
  password: string
  /** Group names (cn of groupOfNames entries under ou=groups). */
  groups: string[]
}

export interface LdapConfigOptions {
  /** URLs slapd listens on, e.g. `ldap://127.0.0.1:3389/`, `ldaps://127.0.0.1:3636/`. */
  listen: string[]
  suffix: string
  /** PEM files; enables StartTLS on ldap:// and makes ldaps:// usable. */
  tls?: { cert: string, key: string, ca: string }
  users: LdapLabUser[]
  /** Password of the rootdn `cn=admin,<suffix>`. */
  adminPassword: string
}

export interface LdapLayout {
  dir: string
  config: string
  listen: string[]
  suffix: string
  adminDn: string
  peopleDn: string
  groupsDn: string
}

const SLAPD = '/usr/sbin/slapd'
const SLAPADD = '/usr/sbin/slapadd'
const SCHEMA = '/etc/ldap/schema'
const MODULES = '/usr/lib/ldap'

/** RFC 2307 `{SSHA}`: base64(SHA-1(password ‖ salt) ‖ salt). */
export function sshaHash (password: string): string {
  const salt = randomBytes(8)
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest()
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`
}

/** An LDIF value: plain when RFC 2849 SAFE-STRING allows, base64 (`::`) otherwise. */
function ldifLine (attr: string, value: string): string {
  const safe = /^[\x01-\x09\x0b-\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b-\x0c\x0e-\x7f]*$/.test(value) && !value.endsWith(' ')
  return safe ? `${attr}: ${value}` : `${attr}:: ${Buffer.from(value, 'utf8').toString('base64')}`
}

/** RFC 4514 escaping of one attribute value inside a DN. */
function dnValue (v: string): string {
  return v.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`).replace(/^[ #]/, (c) => `\\${c}`).replace(/ $/, '\\ ')
}

function check (what: string, v: string): void {
  if (v === '' || /[\0\n\r]/.test(v)) throw new BeckonError('BECKON_ERR_LAB', `ldap: invalid ${what} ${JSON.stringify(v)}`)
}

/**
 * Writes `<dir>/slapd.conf`, seeds `<dir>/db` with slapadd and records the listen URLs
 * for slapdCommand. The directory must be fresh (slapadd refuses existing entries).
 */
export async function writeLdapConfig (dir: string, o: LdapConfigOptions): Promise<LdapLayout> {
  if (o.listen.length === 0) throw new BeckonError('BECKON_ERR_LAB', 'ldap: no listen URL')
  for (const u of o.listen) if (!/^ldaps?:\/\/[^\s"]+\/?$/.test(u)) throw new BeckonError('BECKON_ERR_LAB', `ldap: bad listen URL ${u}`)
  if (o.tls === undefined && o.listen.some((u) => u.startsWith('ldaps:'))) throw new BeckonError('BECKON_ERR_LAB', 'ldap: ldaps:// needs tls')
  check('suffix', o.suffix)
  check('admin password', o.adminPassword)
  const first = /^dc=([^,]+)/i.exec(o.suffix)
  if (first === null) throw new BeckonError('BECKON_ERR_LAB', `ldap: suffix must start with dc=: ${o.suffix}`)

  const d = (p: string): string => join(dir, p)
  mkdirSync(d('db'), { recursive: true, mode: 0o700 })
  const layout: LdapLayout = {
    dir,
    config: d('slapd.conf'),
    listen: [...o.listen],
    suffix: o.suffix,
    adminDn: `cn=admin,${o.suffix}`,
    peopleDn: `ou=people,${o.suffix}`,
    groupsDn: `ou=groups,${o.suffix}`,
  }

  writeFileSync(layout.config, [
    `include ${SCHEMA}/core.schema`,
    `include ${SCHEMA}/cosine.schema`,
    `include ${SCHEMA}/inetorgperson.schema`,
    `pidfile ${d('slapd.pid')}`,
    `argsfile ${d('slapd.args')}`,
    `modulepath ${MODULES}`,
    'moduleload back_mdb',
    'moduleload memberof',
    'moduleload refint',
    ...(o.tls === undefined
      ? []
      : [
          `TLSCACertificateFile ${o.tls.ca}`,
          `TLSCertificateFile ${o.tls.cert}`,
          `TLSCertificateKeyFile ${o.tls.key}`,
          'TLSProtocolMin 3.3',
        ]),
    // Bounded work per request, whatever the client asks for.
    'sizelimit 500',
    'timelimit 10',
    'database mdb',
    `suffix "${o.suffix}"`,
    `rootdn "${layout.adminDn}"`,
    `rootpw ${sshaHash(o.adminPassword)}`,
    `directory ${d('db')}`,
    'maxsize 67108864',
    'index objectClass eq',
    'index uid eq',
    'index member eq',
    'overlay memberof',
    'memberof-group-oc groupOfNames',
    'memberof-member-ad member',
    'memberof-memberof-ad memberOf',
    'memberof-refint TRUE',
    'overlay refint',
    'refint_attributes member',
    // Passwords serve binds only; everything else is readable (a lab, not a vault).
    'access to attrs=userPassword by self write by anonymous auth by * none',
    'access to * by * read',
    '',
  ].join('\n'), { mode: 0o600 })
  writeFileSync(d('listen'), layout.listen.join('\n') + '\n')

  const groups = new Map<string, string[]>()
  const entries: string[][] = [
    ['dn: ' + o.suffix, 'objectClass: dcObject', 'objectClass: organization', ldifLine('dc', first[1]!), ldifLine('o', first[1]!)],
    [`dn: ${layout.peopleDn}`, 'objectClass: organizationalUnit', 'ou: people'],
    [`dn: ${layout.groupsDn}`, 'objectClass: organizationalUnit', 'ou: groups'],
  ]
  const groupDn = (g: string): string => `cn=${dnValue(g)},${layout.groupsDn}`
  for (const u of o.users) {
    check('uid', u.uid)
    check(`password of ${u.uid}`, u.password)
    const dn = `uid=${dnValue(u.uid)},${layout.peopleDn}`
    for (const g of u.groups) {
      check('group', g)
      groups.set(g, [...(groups.get(g) ?? []), dn])
    }
    entries.push([
      ldifLine('dn', dn), 'objectClass: inetOrgPerson',
      ldifLine('uid', u.uid), ldifLine('cn', u.uid), ldifLine('sn', u.uid),
      ldifLine('userPassword', sshaHash(u.password)),
      ...[...new Set(u.groups)].map((g) => ldifLine('memberOf', groupDn(g))),
    ])
  }
  // groupOfNames needs at least one member: only groups somebody belongs to exist.
  for (const [g, members] of groups) {
    entries.push([ldifLine('dn', groupDn(g)), 'objectClass: groupOfNames', ldifLine('cn', g), ...[...new Set(members)].map((m) => ldifLine('member', m))])
  }
  const ldif = entries.map((e) => e.join('\n') + '\n').join('\n')
  await run(SLAPADD, ['-q', '-f', layout.config, '-b', o.suffix], { input: ldif, timeoutMs: 30_000 })
  return layout
}

/** The argv that runs this directory's slapd in the foreground (no detach, no syslog debug). */
export function slapdCommand (dir: string, listen?: string[]): string[] {
  const urls = listen ?? readFileSync(join(dir, 'listen'), 'utf8').split('\n').filter((l) => l !== '')
  return [SLAPD, '-d', '0', '-h', urls.join(' '), '-f', join(dir, 'slapd.conf')]
}

export interface SlapdProcess {
  pid: number
  /** SIGTERM (after SIGCONT, should the test have frozen it), then SIGKILL after 5 s. Idempotent. */
  stop: () => Promise<void>
}

export interface StartSlapdOptions {
  dir: string
  listen?: string[]
  /** Readiness probe; defaults to a TCP connect to every listen URL (from this namespace). */
  probe?: () => Promise<boolean>
  readyTimeoutMs?: number
  /**
   * SIGTERM slapd when this process dies, even by SIGKILL (prctl PR_SET_PDEATHSIG via
   * util-linux `setpriv`): for tests, whose runner may kill them on a timeout.
   */
  dieWithParent?: boolean
}

function hostPort (url: string): { host: string, port: number } {
  const u = new URL(url)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return { host, port: u.port === '' ? (u.protocol === 'ldaps:' ? 636 : 389) : Number(u.port) }
}

export function tcpProbe (host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const done = (ok: boolean): void => { clearTimeout(timer); s.destroy(); resolve(ok) }
    const timer = setTimeout(() => done(false), timeoutMs)
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

/**
 * Starts slapd (optionally behind `wrap`, e.g. `ip netns exec <ns>`; it and setpriv exec in
 * place, so the pid is slapd's) and resolves once every listener accepts connections.
 */
export async function startSlapd (o: StartSlapdOptions, wrap: string[] = []): Promise<SlapdProcess> {
  const argv = [...wrap, ...(o.dieWithParent === true ? ['setpriv', '--pdeathsig', 'SIGTERM'] : []), ...slapdCommand(o.dir, o.listen)]
  const urls = o.listen ?? readFileSync(join(o.dir, 'listen'), 'utf8').split('\n').filter((l) => l !== '')
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
  let exited = false
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => { exited = true; resolve() })
    child.once('error', (err) => { exited = true; stderr += err.message; resolve() })
  })
  const stop = async (): Promise<void> => {
    if (exited) return
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await exit
    clearTimeout(timer)
  }
  const probe = o.probe ?? (async () => {
    for (const u of urls) {
      const { host, port } = hostPort(u)
      if (!await tcpProbe(host, port)) return false
    }
    return true
  })
  try {
    await waitFor('slapd to listen', async () => {
      if (exited) throw new BeckonError('BECKON_ERR_LAB', `slapd exited: ${stderr.trim()}`)
      return await probe()
    }, o.readyTimeoutMs ?? 10_000)
  } catch (err) {
    await stop()
    throw err
  }
  if (child.pid === undefined) throw new BeckonError('BECKON_ERR_LAB', 'slapd: no pid')
  return { pid: child.pid, stop }
}
