/**
 * strongSwan's proposal (cipher suite) grammar, as charon 5.9.8 parses `proposals` and
 * `esp_proposals` in `load-conn`. Reference: "IKEv2 Cipher Suites",
 * https://docs.strongswan.org/docs/5.9/config/IKEv2CipherSuites.html, and
 * https://docs.strongswan.org/docs/5.9/config/proposals.html. Facts below were read in
 * strongSwan at tag 5.9.8 (src/libstrongswan/crypto/proposal/proposal_keywords_static.txt,
 * proposal.c `proposal_create_from_string`/`check_proposal`, crypter.c
 * `encryption_algorithm_is_aead`) and checked against a running charon.
 *
 *   proposal  = "default" | token *( "-" token )
 *   token     = one keyword of the table below (exact, case-sensitive)
 *
 * Tokens are split on '-', surrounding blanks trimmed and empty tokens skipped, so charon
 * takes `aes256gcm16-` and `aes128--sha256` as well. A token is one transform:
 *
 *   encryption  aes{128,192,256}[ctr|ccm{8,12,16}|gcm{8,12,16}|gmac], aes = aes128,
 *               ccm/gcm also with ICV bits (gcm64/96/128) or bare (= 16 octets),
 *               chacha20poly1305, camellia{128,192,256}[ctr|ccm{8,12,16}], 3des, des,
 *               cast128, blowfish[128|192|256], serpent…, twofish…, null
 *   integrity   sha1 (sha), sha1_160, sha256, sha256_96, sha384, sha512 (also sha2_*),
 *               md5, md5_128, aesxcbc, aescmac, camelliaxcbc
 *   prf         prfsha1, prfsha256, prfsha384, prfsha512, prfmd5, prfaesxcbc,
 *               prfaescmac, prfcamelliaxcbc
 *   ke          modp768…modp8192, modp1024s160, modp2048s224, modp2048s256, ecp192…ecp521,
 *               ecp224bp…ecp512bp, curve25519 (x25519), curve448 (x448), ntru*, newhope128,
 *               modpnull; none/modpnone = "no key exchange"
 *   esn         esn, noesn
 *
 * The rules charon applies after parsing (check_proposal), and ours on top:
 *   - an encryption algorithm is mandatory;
 *   - AEAD (gcm, ccm, gmac, chacha20poly1305) and classic ciphers never share a proposal;
 *     with AEAD only, integrity algorithms are dropped;
 *   - IKE with classic ciphers needs integrity. charon does not demand it for ESP, but
 *     ESP encryption without integrity is malleable, so Beckon refuses it too;
 *   - IKE needs a PRF: named, or derived from the first integrity algorithm that maps to
 *     one (sha256_96 maps to none). `aes256gcm16-sha256-x25519` therefore works and
 *     `aes256gcm16-x25519` does not;
 *   - IKE needs a key exchange method other than none; ESP may name one (PFS) or none;
 *   - Beckon only: no PRF in ESP (charon silently drops it), no esn/noesn, null or gmac in
 *     IKE (IKE must be confidential), and only [a-z0-9_-], at most 100 characters, because
 *     the session descriptor carries proposals under that rule.
 *
 * Whether the loaded plugins can run an algorithm is not part of the grammar: load-conn
 * accepts `serpent` without the serpent plugin. check.ts asks charon (`get-algorithms`).
 */
import { BeckonError } from '../core/errors.js'

export type ProposalKind = 'ike' | 'esp'
export type TransformType = 'encryption' | 'integrity' | 'prf' | 'ke' | 'esn'

/** One keyword: the transform it adds, named as charon prints it (get-algorithms, logs). */
export interface Keyword {
  type: TransformType
  /** charon's enum name, e.g. AES_GCM_16, HMAC_SHA2_256_128, PRF_HMAC_SHA2_256, CURVE_25519. */
  alg: string
  /** Key bits for ciphers (0 = the algorithm's own). */
  keySize: number
  /** Combined-mode cipher (encryption and integrity in one). */
  aead: boolean
}

/** The section of charon's `get-algorithms` answer that lists an algorithm. */
export type AlgorithmSection = 'encryption' | 'aead' | 'integrity' | 'prf' | 'dh'

