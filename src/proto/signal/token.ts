/**
 * The access request signal: one binary token that fits one SMS, and the dial-back proof.
 *
 * The relay seals the token for one gateway with a static-static X25519 agreement:
 *   k = HKDF-SHA256(ikm = X25519(relay, gateway), salt = "beckon-signal-v1",
 *                   info = relayPub ‖ gatewayPub, 32)
 * and ChaCha20-Poly1305 (RFC 8439) under a random 96-bit nonce.
 *
 *   token (≤ 128 bytes, leaving room for a 7-byte port-addressing UDH in 140 octets)
 *   0   u8    version = 1                       ┐ authenticated as AAD
 *   1   u16be relay key id (SHA-256(relayPub)[0..2])┘ selects the sender's key
 *   3   12    nonce
 *   15  n     ciphertext of the plaintext below
 *   …   16    Poly1305 tag
 *
 *   plaintext
 *   0   u8    bits 0-3 tunnel (1 tcp, 2 ipsec); bit 4 relay family (0 v4, 1 v6);
 *             bit 5 reference kind (0 MSISDN, 1 e-mail); bit 6 resume; bit 7 zero
 *   1   4|16  relay address
 *   …   u16be dial-back port
 *   …   12    session id
 *   …   u32be expiry, Unix seconds
 *   …   32    session key (fresh per session; proves the dial-back, derives the PSK)
 *   …   u8    reference length, then the reference (printable ASCII)
 *
 * With an IPv6 relay the fixed part is 99 bytes, so a reference holds ≤ 29 bytes
 * (≤ 41 with IPv4): MSISDNs fit; e-mail references must be short mailbox names.
 *
 * A resume signal (bit 6, IPsec only) asks the gateway to open the path again for a
 * session whose TCP path broke. Its session id is a fresh attempt id, not the resumed
 * session's: the gateway's replay cache and the dial-back proof work on it exactly as on
 * a fresh signal (a replayed resume is refused like any replay), and the token stays as
 * small as before. Which session is resumed travels in the relay-signed descriptor that
 * follows the dial-back (`resume`), where the agent acts on it; the gateway only
 * splices and has no use for it.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, diffieHellman, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto'
import { BeckonError } from '../../core/errors.js'
import { ipBytes, ipString } from '../../core/ip.js'
import { rawPublic } from '../../core/keys.js'

export const TOKEN_VERSION = 1
export const MAX_TOKEN = 128
const HEADER = 3
const NONCE = 12
const TAG = 16
const SESSION_ID = 12
const SESSION_KEY = 32
/** Smallest possible token: IPv4 relay, empty reference. */
const MIN_TOKEN = HEADER + NONCE + 1 + 4 + 2 + SESSION_ID + 4 + SESSION_KEY + 1 + TAG

export enum Tunnel { TCP = 1, IPSEC = 2 }
export type RefKind = 'msisdn' | 'email'

export interface Signal {
  tunnel: Tunnel
  relayAddress: string
  dialbackPort: number
  /** 12 random bytes, hex in logs and on the dial-back line. */
  sessionId: Buffer
  /** Unix seconds. */
  expiry: number
  sessionKey: Buffer
  refKind: RefKind
  reference: string
  /** Re-open the path of an existing IPsec session (bit 6); absent = a fresh session. */
  resume?: boolean
}

function bad (code: 'BECKON_ERR_SIGNAL_MALFORMED' | 'BECKON_ERR_SIGNAL_TOO_LARGE', detail: string): BeckonError {
  return new BeckonError(code, detail)
}

/** Two-byte id of a relay's X25519 public key. */
export function keyId (publicKey: KeyObject | Buffer): number {
  const raw = Buffer.isBuffer(publicKey) ? publicKey : rawPublic(publicKey)
  return createHash('sha256').update(raw).digest().readUInt16BE(0)
}

function sealingKey (own: KeyObject, peer: KeyObject, relayPub: Buffer, gatewayPub: Buffer): Buffer {
  let shared: Buffer
  try {
    shared = diffieHellman({ privateKey: own, publicKey: peer })
  } catch {
    // A small-order public key: OpenSSL refuses the all-zero shared secret.
    throw new BeckonError('BECKON_ERR_SIGNAL_UNKNOWN_KEY', 'X25519 key of small order')
  }
  return Buffer.from(hkdfSync('sha256', shared, 'beckon-signal-v1', Buffer.concat([relayPub, gatewayPub]), 32))
}

function addressBytes (addr: string): Buffer {
  const b = ipBytes(addr)
  if (b === undefined) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `relay address ${JSON.stringify(addr)} is not an IP address`)
  return b
}

function isPrintableAscii (s: string): boolean {
  return /^[\x21-\x7e]*$/.test(s)
}

