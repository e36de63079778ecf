// bench/control: the control plane's cost.
//  (a) management API: requests/s and p99 latency at 200 concurrent keep-alive HTTPS
//      clients (GET /v1/devices and GET /v1/devices/<name>; bounded by count and time);
//  (b) CONNECT→200 p50/p99 with the store in the path (each CONNECT reads the store's
//      revision; a change reloads the catalog), beside the figure recorded in
//      docs/benchmarks.md before the store existed, and the store's own time per
//      CONNECT from the relay's /metrics (goal: ≤ 1 ms added at p50).
// usage (root, after npm run build): node bench/control.mjs [sessions] [--record]
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { labCli } from '../dist/lab/lab.js'
import { ROOT, withLab, inNode, percentile, report, recordSection, machine } from './lib.mjs'

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 200)
const record = process.argv.includes('--record')
// Before the store: the rendezvous p50/p99 recorded in docs/benchmarks.md.
const doc = readFileSync(join(ROOT, 'docs', 'benchmarks.md'), 'utf8')
const before = (q) => Number(new RegExp(`connect-to-200 ${q} \\(ms\\)\\s+([\\d.]+)`).exec(doc)?.[1] ?? NaN)
const recorded = { p50: before('p50'), p99: before('p99') }

function histogram (text, name, labels) {
  const line = (suffix) => text.split('\n').find((l) => l.startsWith(`${name}_${suffix}{${labels}}`) || (suffix !== 'bucket' && l.startsWith(`${name}_${suffix}{`) && l.includes(labels)))
  const val = (l) => Number(l?.split(' ').pop() ?? NaN)
  return { sum: val(line('sum')), count: val(line('count')) }
}

await withLab({ apiRateLimit: 10_000_000 }, async (st) => {
  const load = async (path) => JSON.parse(await inNode(st, 'relay', [process.execPath, join(ROOT, 'bench/api-load.mjs'), st.api.url, st.api.token, st.api.ca, path, '200', '20000', '20']))
  await load('/v1/devices') // warm-up
  const list = await load('/v1/devices')
  const one = await load('/v1/devices/patient-phone')
  const metrics = async () => await inNode(st, 'relay', ['curl', '-sk', `${st.api.url}/metrics`])

  await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', '3'])
  const m0 = await metrics()
  const out = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), st.clientConfig, 'patient-phone:8080', String(n)]))
  const m1 = await metrics()
  const lat = out.map((r) => r.ms)
  const rev0 = histogram(m0, 'beckon_store_seconds', 'op="revision"')
  const rev1 = histogram(m1, 'beckon_store_seconds', 'op="revision"')
  const perConnectMs = 1000 * (rev1.sum - rev0.sum) / Math.max(1, rev1.count - rev0.count)
  const p50 = percentile(lat, 50)
  const p99 = percentile(lat, 99)
  // The same sessions for a local user: what the LDAP lookup (StartTLS, search, bind;
  // cached for 30 s after success) adds on top.
  await labCli(st, ['group', 'add', 'physicians'])
  await labCli(st, ['user', 'add', 'dr-local', '--password-stdin', '--groups', 'physicians'], 'local-password-1\n')
  const localCfg = join(st.stateDir, 'client', 'local.yaml')
  writeFileSync(localCfg, toYaml({ ...parseYaml(readFileSync(st.clientConfig, 'utf8')), user: 'dr-local', password: 'local-password-1' }))
  const local = JSON.parse(await inNode(st, 'client', [process.execPath, join(ROOT, 'bench/client-seq.mjs'), localCfg, 'patient-phone:8080', String(n)])).map((r) => r.ms)
  const rows = [
    ['api GET /v1/devices (req/s)', list.rps, '-', '-', `200 concurrent keep-alive HTTPS clients, ${list.requests} requests in ${list.seconds.toFixed(1)} s, ${list.errors} errors`],
    ['api GET /v1/devices p99 (ms)', list.p99, '-', '-', `p50 ${list.p50.toFixed(2)} ms`],
    ['api GET /v1/devices/<name> (req/s)', one.rps, '-', '-', `${one.requests} requests, ${one.errors} errors`],
    ['api GET /v1/devices/<name> p99 (ms)', one.p99, '-', '-', `p50 ${one.p50.toFixed(2)} ms`],
    ['connect-to-200 p50 (ms)', p50, recorded.p50, recorded.p50 / p50, `${n} sequential sessions, store in the path; reference = recorded before the store (ratio ≥ 1: no slower)`],
    ['connect-to-200 p99 (ms)', p99, recorded.p99, recorded.p99 / p99, 'same sessions'],
    ['connect-to-200 p50, local user (ms)', percentile(local, 50), p50, p50 / percentile(local, 50), 'reference = the LDAP user above: ratio > 1 is what the directory adds'],
    ['store time per CONNECT (ms)', perConnectMs, 'target ≤ 1', '-', 'revision read (SQLite, WAL) from the relay\'s /metrics; not a measured peer'],
  ]
  const text = report('bench/control', rows)
  if (record) recordSection('control', text, `Namespace lab; management API on the relay's TLS listener, SQLite store; load from the relay node. ${machine()}.\n\n` +
      '**What limits us.** API throughput is the relay process at a full core (TLS, fastify, JSON) with the load generator on the other core.')
})
