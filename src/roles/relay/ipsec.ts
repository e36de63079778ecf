/**
 * IPsec mode at the relay: the descriptor's IPsec part and the session's PSK.
 *
 * PSK = HKDF-SHA256(session key, salt = 32 random bytes, info "beckon-ipsec-psk-v1" ‖
 * session id). The salt never leaves the relay, so the gateway, which knows the session
 * key from the signal, cannot derive the PSK; the agent receives it sealed for its own
 * X25519 key inside the descriptor, the client over TLS in the 200 response.
 */
import { hkdfSync, randomBytes } from 'node:crypto'
import { BeckonError } from '../../core/errors.js'
import type { User } from '../../directory/directory.js'
import type { IpsecParams } from '../../proto/descriptor/descriptor.js'
import { seal } from '../../proto/descriptor/seal.js'
import type { DeviceEntry } from './catalog.js'
import type { RelayIpsec } from './config.js'
import type { IpsecGrantable } from './policy.js'

export function derivePsk (sessionKey: Buffer, sessionId: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sessionKey, randomBytes(32), Buffer.concat([Buffer.from('beckon-ipsec-psk-v1'), sessionId]), 32))
}

export interface IpsecGrant { params: IpsecParams, psk: Buffer | undefined }

export function ipsecGrant (d: RelayIpsec, entry: DeviceEntry, user: User, userAddress: string, selectors: IpsecGrantable, sessionId: Buffer, sessionKey: Buffer): IpsecGrant {
  const session = sessionId.toString('hex')
  const { device, policy } = entry
  if (policy === undefined) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${device.name} has no policy`)
  const auth = policy.auth
  const params: IpsecParams = {
    auth,
    // psk mode: identities unique per session, so concurrent sessions never share a secret.
    client: { id: auth === 'psk' ? `${user.name}@${session}.${d.domain}` : `${user.name}@${d.domain}`, address: userAddress },
    terminal: { id: auth === 'psk' ? `${device.name}.${session}.${d.domain}` : `${device.name}.${d.domain}`, address: device.address },
    protocol: selectors.protocol,
    ports: selectors.ports,
    ikeProposals: policy.ike_proposals,
    espProposals: policy.esp_proposals,
    ikeRekeyS: policy.ike_rekey_s,
    childRekeyS: policy.child_rekey_s,
    dpdS: policy.dpd_s,
  }
  if (auth === 'pubkey') return { params, psk: undefined }
  if (entry.agentKey === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `device ${device.name} has no agent_public_key for psk mode`)
  const psk = derivePsk(sessionKey, sessionId)
  params.pskSealed = seal(psk, entry.agentKey, Buffer.from(session)).toString('base64url')
  return { params, psk }
}