function buildKeywords (): ReadonlyMap<string, Keyword> {
  const m = new Map<string, Keyword>()
  const add = (name: string, type: TransformType, alg: string, keySize = 0, aead = false): void => { m.set(name, { type, alg, keySize, aead }) }
  const enc = (name: string, alg: string, keySize = 0, aead = false): void => add(name, 'encryption', alg, keySize, aead)
  // ICV lengths: octets (8/12/16) or bits (64/96/128); a bare ccm/gcm means 16 octets.
  const icv: Array<[string, number]> = [['8', 8], ['64', 8], ['12', 12], ['96', 12], ['16', 16], ['128', 16]]

  enc('null', 'NULL')
  enc('des', 'DES_CBC')
  enc('3des', '3DES_CBC')
  enc('cast128', 'CAST_CBC', 128)
  enc('aes', 'AES_CBC', 128)
  enc('chacha20poly1305', 'CHACHA20_POLY1305', 0, true)
  enc('chacha20poly1305compat', 'CHACHA20_POLY1305', 256, true)
  enc('camellia', 'CAMELLIA_CBC', 128)
  for (const family of ['blowfish', 'serpent', 'twofish']) enc(family, `${family.toUpperCase()}_CBC`, 128)
  for (const ks of [128, 192, 256]) {
    enc(`aes${ks}`, 'AES_CBC', ks)
    enc(`aes${ks}ctr`, 'AES_CTR', ks)
    enc(`aes${ks}ccm`, 'AES_CCM_16', ks, true)
    enc(`aes${ks}gcm`, 'AES_GCM_16', ks, true)
    enc(`aes${ks}gmac`, 'NULL_AES_GMAC', ks, true)
    for (const [suffix, octets] of icv) {
      enc(`aes${ks}ccm${suffix}`, `AES_CCM_${octets}`, ks, true)
      enc(`aes${ks}gcm${suffix}`, `AES_GCM_${octets}`, ks, true)
      // charon has no bare camellia<ks>ccm spelling.
      enc(`camellia${ks}ccm${suffix}`, `CAMELLIA_CCM_${octets}`, ks, true)
    }
    enc(`camellia${ks}`, 'CAMELLIA_CBC', ks)
    enc(`camellia${ks}ctr`, 'CAMELLIA_CTR', ks)
    for (const family of ['blowfish', 'serpent', 'twofish']) enc(`${family}${ks}`, `${family.toUpperCase()}_CBC`, ks)
  }

  const integ: Array<[string[], string]> = [
    [['sha', 'sha1'], 'HMAC_SHA1_96'],
    [['sha1_160'], 'HMAC_SHA1_160'],
    [['sha256', 'sha2_256'], 'HMAC_SHA2_256_128'],
    [['sha256_96', 'sha2_256_96'], 'HMAC_SHA2_256_96'],
    [['sha384', 'sha2_384'], 'HMAC_SHA2_384_192'],
    [['sha512', 'sha2_512'], 'HMAC_SHA2_512_256'],
    [['md5'], 'HMAC_MD5_96'],
    [['md5_128'], 'HMAC_MD5_128'],
    [['aesxcbc'], 'AES_XCBC_96'],
    [['camelliaxcbc'], 'CAMELLIA_XCBC_96'],
    [['aescmac'], 'AES_CMAC_96'],
  ]
  for (const [names, alg] of integ) for (const n of names) add(n, 'integrity', alg)

  const prf: Array<[string, string]> = [
    ['prfsha1', 'PRF_HMAC_SHA1'], ['prfsha256', 'PRF_HMAC_SHA2_256'], ['prfsha384', 'PRF_HMAC_SHA2_384'],
    ['prfsha512', 'PRF_HMAC_SHA2_512'], ['prfmd5', 'PRF_HMAC_MD5'], ['prfaesxcbc', 'PRF_AES128_XCBC'],
    ['prfcamelliaxcbc', 'PRF_CAMELLIA128_XCBC'], ['prfaescmac', 'PRF_AES128_CMAC'],
  ]
  for (const [n, alg] of prf) add(n, 'prf', alg)

  const ke: Array<[string, string]> = [
    ['none', 'KE_NONE'], ['modpnone', 'KE_NONE'], ['modpnull', 'MODP_NULL'],
    ['modp1024s160', 'MODP_1024_160'], ['modp2048s224', 'MODP_2048_224'], ['modp2048s256', 'MODP_2048_256'],
    ['ecp224bp', 'ECP_224_BP'], ['ecp256bp', 'ECP_256_BP'], ['ecp384bp', 'ECP_384_BP'], ['ecp512bp', 'ECP_512_BP'],
    ['curve25519', 'CURVE_25519'], ['x25519', 'CURVE_25519'], ['curve448', 'CURVE_448'], ['x448', 'CURVE_448'],
    ['newhope128', 'NEWHOPE_128'],
  ]
  for (const bits of [768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]) ke.push([`modp${bits}`, `MODP_${bits}`])
  for (const bits of [192, 224, 256, 384, 521]) ke.push([`ecp${bits}`, `ECP_${bits}`])
  for (const bits of [112, 128, 192, 256]) ke.push([`ntru${bits}`, `NTRU_${bits}`])
  for (const [n, alg] of ke) add(n, 'ke', alg)

  add('esn', 'esn', 'EXT_SEQ_NUMBERS')
  add('noesn', 'esn', 'NO_EXT_SEQ_NUMBERS')
  return m
}

