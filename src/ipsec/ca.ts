/**
 * The deployment's CA for IPsec pubkey mode, made with strongSwan's own `pki` tool
 * (package strongswan-pki): ECDSA P-256 keys, PEM files, the identity as both the
 * subject CN and a subjectAltName so charon matches it as the IKE identity.
 *
 *   beckon ca init  [--dir D]             D/ca.key, D/ca.crt
 *   beckon ca issue <identity> [--dir D]  D/<identity>.key, D/<identity>.crt
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BeckonError } from '../core/errors.js'
import { run } from '../core/exec.js'

const ID_RE = /^[A-Za-z0-9@._-]{1,128}$/

async function pki (args: string[]): Promise<Buffer> {
  const r = await run('pki', args, { allowFail: true, binary: true })
  if (r.code !== 0) throw new BeckonError('BECKON_ERR_CONFIG', `pki ${args[0]} failed: ${r.stderr.trim()}`)
  return r.stdoutBytes!
}

export interface CaFiles { key: string, cert: string }

export async function caInit (dir: string, name = 'Beckon CA', lifetimeDays = 3650): Promise<CaFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const files = { key: join(dir, 'ca.key'), cert: join(dir, 'ca.crt') }
  if (existsSync(files.key)) throw new BeckonError('BECKON_ERR_CONFIG', `${files.key} exists; refusing to replace a CA`)
  writeFileSync(files.key, await pki(['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']), { mode: 0o600 })
  writeFileSync(files.cert, await pki(['--self', '--ca', '--in', files.key, '--type', 'ecdsa', '--dn', `CN=${name}`, '--lifetime', String(lifetimeDays), '--outform', 'pem']))
  return files
}

export async function caIssue (dir: string, identity: string, lifetimeDays = 730): Promise<CaFiles> {
  if (!ID_RE.test(identity)) throw new BeckonError('BECKON_ERR_USAGE', `identity ${JSON.stringify(identity)} may hold only letters, digits and @ . _ -`)
  const ca = { key: join(dir, 'ca.key'), cert: join(dir, 'ca.crt') }
  if (!existsSync(ca.key)) throw new BeckonError('BECKON_ERR_CONFIG', `no CA in ${dir} (beckon ca init)`)
  const files = { key: join(dir, `${identity}.key`), cert: join(dir, `${identity}.crt`) }
  writeFileSync(files.key, await pki(['--gen', '--type', 'ecdsa', '--size', '256', '--outform', 'pem']), { mode: 0o600 })
  const pub = await pki(['--pub', '--in', files.key, '--type', 'ecdsa'])
  const cert = await run('pki', ['--issue', '--cacert', ca.cert, '--cakey', ca.key, '--type', 'pub', '--dn', `CN=${identity}`, '--san', identity, '--lifetime', String(lifetimeDays), '--outform', 'pem'], { input: pub, allowFail: true, binary: true })
  if (cert.code !== 0) throw new BeckonError('BECKON_ERR_CONFIG', `pki --issue failed: ${cert.stderr.trim()}`)
  writeFileSync(files.cert, cert.stdoutBytes!)
  return files
}