export function encodePlaintext (s: Signal): Buffer {
  if (s.sessionId.length !== SESSION_ID) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `session id must be ${SESSION_ID} bytes`)
  if (s.sessionKey.length !== SESSION_KEY) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `session key must be ${SESSION_KEY} bytes`)
  if (!Number.isInteger(s.dialbackPort) || s.dialbackPort < 1 || s.dialbackPort > 65535) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `dial-back port ${s.dialbackPort} out of range`)
  if (!Number.isInteger(s.expiry) || s.expiry < 0 || s.expiry > 0xffffffff) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'expiry out of range')
  if (s.tunnel !== Tunnel.TCP && s.tunnel !== Tunnel.IPSEC) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `unknown tunnel type ${String(s.tunnel)}`)
  if (!isPrintableAscii(s.reference)) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'reference must be printable ASCII without spaces')
  if (s.resume === true && s.tunnel !== Tunnel.IPSEC) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'only IPsec sessions resume')
  const addr = addressBytes(s.relayAddress)
  const ref = Buffer.from(s.reference, 'latin1')
  const size = 1 + addr.length + 2 + SESSION_ID + 4 + SESSION_KEY + 1 + ref.length
  const room = MAX_TOKEN - HEADER - NONCE - TAG
  if (size > room) throw bad('BECKON_ERR_SIGNAL_TOO_LARGE', `reference ${JSON.stringify(s.reference)} is ${ref.length} bytes; at most ${ref.length - (size - room)} fit with this relay address`)
  const b = Buffer.alloc(size)
  let o = 0
  b[o++] = s.tunnel | (addr.length === 16 ? 0x10 : 0) | (s.refKind === 'email' ? 0x20 : 0) | (s.resume === true ? 0x40 : 0)
  o += addr.copy(b, o)
  o = b.writeUInt16BE(s.dialbackPort, o)
  o += s.sessionId.copy(b, o)
  o = b.writeUInt32BE(s.expiry, o)
  o += s.sessionKey.copy(b, o)
  b[o++] = ref.length
  ref.copy(b, o)
  return b
}

export function decodePlaintext (b: Buffer): Signal {
  const need = (n: number, at: number, what: string): void => {
    if (b.length < at + n) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `truncated ${what}`)
  }
  need(1, 0, 'flags')
  const flags = b[0]!
  if ((flags & 0x80) !== 0) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'reserved flag bits set')
  const tunnel = flags & 0x0f
  if (tunnel !== Tunnel.TCP && tunnel !== Tunnel.IPSEC) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `unknown tunnel type ${tunnel}`)
  const resume = (flags & 0x40) !== 0
  if (resume && tunnel !== Tunnel.IPSEC) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'resume flag on a raw TCP signal')
  const alen = (flags & 0x10) !== 0 ? 16 : 4
  let o = 1
  need(alen + 2 + SESSION_ID + 4 + SESSION_KEY + 1, o, 'fixed fields')
  const relayAddress = ipString(b.subarray(o, o + alen)); o += alen
  const dialbackPort = b.readUInt16BE(o); o += 2
  if (dialbackPort === 0) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'dial-back port 0')
  const sessionId = Buffer.from(b.subarray(o, o + SESSION_ID)); o += SESSION_ID
  const expiry = b.readUInt32BE(o); o += 4
  const sessionKey = Buffer.from(b.subarray(o, o + SESSION_KEY)); o += SESSION_KEY
  const rlen = b[o++]!
  need(rlen, o, 'reference')
  if (b.length !== o + rlen) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `${b.length - o - rlen} trailing bytes`)
  const reference = b.toString('latin1', o, o + rlen)
  if (!isPrintableAscii(reference)) throw bad('BECKON_ERR_SIGNAL_MALFORMED', 'reference is not printable ASCII')
  return { tunnel, relayAddress, dialbackPort, sessionId, expiry, sessionKey, refKind: (flags & 0x20) !== 0 ? 'email' : 'msisdn', reference, ...(resume ? { resume } : {}) }
}

/** The relay's side: seals a signal for one gateway. */
export function sealSignal (s: Signal, relayPrivate: KeyObject, gatewayPublic: KeyObject, nonce: Buffer = randomBytes(NONCE)): Buffer {
  const relayPub = rawPublic(relayPrivate)
  const key = sealingKey(relayPrivate, gatewayPublic, relayPub, rawPublic(gatewayPublic))
  const header = Buffer.alloc(HEADER)
  header[0] = TOKEN_VERSION
  header.writeUInt16BE(keyId(relayPub), 1)
  const plain = encodePlaintext(s)
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG })
  cipher.setAAD(header, { plaintextLength: plain.length })
  const ct = Buffer.concat([cipher.update(plain), cipher.final()])
  return Buffer.concat([header, nonce, ct, cipher.getAuthTag()])
}

