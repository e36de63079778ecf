/**
 * The session descriptor: what the relay (the controller) tells the terminal's agent
 * about a session, signed with the relay's Ed25519 key. Sent through the spliced path
 * before the relay answers 200, so the agent acts only on sessions the relay authorized.
 *
 *   frame  = "BKD1" ‖ u16be n ‖ payload (n bytes of UTF-8 JSON, n ≤ 8192)
 *            ‖ Ed25519 signature (64) over "BKD1" ‖ u16be n ‖ payload
 *   reply  = "BKR1" ‖ u8 status (0 ready · 1 refused) ‖ u16be n ‖ UTF-8 JSON (n ≤ 4096)
 *            refused: {"code","message"}
 *
 * In IPsec mode the descriptor carries everything both charons are programmed from
 * (identities, permanent addresses, selectors, proposals, lifetimes, auth mode); the
 * client receives the same signed frame in the 200 response (`Beckon-Descriptor`).
 *
 * Re-joining a session whose path broke (IPsec only): `session` is the fresh attempt id
 * of the resume signal (the agent's replay cache admits it like any other), `resume`
 * names the existing session whose RFC 8229 bridge the agent attaches to this stream;
 * such a descriptor carries no `ipsec` parameters (charon keeps its SAs). With `end`, it
 * tells the agent to end that session instead (an operator kill, a policy change).
 * `resumeS` in a fresh IPsec descriptor is how long the agent keeps a detached session.
 */
import { sign, verify, type KeyObject } from 'node:crypto'
import { isIP, type Socket } from 'node:net'
import { BeckonError, type ErrorCode } from '../../core/errors.js'
import { readExact } from '../../core/stream.js'

const MAGIC = Buffer.from('BKD1')
const REPLY_MAGIC = Buffer.from('BKR1')
export const MAX_PAYLOAD = 8192
const MAX_REPLY = 4096
const SIG = 64

/** What both charons are programmed from (IPsec mode). */
export interface IpsecParams {
  auth: 'psk' | 'pubkey'
  /** IKE identities and permanent IPv6 addresses of both ends. */
  client: { id: string, address: string }
  terminal: { id: string, address: string }
  /** Traffic selectors on the terminal's side: protocol and ports (empty = all ports). */
  protocol: 'tcp' | 'udp' | 'any'
  ports: number[]
  ikeProposals: string[]
  espProposals: string[]
  ikeRekeyS: number
  childRekeyS: number
  dpdS: number
  /** psk mode: the PSK sealed for the agent's X25519 key (base64url), see seal.ts. */
  pskSealed?: string
}

export interface Descriptor {
  v: 1
  /** Session id, hex. */
  session: string
  device: string
  user: string
  /** Unix seconds. */
  expires: number
  mode: 'tcp' | 'ipsec'
  /** tcp mode: the service port on the terminal. */
  port?: number
  ipsec?: IpsecParams
  /** Re-join (or, with `end`, end) this existing session, hex. */
  resume?: string
  end?: boolean
  /** IPsec: seconds the agent keeps a session whose path broke, waiting for a re-join. */
  resumeS?: number
}

/** Longest IKE/CHILD lifetime or DPD interval a descriptor may carry (30 days). */
export const MAX_LIFETIME_S = 30 * 86_400

/** Longest time an agent keeps a detached session (1 hour). */
export const MAX_RESUME_S = 3600

const PROPOSAL_RE = /^[a-z0-9_-]{3,100}$/
const ID_RE = /^[A-Za-z0-9@._-]{1,128}$/