/** Every keyword charon 5.9.8 knows (without plugins registering more: none do). */
export const KEYWORDS: ReadonlyMap<string, Keyword> = buildKeywords()

/**
 * IKE derives a missing PRF from the integrity algorithms, in order (proposal.c
 * integ_prf_map). HMAC_SHA2_256_96 has no entry.
 */
const INTEG_TO_PRF: Readonly<Record<string, string>> = {
  HMAC_SHA1_96: 'PRF_HMAC_SHA1',
  HMAC_SHA1_160: 'PRF_HMAC_SHA1',
  HMAC_SHA2_256_128: 'PRF_HMAC_SHA2_256',
  HMAC_SHA2_384_192: 'PRF_HMAC_SHA2_384',
  HMAC_SHA2_512_256: 'PRF_HMAC_SHA2_512',
  HMAC_MD5_96: 'PRF_HMAC_MD5',
  HMAC_MD5_128: 'PRF_HMAC_MD5',
  AES_XCBC_96: 'PRF_AES128_XCBC',
  CAMELLIA_XCBC_96: 'PRF_CAMELLIA128_XCBC',
  AES_CMAC_96: 'PRF_AES128_CMAC',
}

/** A proposal after charon's own rewriting (derived PRF, dropped transforms). */
export interface ParsedProposal {
  text: string
  /** `default`: charon builds the suite from what its plugins support. */
  isDefault: boolean
  aead: boolean
  encryption: Keyword[]
  integrity: Keyword[]
  prf: Keyword[]
  ke: Keyword[]
  esn: Keyword[]
}

/** The descriptor's rule for proposals (descriptor.ts PROPOSAL_RE). */
const DESCRIPTOR_SAFE = /^[a-z0-9_-]+$/
const MAX_LENGTH = 100

class ProposalError extends Error {}

