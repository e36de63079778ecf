// The lab's Squid password file: a password that starts with '-' (1 in 64 random
// base64url ones) is hashed, not taken by openssl for an option (a flaky matrix run).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { apr1Hash } from '../../../src/lab/lab.js'

t.test('apr1Hash hashes passwords that look like options', async (t) => {
  for (const pw of ['-o87g3j3lvbJ', '--help', 'plain-pw_1']) {
    const h = await apr1Hash(pw)
    t.match(h, /^\$apr1\$[./0-9A-Za-z]{1,8}\$[./0-9A-Za-z]{22}$/, `${pw}: an apr1 hash`)
    // Verified the way an htpasswd reader would: the same salt gives the same hash.
    const salt = h.split('$')[2]!
    t.equal(execFileSync('openssl', ['passwd', '-apr1', '-salt', salt, '-stdin'], { input: `${pw}\n` }).toString().trim(), h, `${pw}: checks against its salt`)
  }
})