function checkIpsec (v: unknown): IpsecParams {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('ipsec mode needs ipsec parameters')
  const p = v as Record<string, unknown>
  if (p.auth !== 'psk' && p.auth !== 'pubkey') throw invalid(`auth ${JSON.stringify(p.auth)}`)
  for (const side of ['client', 'terminal'] as const) {
    // A signed payload is still untrusted JSON: `"client": null` must not reach `.id`.
    const e = p[side]
    if (e === null || typeof e !== 'object' || Array.isArray(e)) throw invalid(`${side} must be an object`)
    if (!('id' in e) || typeof e.id !== 'string' || !ID_RE.test(e.id)) throw invalid(`${side}.id must be an identity`)
    if (!('address' in e) || typeof e.address !== 'string' || isIP(e.address) !== 6) throw invalid(`${side}.address must be an IPv6 address`)
  }
  if (p.protocol !== 'tcp' && p.protocol !== 'udp' && p.protocol !== 'any') throw invalid(`protocol ${JSON.stringify(p.protocol)}`)
  if (!Array.isArray(p.ports) || !p.ports.every((x) => Number.isInteger(x) && x >= 1 && x <= 65535)) throw invalid('ports must be 1-65535')
  for (const k of ['ikeProposals', 'espProposals'] as const) {
    const list = p[k]
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string' && PROPOSAL_RE.test(x))) throw invalid(`${k} must list proposals`)
  }
  // Bounded like the policy's own Seconds (30 days): charon is handed these as is.
  for (const k of ['ikeRekeyS', 'childRekeyS', 'dpdS'] as const) {
    if (!(typeof p[k] === 'number' && Number.isInteger(p[k]) && (p[k] as number) > 0 && (p[k] as number) <= MAX_LIFETIME_S)) throw invalid(`${k} must be an integer in [1, ${MAX_LIFETIME_S}]`)
  }
  if (p.auth === 'psk' && (typeof p.pskSealed !== 'string' || !/^[A-Za-z0-9_-]{64,200}$/.test(p.pskSealed))) throw invalid('psk mode needs pskSealed (base64url)')
  return p as unknown as IpsecParams
}

function invalid (detail: string): BeckonError {
  return new BeckonError('BECKON_ERR_DESCRIPTOR_INVALID', detail)
}

export function checkDescriptor (v: unknown): Descriptor {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('payload is not an object')
  const d = v as Record<string, unknown>
  if (d.v !== 1) throw invalid(`version ${JSON.stringify(d.v)}`)
  if (typeof d.session !== 'string' || !/^[0-9a-f]{24}$/.test(d.session)) throw invalid('session must be 24 hex digits')
  if (typeof d.device !== 'string' || d.device === '') throw invalid('device missing')
  if (typeof d.user !== 'string' || d.user === '') throw invalid('user missing')
  if (typeof d.expires !== 'number' || !Number.isInteger(d.expires) || d.expires < 0 || d.expires > 0xffffffff) throw invalid('expires must be Unix seconds (u32)')
  if (d.mode !== 'tcp' && d.mode !== 'ipsec') throw invalid(`mode ${JSON.stringify(d.mode)}`)
  if (d.mode === 'tcp' && !(typeof d.port === 'number' && Number.isInteger(d.port) && d.port >= 1 && d.port <= 65535)) throw invalid('tcp mode needs a port 1-65535')
  if (d.resume !== undefined) {
    if (typeof d.resume !== 'string' || !/^[0-9a-f]{24}$/.test(d.resume)) throw invalid('resume must be 24 hex digits')
    if (d.mode !== 'ipsec') throw invalid('only IPsec sessions resume')
    if (d.ipsec !== undefined) throw invalid('a resume carries no ipsec parameters')
  } else if (d.mode === 'ipsec') checkIpsec(d.ipsec)
  if (d.end !== undefined && (d.end !== true || d.resume === undefined)) throw invalid('end must be true and name a session in resume')
  if (d.resumeS !== undefined && !(typeof d.resumeS === 'number' && Number.isInteger(d.resumeS) && d.resumeS >= 0 && d.resumeS <= MAX_RESUME_S)) throw invalid(`resumeS must be an integer in [0, ${MAX_RESUME_S}]`)
  return d as unknown as Descriptor
}

