/**
 * Resuming a session whose TCP path broke: the client's proof that it holds the session.
 *
 * The first 200 of an IPsec session carries, inside TLS, a per-session resume secret:
 *
 *   secret = HMAC-SHA256(resume key, "beckon-resume-secret-v1" ‖ session id)    32 bytes
 *   resume key = HKDF-SHA256(ikm = the relay's Ed25519 private key (PKCS#8 DER),
 *                            salt = "beckon-resume-v1", info = "", 32)
 *
 * so the relay stores nothing per session to check it, and relays that share the
 * deployment's signing key (they must, agents trust that key) derive the same secret.
 * A re-join is a new CONNECT with one more header:
 *
 *   Beckon-Resume: <session id, 24 hex>; t=<Unix ms>; proof=<base64url, 43 chars>
 *   proof = HMAC-SHA256(secret, "beckon-resume-v1" ‖ session id (12 bytes) ‖ u64be t)
 *
 * The relay accepts t within ±RESUME_SKEW_MS of its clock: a proof seen by someone who
 * could read inside the TLS session is good for that long only, and it proves nothing
 * beyond what the same user's credentials (sent alongside) already allow.
 */
import { createHmac, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto'
import { BeckonError } from '../../core/errors.js'

export const RESUME_SKEW_MS = 60_000
const SESSION_ID = 12

export interface ResumeRequest {
  /** The session being resumed, hex. */
  session: string
  /** Unix milliseconds when the proof was made. */
  at: number
  proof: Buffer
}

function refused (detail: string): BeckonError {
  return new BeckonError('BECKON_ERR_RESUME_REFUSED', detail)
}

/** The relay's resume key, from its Ed25519 private key. */
export function resumeKey (ed25519Private: KeyObject): Buffer {
  const der = ed25519Private.export({ format: 'der', type: 'pkcs8' })
  return Buffer.from(hkdfSync('sha256', der, 'beckon-resume-v1', Buffer.alloc(0), 32))
}

export function resumeSecret (key: Buffer, sessionId: Buffer): Buffer {
  if (sessionId.length !== SESSION_ID) throw refused(`session id must be ${SESSION_ID} bytes`)
  return createHmac('sha256', key).update('beckon-resume-secret-v1').update(sessionId).digest()
}

export function resumeProof (secret: Buffer, sessionId: Buffer, at: number): Buffer {
  const t = Buffer.alloc(8)
  t.writeBigUInt64BE(BigInt(at))
  return createHmac('sha256', secret).update('beckon-resume-v1').update(sessionId).update(t).digest()
}

/** The header value for a resume CONNECT. */
export function resumeHeader (secret: Buffer, session: string, at: number): string {
  const id = Buffer.from(session, 'hex')
  if (!/^[0-9a-f]{24}$/.test(session)) throw refused('session must be 24 hex digits')
  return `${session}; t=${at}; proof=${resumeProof(secret, id, at).toString('base64url')}`
}

export function parseResumeHeader (value: string): ResumeRequest {
  if (value.length > 200) throw refused('Beckon-Resume header too long')
  const m = /^([0-9a-f]{24}); t=(\d{1,15}); proof=([A-Za-z0-9_-]{43})$/.exec(value.trim())
  if (m === null) throw refused('Beckon-Resume must be "<session>; t=<ms>; proof=<base64url>"')
  return { session: m[1]!, at: Number(m[2]), proof: Buffer.from(m[3]!, 'base64url') }
}

/** Throws BECKON_ERR_RESUME_REFUSED unless the proof is right and fresh. */
export function checkResume (key: Buffer, r: ResumeRequest, now: number): void {
  if (Math.abs(now - r.at) > RESUME_SKEW_MS) throw refused(`proof made ${Math.round((now - r.at) / 1000)} s from the relay's clock`)
  const id = Buffer.from(r.session, 'hex')
  const want = resumeProof(resumeSecret(key, id), id, r.at)
  if (r.proof.length !== want.length || !timingSafeEqual(r.proof, want)) throw refused(`wrong proof for session ${r.session}`)
}