export interface OpenOptions {
  gatewayPrivate: KeyObject
  /** The relays this gateway accepts signals from. */
  relays: readonly KeyObject[]
  /** Unix seconds. */
  now: number
  /** Refuse expiries further ahead than this (a token cannot outlive it). */
  maxLifetimeSec?: number
}

/** The gateway's side: authenticates, decrypts and checks freshness. Replays: ReplayCache. */
export function openSignal (token: Buffer, o: OpenOptions): Signal {
  if (token.length > MAX_TOKEN) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `token of ${token.length} bytes exceeds ${MAX_TOKEN}`)
  if (token.length < MIN_TOKEN) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `token of ${token.length} bytes is shorter than the minimum ${MIN_TOKEN}`)
  if (token[0] !== TOKEN_VERSION) throw bad('BECKON_ERR_SIGNAL_MALFORMED', `unsupported token version ${token[0]}`)
  const id = token.readUInt16BE(1)
  const gatewayPub = rawPublic(o.gatewayPrivate)
  const candidates = o.relays.filter((k) => keyId(k) === id)
  if (candidates.length === 0) throw new BeckonError('BECKON_ERR_SIGNAL_UNKNOWN_KEY', `no trusted relay key with id ${id.toString(16).padStart(4, '0')}`)
  const nonce = token.subarray(HEADER, HEADER + NONCE)
  const ct = token.subarray(HEADER + NONCE, token.length - TAG)
  const tag = token.subarray(token.length - TAG)
  let plain: Buffer | undefined
  for (const relay of candidates) {
    const key = sealingKey(o.gatewayPrivate, relay, rawPublic(relay), gatewayPub)
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG })
    d.setAAD(token.subarray(0, HEADER), { plaintextLength: ct.length })
    d.setAuthTag(tag)
    try {
      plain = Buffer.concat([d.update(ct), d.final()])
      break
    } catch { /* try the next key with the same id */ }
  }
  if (plain === undefined) throw new BeckonError('BECKON_ERR_SIGNAL_FORGED', 'authentication failed')
  const s = decodePlaintext(plain)
  if (s.expiry <= o.now) throw new BeckonError('BECKON_ERR_SIGNAL_EXPIRED', `expired ${o.now - s.expiry} s ago`)
  const maxLife = o.maxLifetimeSec ?? 3600
  if (s.expiry > o.now + maxLife) throw new BeckonError('BECKON_ERR_SIGNAL_EXPIRED', `expiry ${s.expiry - o.now} s ahead exceeds the ${maxLife} s maximum`)
  return s
}

/** Dial-back proof: HMAC-SHA256(session key, "beckon-dialback-v1" ‖ session id). */
export function dialbackProof (sessionKey: Buffer, sessionId: Buffer): Buffer {
  return createHmac('sha256', sessionKey).update('beckon-dialback-v1').update(sessionId).digest()
}

export function checkDialbackProof (sessionKey: Buffer, sessionId: Buffer, proof: Buffer): boolean {
  const want = dialbackProof(sessionKey, sessionId)
  return proof.length === want.length && timingSafeEqual(proof, want)
}

/**
 * Remembers session ids until their expiry so a token is acted on once. Bounded:
 * when full it refuses new signals (never forgets unexpired ids, which would reopen
 * the replay window).
 */
export class ReplayCache {
  private readonly seen = new Map<string, number>()

  constructor (private readonly maxEntries = 100_000) {}

  /** Throws BECKON_ERR_SIGNAL_REPLAYED for a session id already seen. */
  admit (sessionId: Buffer, expiry: number, now: number): void {
    const id = sessionId.toString('hex')
    if (this.seen.has(id)) throw new BeckonError('BECKON_ERR_SIGNAL_REPLAYED', `session ${id} was already signalled`)
    if (this.seen.size >= this.maxEntries) this.prune(now)
    if (this.seen.size >= this.maxEntries) throw new BeckonError('BECKON_ERR_SIGNAL_REPLAYED', 'replay cache full; refusing until entries expire')
    this.seen.set(id, expiry)
  }

  prune (now: number): void {
    for (const [id, exp] of this.seen) if (exp <= now) this.seen.delete(id)
  }

  get size (): number { return this.seen.size }

  /** Undoes an admit whose effects could not be committed (e.g. persisted). */
  forget (sessionId: Buffer): void { this.seen.delete(sessionId.toString('hex')) }

  /** For persistence across restarts: [hex id, expiry] pairs. */
  entries (): Array<[string, number]> { return [...this.seen] }

  load (entries: Iterable<[string, number]>, now: number): void {
    for (const [id, exp] of entries) {
      if (this.seen.size >= this.maxEntries) break
      if (exp > now && exp <= 0xffffffff && /^[0-9a-f]{24}$/.test(id)) this.seen.set(id, exp)
    }
  }
}
