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
import type { DeviceConfig, RelayConfig } from './config.js'

export function derivePsk (sessionKey: Buffer, sessionId: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sessionKey, randomBytes(32), Buffer.concat([Buffer.from('beckon-ipsec-psk-v1'), sessionId]), 32))
}

export interface IpsecGrant { params: IpsecParams, psk: Buffer | undefined }

export function ipsecGrant (cfg: RelayConfig, device: DeviceConfig, user: User, sessionId: Buffer, sessionKey: Buffer): IpsecGrant {
  const d = cfg.ipsec
  const session = sessionId.toString('hex')
  const auth = device.ipsecAuth
  const ports = [...new Set(device.allow
    .filter((r) => r.ipsec && (r.users.includes(user.name) || r.groups.some((g) => user.groups.includes(g))))
    .flatMap((r) => r.tcp))].sort((a, b) => a - b)
  const userAddress = cfg.userAddresses.get(user.name)
  if (userAddress === undefined) throw new BeckonError('BECKON_ERR_FORBIDDEN', `${user.name} has no permanent address`)
  const params: IpsecParams = {
    auth,
    // psk mode: identities unique per session, so concurrent sessions never share a secret.
    client: { id: auth === 'psk' ? `${user.name}@${session}.${d.domain}` : `${user.name}@${d.domain}`, address: userAddress },
    terminal: { id: auth === 'psk' ? `${device.name}.${session}.${d.domain}` : `${device.name}.${d.domain}`, address: device.address },
    protocol: ports.length > 0 ? 'tcp' : 'any',
    ports,
    ikeProposals: d.ikeProposals,
    espProposals: d.espProposals,
    ikeRekeyS: d.ikeRekeyS,
    childRekeyS: d.childRekeyS,
    dpdS: d.dpdS,
  }
  if (auth === 'pubkey') return { params, psk: undefined }
  if (device.agentKey === undefined) throw new BeckonError('BECKON_ERR_CONFIG', `device ${device.name} has no agent_public_key for psk mode`)
  const psk = derivePsk(sessionKey, sessionId)
  params.pskSealed = seal(psk, device.agentKey, Buffer.from(session)).toString('base64url')
  return { params, psk }
}
