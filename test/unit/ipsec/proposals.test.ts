// strongSwan's proposal grammar (charon 5.9.8): golden proposals from the strongSwan docs
// and swanctl.conf examples, and the refusals charon's check_proposal makes (plus ours).
import t from 'tap'
import { KEYWORDS, parseProposal, requiredAlgorithms, validateProposals } from '../../../src/ipsec/proposals.js'

const invalid = (message: string): { code: string, detail: string } => ({ code: 'BECKON_ERR_POLICY_INVALID', detail: message })

t.test('golden IKE proposals (docs.strongswan.org, swanctl.conf examples)', async (t) => {
  for (const p of [
    'aes256gcm16-aes192gcm16-prfsha384-prfsha256-ecp384-modp3072',
    'aes256gcm16-prfsha384-ecp384-aes192gcm16-prfsha256-modp3072',
    'aes256gcm16-prfsha256-x25519',
    'aes128-sha256-modp3072',
    'aes256-sha256-modp2048',
    'aes256-sha384-ecp384',
    'aes128-sha256-x25519',
    'aes192gcm16-aes128gcm16-prfsha256-ecp256-ecp521',
    'chacha20poly1305-prfsha256-curve25519',
    'aes256ctr-aescmac-prfaescmac-curve448',
    'aes128-aesxcbc-prfaesxcbc-modp2048s256',
    'camellia256-sha512-ecp512bp',
    '3des-sha1-modp1024',
    'aes256gcm16-sha256-x25519', // AEAD: the integrity keyword supplies the PRF
    'aes128gcm128-prfsha256-x448',
    'aes256-sha256-x25519-', // charon skips empty tokens
    'aes128--sha256-x25519',
    'aes256gcm16-prfsha256-x25519-none', // none is dropped from IKE
    'default',
  ]) t.doesNotThrow(() => parseProposal('p', p, 'ike'), p)
})

t.test('golden ESP proposals', async (t) => {
  for (const p of [
    'aes256gcm16',
    'aes256gcm16-aes128gcm16',
    'aes128gcm16-ecp256',
    'aes128-sha256',
    'aes128-sha256-modp3072',
    'aes256-sha512-esn',
    'aes256-sha256-noesn-esn',
    'aes128gmac',
    'aes256gmac-x25519',
    'chacha20poly1305',
    'aes128ccm8-aes256ccm16',
    'aes256gcm',
    'camellia128ccm12',
    'null-sha256',
    'aes128gcm16-sha256', // charon drops the integrity algorithm
    'aes256gcm16-none',
    'aes256gcm16-',
    'default',
  ]) t.doesNotThrow(() => parseProposal('p', p, 'esp'), p)
})

t.test('unknown tokens are named with the field and the index', async (t) => {
  t.throws(() => validateProposals('policy.esp_proposals', ['aes256gcm16', 'aes257gcm16'], 'esp'),
    invalid('policy.esp_proposals[1]: unknown algorithm "aes257gcm16"'))
  t.throws(() => validateProposals('policy.ike_proposals', ['aes256gcm16-prfsha256-x25518'], 'ike'),
    invalid('policy.ike_proposals[0]: unknown algorithm "x25518"'))
  t.throws(() => parseProposal('f', 'aes128-sha256-default', 'esp'), invalid('f: unknown algorithm "default"'))
  t.throws(() => parseProposal('f', 'camellia128ccm-sha256', 'esp'), invalid('f: unknown algorithm "camellia128ccm"'), 'no bare camellia ccm in charon')
  t.throws(() => parseProposal('f', 'aes512', 'esp'), invalid('f: unknown algorithm "aes512"'))
  t.throws(() => parseProposal('f', 'aes128-sha3_256', 'esp'), invalid('f: unknown algorithm "sha3_256"'))
})

t.test('characters the descriptor would refuse (charon is case-sensitive too)', async (t) => {
  t.throws(() => parseProposal('f', 'AES128-sha256', 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /^f: "AES128-sha256": character "A" not allowed/ })
  t.throws(() => parseProposal('f', 'aes128 sha256', 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /character " " not allowed/ })
  t.throws(() => parseProposal('f', "'aes128'-sha256", 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /character "'" not allowed/ })
  t.throws(() => parseProposal('f', 'aes128,sha256', 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /character "," not allowed/ })
  t.throws(() => parseProposal('f', `aes128-${'sha256-'.repeat(20)}`, 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /longer than 100 characters/ })
  t.throws(() => parseProposal('f', '---', 'esp'), invalid('f: "---" names no algorithm'))
  t.throws(() => validateProposals('f', [], 'esp'), invalid('f: at least one proposal is needed'))
  t.throws(() => validateProposals('f', [42 as unknown as string], 'esp'), invalid('f[0]: 42 is not a string'), 'raw input that skipped the schema')
})

