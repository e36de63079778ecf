// bench/rendezvous: CONNECT→200 latency over 200 sequential sessions in the namespace
// lab (TLS CONNECT, SMPP signal through the lab SMSC, dial-back through the carrier
// NAT, descriptor to the agent), with the SMS hop's own share.
// No measured peer here: the reference column holds the targets (p50 ≤ 50 ms,
// p99 ≤ 150 ms), labelled as such, and no ratio is printed (bench/peers measures the
// de-facto peer, an OpenSSH reverse tunnel).
// usage (root, after npm run build): node bench/rendezvous.mjs [sms-sessions] [mail-sessions] [--record]
import { join } from 'node:path'
import { labCli } from '../dist/lab/lab.js'
import { ROOT, withLab, inNode, percentile, logLines, report, recordSection, machine } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const n = nums[0] ?? 200
const nMail = nums[1] ?? 50
const record = process.argv.includes('--record')

await withLab({ channels: ['sms', 'email'] }, async (st) => {
  await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', '3']) // warm-up
  const out = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', String(n)]))
  const lat = out.map((r) => r.ms)
  // SMS hop: relay hands the token to SMPP (signalStart) → gateway has it verified.
  const sent = new Map(logLines(st, 'relay').filter((l) => l.msg === 'relay: signal sent').map((l) => [l.session, l.signalStart]))
  const got = new Map(logLines(st, 'gateway').filter((l) => l.msg === 'gateway: signal accepted').map((l) => [l.session, l.time]))
  const sms = out.map((r) => got.get(r.session) - sent.get(r.session)).filter((v) => Number.isFinite(v))
  const p = (v, q) => percentile(v, q)
  const rows = [
    ['connect-to-200 p50 (ms)', p(lat, 50), 'target ≤ 50', '-', `${n} sequential sessions; ${p(lat, 50) <= 50 ? 'meets' : 'misses'} the target`],
    ['connect-to-200 p99 (ms)', p(lat, 99), 'target ≤ 150', '-', `${p(lat, 99) <= 150 ? 'meets' : 'misses'} the target`],
    ['sms hop p50 (ms)', p(sms, 50), '-', '-', `${(100 * p(sms, 50) / p(lat, 50)).toFixed(0)} % of p50 (relay submit_sm → gateway verified)`],
    ['sms hop p99 (ms)', p(sms, 99), '-', '-', `${sms.length} sessions matched in the logs`],
  ]
  // The e-mail column: the same sessions signalled through SMTP submission → Postfix →
  // Dovecot → IMAP IDLE at the gateway.
  // Through the management API: the next CONNECT uses it, no restart.
  await labCli(st, ['device', 'set', 'patient-phone', '--channels', 'email'])
  await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', '2'])
  const mail = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', String(nMail)])).map((r) => r.ms)
  rows.push(
    ['connect-to-200 p50 via e-mail (ms)', p(mail, 50), '-', '-', `${nMail} sequential sessions: SMTP submission → Postfix → Dovecot → IMAP IDLE`],
    ['connect-to-200 p99 via e-mail (ms)', p(mail, 99), '-', '-', 'no target set for e-mail'],
  )
  const text = report('bench/rendezvous', rows)
  if (record) recordSection('rendezvous', text, `Namespace lab, one process per role; lab SMSC for the SMS hop, Postfix + Dovecot for e-mail. ${machine()}.\n\n` +
      '**What limits us.** Sequential sessions never load a process: the time is the sum of round trips and small CPU steps (TLS handshake, signal ' +
      'seal, SMPP submit → deliver, dial-back, descriptor signature and reply). The SMS hop is a few ms of it; e-mail is bound by Postfix queueing ' +
      'and IMAP IDLE notification, not by our code. bench/peers compares the whole connect with OpenSSH; bench/scale loads it.')
})
