/**
 * Raw 32-byte X25519 / Ed25519 keys <-> node:crypto KeyObjects.
 *
 * Config files carry keys as base64url of the raw 32 bytes (as WireGuard does); node
 * wants DER, so the fixed PKCS#8 / SPKI prefixes of RFC 8410 are prepended here.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { BeckonError } from './errors.js'

export type KeyKind = 'x25519' | 'ed25519'

const PKCS8_PREFIX: Record<KeyKind, Buffer> = {
  x25519: Buffer.from('302e020100300506032b656e04220420', 'hex'), // RFC 8410 §7, OID 1.3.101.110
  ed25519: Buffer.from('302e020100300506032b657004220420', 'hex'), // OID 1.3.101.112
}
const SPKI_PREFIX: Record<KeyKind, Buffer> = {
  x25519: Buffer.from('302a300506032b656e032100', 'hex'),
  ed25519: Buffer.from('302a300506032b6570032100', 'hex'),
}

function raw32 (b64: string, what: string): Buffer {
  const b = Buffer.from(b64, 'base64url')
  if (b.length !== 32 || b.toString('base64url') !== b64.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')) {
    throw new BeckonError('BECKON_ERR_CONFIG', `${what} must be 32 bytes in base64url`)
  }
  return b
}

export function privateKeyFromRaw (kind: KeyKind, b64: string, what = `${kind} private key`): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX[kind], raw32(b64, what)]), format: 'der', type: 'pkcs8' })
}

export function publicKeyFromRaw (kind: KeyKind, b64: string, what = `${kind} public key`): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX[kind], raw32(b64, what)]), format: 'der', type: 'spki' })
}

export function rawPublic (key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return pub.export({ format: 'der', type: 'spki' }).subarray(-32)
}

export function rawPrivate (key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(-32)
}

export interface RawKeyPair { privateKey: string, publicKey: string }

export function generateRawKeyPair (kind: KeyKind): RawKeyPair {
  const { privateKey } = kind === 'x25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('ed25519')
  return { privateKey: rawPrivate(privateKey).toString('base64url'), publicKey: rawPublic(privateKey).toString('base64url') }
}