t.test('charon check_proposal rules', async (t) => {
  t.throws(() => parseProposal('f', 'sha256-x25519', 'esp'), invalid('f: "sha256-x25519" names no encryption algorithm'))
  t.throws(() => parseProposal('f', 'prfsha256-x25519', 'ike'), invalid('f: "prfsha256-x25519" names no encryption algorithm'))
  t.throws(() => parseProposal('f', 'aes128gcm16-aes128-sha256', 'esp'), invalid('f: "aes128gcm16-aes128-sha256" mixes AEAD AES_GCM_16 with classic AES_CBC; put them in separate proposals'))
  t.throws(() => parseProposal('f', 'aes128-chacha20poly1305-prfsha256-x25519', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /mixes AEAD CHACHA20_POLY1305 with classic AES_CBC/ })
  t.throws(() => parseProposal('f', 'aes128-x25519', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /^f: "aes128-x25519" has a classic cipher but no integrity algorithm/ })
  t.throws(() => parseProposal('f', 'aes256gcm16-x25519', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /^f: "aes256gcm16-x25519" has no PRF/ })
  t.throws(() => parseProposal('f', 'aes128-sha256_96-x25519', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /has no PRF.*sha256_96 has none/ }, 'HMAC_SHA2_256_96 derives no PRF')
  t.doesNotThrow(() => parseProposal('f', 'aes128-sha256_96-prfsha256-x25519', 'ike'))
  t.throws(() => parseProposal('f', 'aes256gcm16-prfsha256', 'ike'), invalid('f: "aes256gcm16-prfsha256" has no key exchange method (e.g. x25519, ecp256, modp3072)'))
  t.throws(() => parseProposal('f', 'aes256gcm16-prfsha256-none', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /has no key exchange method/ }, 'none does not count')
  t.throws(() => parseProposal('f', 'aes256gcm16-prfsha256-modpnone', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /has no key exchange method/ })
})

t.test('Beckon rules stricter than charon', async (t) => {
  t.throws(() => parseProposal('f', 'aes128', 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /^f: "aes128" has a classic cipher but no integrity algorithm/ }, 'charon loads it; ESP without integrity is malleable')
  t.throws(() => parseProposal('f', 'null', 'esp'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /no integrity algorithm/ })
  t.throws(() => parseProposal('f', 'aes128-sha256-prfsha256', 'esp'), invalid('f: "prfsha256" is a PRF, which applies to IKE only (charon would drop it from an ESP proposal)'))
  t.throws(() => parseProposal('f', 'aes128-sha256-x25519-esn', 'ike'), invalid('f: "esn" (extended sequence numbers) applies to ESP only'))
  t.throws(() => parseProposal('f', 'null-sha256-x25519', 'ike'), invalid('f: "null" gives no confidentiality; IKE must be encrypted (ESP only)'))
  t.throws(() => parseProposal('f', 'aes128gmac-prfsha256-x25519', 'ike'), { code: 'BECKON_ERR_POLICY_INVALID', detail: /"aes128gmac" gives no confidentiality/ })
})

t.test('what charon makes of a proposal', async (t) => {
  const ike = parseProposal('f', 'aes256gcm16-sha384-ecp384-none', 'ike')
  t.equal(ike.aead, true)
  t.same(ike.integrity, [], 'AEAD only: integrity dropped')
  t.same(ike.prf.map((k) => k.alg), ['PRF_HMAC_SHA2_384'], 'PRF derived from the integrity keyword')
  t.same(ike.ke.map((k) => k.alg), ['ECP_384'], 'none dropped')
  t.same(requiredAlgorithms(ike), [
    { section: 'aead', alg: 'AES_GCM_16' }, { section: 'prf', alg: 'PRF_HMAC_SHA2_384' }, { section: 'dh', alg: 'ECP_384' },
  ])
  const esp = parseProposal('f', 'aes128-aesxcbc-x25519-esn', 'esp')
  t.same(requiredAlgorithms(esp), [
    { section: 'encryption', alg: 'AES_CBC' }, { section: 'integrity', alg: 'AES_XCBC_96' }, { section: 'dh', alg: 'CURVE_25519' },
  ])
  t.equal(esp.encryption[0]!.keySize, 128)
  t.equal(parseProposal('f', 'default', 'esp').isDefault, true)
  t.same(requiredAlgorithms(parseProposal('f', 'default', 'ike')), [])
})

t.test('the keyword table matches charon 5.9.8', async (t) => {
  // proposal_keywords_static.txt has 153 entries; the same set, checked by diff when this was written.
  t.equal(KEYWORDS.size, 153)
  for (const ks of [128, 192, 256]) {
    for (const suffix of ['', 'ctr', 'ccm', 'ccm8', 'ccm64', 'ccm12', 'ccm96', 'ccm16', 'ccm128', 'gcm', 'gcm8', 'gcm64', 'gcm12', 'gcm96', 'gcm16', 'gcm128', 'gmac']) {
      t.equal(KEYWORDS.get(`aes${ks}${suffix}`)?.keySize, ks, `aes${ks}${suffix}`)
    }
  }
  t.equal(KEYWORDS.get('aes128gcm64')?.alg, 'AES_GCM_8')
  t.equal(KEYWORDS.get('aes256ccm')?.alg, 'AES_CCM_16')
  t.equal(KEYWORDS.get('x25519')?.alg, KEYWORDS.get('curve25519')?.alg)
  t.equal(KEYWORDS.get('sha')?.alg, 'HMAC_SHA1_96')
})