export function signDescriptor (d: Descriptor, key: KeyObject): Buffer {
  const payload = Buffer.from(JSON.stringify(checkDescriptor(d)), 'utf8')
  if (payload.length > MAX_PAYLOAD) throw invalid(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD}`)
  const head = Buffer.alloc(6)
  MAGIC.copy(head)
  head.writeUInt16BE(payload.length, 4)
  const signed = Buffer.concat([head, payload])
  return Buffer.concat([signed, sign(null, signed, key)])
}

export interface VerifyOptions {
  keys: readonly KeyObject[]
  /** Unix seconds. */
  now: number
  /** The agent's own device name: descriptors for others are refused. */
  device: string
}

/** Parses a frame's payload without checking the signature (the client, over TLS). */
export function parseDescriptorFrame (frame: Buffer): Descriptor {
  if (frame.length < 6 + SIG || !frame.subarray(0, 4).equals(MAGIC)) throw invalid('bad frame')
  const n = frame.readUInt16BE(4)
  if (n > MAX_PAYLOAD || frame.length !== 6 + n + SIG) throw invalid('frame length mismatch')
  try {
    return checkDescriptor(JSON.parse(frame.subarray(6, 6 + n).toString('utf8')))
  } catch (err) {
    if (err instanceof BeckonError) throw err
    throw invalid('payload is not JSON')
  }
}

/** Verifies a complete frame (head, payload, signature). */
export function verifyDescriptor (frame: Buffer, o: VerifyOptions): Descriptor {
  if (frame.length < 6 + SIG || !frame.subarray(0, 4).equals(MAGIC)) throw invalid('bad frame')
  const n = frame.readUInt16BE(4)
  if (n > MAX_PAYLOAD || frame.length !== 6 + n + SIG) throw invalid('frame length mismatch')
  const signed = frame.subarray(0, 6 + n)
  const sig = frame.subarray(6 + n)
  if (!o.keys.some((k) => verify(null, signed, k, sig))) throw invalid('signature does not verify')
  let parsed: unknown
  try {
    parsed = JSON.parse(frame.subarray(6, 6 + n).toString('utf8'))
  } catch {
    throw invalid('payload is not JSON')
  }
  const d = checkDescriptor(parsed)
  if (d.expires <= o.now) throw invalid(`expired ${o.now - d.expires} s ago`)
  if (d.device !== o.device) throw invalid(`for device ${d.device}, not ${o.device}`)
  return d
}

/** Reads one descriptor frame from the stream. */
export async function readDescriptorFrame (sock: Socket, timeoutMs: number): Promise<Buffer> {
  const head = await readExact(sock, 6, 'descriptor header', timeoutMs)
  if (!head.subarray(0, 4).equals(MAGIC)) throw invalid('bad descriptor magic')
  const n = head.readUInt16BE(4)
  if (n > MAX_PAYLOAD) throw invalid(`payload of ${n} bytes exceeds ${MAX_PAYLOAD}`)
  const rest = await readExact(sock, n + SIG, 'descriptor body', timeoutMs)
  return Buffer.concat([head, rest])
}

export type Reply = { ready: true, info: Record<string, unknown> } | { ready: false, code: ErrorCode | string, message: string }

export function encodeReply (r: Reply): Buffer {
  const body = Buffer.from(JSON.stringify(r.ready ? r.info : { code: r.code, message: r.message }), 'utf8')
  if (body.length > MAX_REPLY) throw new BeckonError('BECKON_ERR_INTERNAL', 'descriptor reply too large')
  const head = Buffer.alloc(7)
  REPLY_MAGIC.copy(head)
  head[4] = r.ready ? 0 : 1
  head.writeUInt16BE(body.length, 5)
  return Buffer.concat([head, body])
}

export async function readReply (sock: Socket, timeoutMs: number): Promise<Reply> {
  const head = await readExact(sock, 7, 'agent reply', timeoutMs)
  if (!head.subarray(0, 4).equals(REPLY_MAGIC) || head[4]! > 1) throw new BeckonError('BECKON_ERR_PROTOCOL', 'bad agent reply')
  const n = head.readUInt16BE(5)
  if (n > MAX_REPLY) throw new BeckonError('BECKON_ERR_PROTOCOL', 'agent reply too large')
  const body = n === 0 ? Buffer.alloc(0) : await readExact(sock, n, 'agent reply body', timeoutMs)
  let v: Record<string, unknown>
  try {
    v = JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>
  } catch {
    throw new BeckonError('BECKON_ERR_PROTOCOL', 'agent reply is not JSON')
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BeckonError('BECKON_ERR_PROTOCOL', 'agent reply is not a JSON object')
  if (head[4] === 0) return { ready: true, info: v }
  return { ready: false, code: String(v.code ?? 'BECKON_ERR_TERMINAL_REFUSED'), message: String(v.message ?? 'refused') }
}