/** Parses one proposal or throws a ProposalError whose message names the offending token. */
function parse (text: string, kind: ProposalKind): ParsedProposal {
  if (typeof text !== 'string') throw new ProposalError(`${JSON.stringify(text)} is not a string`)
  const p: ParsedProposal = { text, isDefault: false, aead: false, encryption: [], integrity: [], prf: [], ke: [], esn: [] }
  if (text.length > MAX_LENGTH) throw new ProposalError(`${JSON.stringify(text.slice(0, 20) + '…')} is longer than ${MAX_LENGTH} characters`)
  if (!DESCRIPTOR_SAFE.test(text)) {
    const bad = /[^a-z0-9_-]/.exec(text)?.[0] ?? ''
    throw new ProposalError(`${JSON.stringify(text)}: character ${JSON.stringify(bad)} not allowed (keywords are lower case, joined by '-')`)
  }
  if (text === 'default') return { ...p, isDefault: true }
  const tokens = text.split('-').filter((s) => s !== '')
  if (tokens.length === 0) throw new ProposalError(`${JSON.stringify(text)} names no algorithm`)
  for (const token of tokens) {
    const k = KEYWORDS.get(token)
    if (k === undefined) throw new ProposalError(`unknown algorithm ${JSON.stringify(token)}`)
    if (kind === 'ike' && k.type === 'esn') throw new ProposalError(`"${token}" (extended sequence numbers) applies to ESP only`)
    if (kind === 'esp' && k.type === 'prf') throw new ProposalError(`"${token}" is a PRF, which applies to IKE only (charon would drop it from an ESP proposal)`)
    if (kind === 'ike' && (k.alg === 'NULL' || k.alg === 'NULL_AES_GMAC')) throw new ProposalError(`"${token}" gives no confidentiality; IKE must be encrypted (ESP only)`)
    p[k.type].push(k)
  }
  const where = `${JSON.stringify(text)}`
  if (p.encryption.length === 0) throw new ProposalError(`${where} names no encryption algorithm`)
  const aead = p.encryption.filter((k) => k.aead)
  if (aead.length > 0 && aead.length < p.encryption.length) {
    const classic = p.encryption.find((k) => !k.aead)!
    throw new ProposalError(`${where} mixes AEAD ${aead[0]!.alg} with classic ${classic.alg}; put them in separate proposals`)
  }
  p.aead = aead.length > 0
  if (!p.aead && p.integrity.length === 0) {
    throw new ProposalError(`${where} has a classic cipher but no integrity algorithm (add e.g. sha256, or use an AEAD such as aes256gcm16)`)
  }
  if (kind === 'ike') {
    if (p.prf.length === 0) {
      // charon adds the PRF of every integrity algorithm that maps to one.
      for (const i of p.integrity) {
        const prf = INTEG_TO_PRF[i.alg]
        if (prf !== undefined) p.prf.push({ type: 'prf', alg: prf, keySize: 0, aead: false })
      }
      if (p.prf.length === 0) throw new ProposalError(`${where} has no PRF: name one (e.g. prfsha256) or an integrity algorithm it derives from (sha256_96 has none)`)
    }
    p.ke = p.ke.filter((k) => k.alg !== 'KE_NONE')
    if (p.ke.length === 0) throw new ProposalError(`${where} has no key exchange method (e.g. x25519, ecp256, modp3072)`)
  }
  if (p.aead) p.integrity = []
  return p
}

/** Parses one proposal; throws BECKON_ERR_POLICY_INVALID naming `field`. */
export function parseProposal (field: string, text: string, kind: ProposalKind): ParsedProposal {
  try {
    return parse(text, kind)
  } catch (err) {
    if (err instanceof ProposalError) throw new BeckonError('BECKON_ERR_POLICY_INVALID', `${field}: ${err.message}`)
    throw err
  }
}

/**
 * Checks a proposal list as charon would parse it; `field` names it in errors, e.g.
 * `validateProposals('policy.esp_proposals', list, 'esp')` → `policy.esp_proposals[1]: …`.
 */
export function validateProposals (field: string, list: readonly string[], kind: ProposalKind): ParsedProposal[] {
  if (list.length === 0) throw new BeckonError('BECKON_ERR_POLICY_INVALID', `${field}: at least one proposal is needed`)
  return list.map((text, i) => parseProposal(`${field}[${i}]`, text, kind))
}

/**
 * Which algorithms charon must provide for a parsed proposal, by `get-algorithms` section.
 * `default` needs nothing: charon builds it from what it has.
 */
export function requiredAlgorithms (p: ParsedProposal): Array<{ section: AlgorithmSection, alg: string }> {
  const out: Array<{ section: AlgorithmSection, alg: string }> = []
  for (const k of p.encryption) out.push({ section: k.aead ? 'aead' : 'encryption', alg: k.alg })
  for (const k of p.integrity) out.push({ section: 'integrity', alg: k.alg })
  for (const k of p.prf) out.push({ section: 'prf', alg: k.alg })
  for (const k of p.ke) if (k.alg !== 'KE_NONE') out.push({ section: 'dh', alg: k.alg })
  return out
}
