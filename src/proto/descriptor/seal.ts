/**
 * Sealing a secret for one recipient's X25519 key (ECIES): the relay seals the
 * session's IPsec PSK for the terminal's agent, so neither the gateway nor anyone on
 * the unencrypted relay↔gateway leg can read it.
 *
 *   sealed = ephemeral public key (32) ‖ ChaCha20-Poly1305(k, nonce 0, plaintext, aad) ‖ tag (16)
 *   k      = HKDF-SHA256(X25519(ephemeral, recipient), salt "beckon-seal-v1",
 *                        info = ephemeralPub ‖ recipientPub ‖ aad, 32)
 * The key is fresh per message (fresh ephemeral), so the all-zero nonce is safe.
 */
import { createCipheriv, createDecipheriv, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto'
import { BeckonError } from '../../core/errors.js'
import { publicKeyFromRaw, rawPublic } from '../../core/keys.js'

const NONCE = Buffer.alloc(12)

function key (own: KeyObject, peer: KeyObject, ephPub: Buffer, recipientPub: Buffer, aad: Buffer): Buffer {
  const shared = diffieHellman({ privateKey: own, publicKey: peer })
  return Buffer.from(hkdfSync('sha256', shared, 'beckon-seal-v1', Buffer.concat([ephPub, recipientPub, aad]), 32))
}

export function seal (plaintext: Buffer, recipient: KeyObject, aad: Buffer): Buffer {
  const { privateKey: eph } = generateKeyPairSync('x25519')
  const ephPub = rawPublic(eph)
  const k = key(eph, recipient, ephPub, rawPublic(recipient), aad)
  const c = createCipheriv('chacha20-poly1305', k, NONCE, { authTagLength: 16 })
  c.setAAD(aad, { plaintextLength: plaintext.length })
  return Buffer.concat([ephPub, c.update(plaintext), c.final(), c.getAuthTag()])
}

export function unseal (sealed: Buffer, recipient: KeyObject, aad: Buffer): Buffer {
  if (sealed.length < 32 + 16) throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', 'sealed secret too short')
  const ephPub = sealed.subarray(0, 32)
  const ct = sealed.subarray(32, sealed.length - 16)
  let k: Buffer
  try {
    k = key(recipient, publicKeyFromRaw('x25519', ephPub.toString('base64url')), ephPub, rawPublic(recipient), aad)
  } catch {
    // OpenSSL refuses a small-order point (the shared secret would be all zeros).
    throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', 'sealed secret carries an unusable (small-order) X25519 key')
  }
  const d = createDecipheriv('chacha20-poly1305', k, NONCE, { authTagLength: 16 })
  d.setAAD(aad, { plaintextLength: ct.length })
  d.setAuthTag(sealed.subarray(sealed.length - 16))
  try {
    return Buffer.concat([d.update(ct), d.final()])
  } catch {
    throw new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', 'sealed secret does not open with this agent key')
  }
}
