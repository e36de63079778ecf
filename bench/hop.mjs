// bench/hop: one plain-TCP splice hop on loopback, CPU-s/GiB of the splicing process,
// in paired, interleaved rounds (the other engineers' load on a shared machine cancels in
// the per-round ratio). iperf3 client → hop → iperf3 server, all on 127.0.0.1; only the
// hop process's CPU is counted (all its threads: the native splice thread included).
//
//   kernel   our splice: native/splice.c, splice(2) through a pipe on an epoll thread
//   js       our JS loop (one reused read buffer per direction), the fallback
//   pipe     Node's stream pipe, what the JS loop replaced
//   haproxy  HAProxy 2.6, defaults (copies through user space)
//   haproxy-splice  HAProxy forced to splice(2) (`option splice-request`, `splice-response`)
//
// usage (after npm run build; iperf3 and haproxy installed): node bench/hop.mjs [seconds] [rounds] [--record]
import { spawn } from 'node:child_process'
import net from 'node:net'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectTcp, splice } from '../dist/core/stream.js'
import { kernelSpliceStatus } from '../dist/core/kernel-splice.js'
import { median, report, recordSection, machine, cpuSecs } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const secs = nums[0] ?? 3
const rounds = nums[1] ?? 5
const PORT_IPERF = 15201
const PORT_HOP = 15202
const PORT_HA = 15203
const PORT_HA_SPLICE = 15204

if (!kernelSpliceStatus().active) throw new Error(`bench/hop: the kernel path is off (${kernelSpliceStatus().reason}); run npm ci first`)
const dir = mkdtempSync(join(tmpdir(), 'beckon-hop-'))
const haproxy = (port, splice) => {
  const cfg = join(dir, `haproxy-${port}.cfg`)
  writeFileSync(cfg, ['global', '  maxconn 100', 'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
    ...(splice ? ['  option splice-request', '  option splice-response'] : []), 'frontend f', `  bind 127.0.0.1:${port}`, '  default_backend b', 'backend b', `  server s 127.0.0.1:${PORT_IPERF}`, ''].join('\n'))
  return spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' })
}
const iperfServer = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(PORT_IPERF)], { stdio: 'ignore' })
const ha = haproxy(PORT_HA, false)
const haSplice = haproxy(PORT_HA_SPLICE, true)
const hop = net.createServer({ allowHalfOpen: true }, (sock) => {
  sock.pause()
  sock.on('error', () => {})
  connectTcp('127.0.0.1', PORT_IPERF, 5_000).then((up) => splice(sock, up), () => sock.destroy())
})
await new Promise((resolve) => hop.listen(PORT_HOP, '127.0.0.1', resolve))

function iperf (port) {
  return new Promise((resolve, reject) => {
    const c = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(secs), '-J'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.on('data', (d) => { out += d })
    c.on('close', (code) => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`iperf3 exited ${code}: ${out.slice(0, 300)}`)))
  })
}

const MODES = ['kernel', 'js', 'pipe', 'haproxy', 'haproxy-splice']
async function round (mode) {
  let port = PORT_HOP
  // The same clock for every mode: the kernel's per-process account in /proc (all threads).
  let cpu = () => cpuSecs(process.pid)
  if (mode === 'kernel') delete process.env.BECKON_SPLICE
  else if (mode === 'js' || mode === 'pipe') process.env.BECKON_SPLICE = mode
  else {
    const pid = (mode === 'haproxy' ? ha : haSplice).pid
    port = mode === 'haproxy' ? PORT_HA : PORT_HA_SPLICE
    cpu = () => cpuSecs(pid)
  }
  const c0 = cpu()
  const r = await iperf(port)
  const used = cpu() - c0
  const gib = r.end.sum_received.bytes / 2 ** 30
  return { cpuPerGiB: used / gib, mbps: r.end.sum_received.bits_per_second / 1e6 }
}

try {
  await new Promise((resolve) => setTimeout(resolve, 500))
  for (const m of MODES) await round(m) // warm-up, not counted
  const pairs = []
  for (let i = 0; i < rounds; i++) {
    // Rotate the order, so no mode always follows another.
    const order = MODES.map((_, j) => MODES[(i + j) % MODES.length])
    const r = {}
    for (const m of order) r[m] = await round(m)
    pairs.push(r)
  }
  const cpuRow = (ref, note) => [`cpu s/GiB vs ${ref}`, median(pairs.map((p) => p.kernel.cpuPerGiB)), median(pairs.map((p) => p[ref].cpuPerGiB)),
    median(pairs.map((p) => p[ref].cpuPerGiB / p.kernel.cpuPerGiB)), note]
  const rows = [
    cpuRow('haproxy-splice', `ours = kernel path; ratio = median of ${rounds} paired ref/ours (≥ 1: ours cheaper)`),
    cpuRow('haproxy', 'HAProxy with its defaults (user-space copy)'),
    cpuRow('js', 'our JS loop: what a host without the addon runs'),
    cpuRow('pipe', 'Node stream pipe'),
    ['  rounds (kernel)', pairs.map((p) => p.kernel.cpuPerGiB.toFixed(2)).join('/'), pairs.map((p) => p['haproxy-splice'].cpuPerGiB.toFixed(2)).join('/'), '-', 'per round, ref = haproxy-splice'],
    ['throughput vs haproxy-splice (Mbit/s)', median(pairs.map((p) => p.kernel.mbps)), median(pairs.map((p) => p['haproxy-splice'].mbps)), median(pairs.map((p) => p.kernel.mbps / p['haproxy-splice'].mbps)), 'ratio = median of paired ours/ref (≥ 1: ours faster)'],
    ['throughput js loop (Mbit/s)', median(pairs.map((p) => p.js.mbps)), median(pairs.map((p) => p.pipe.mbps)), median(pairs.map((p) => p.js.mbps / p.pipe.mbps)), 'ours = js loop, ref = pipe'],
  ]
  const text = report('bench/hop', rows)
  if (process.argv.includes('--record')) {
    recordSection('hop', text, `One plain-TCP hop on loopback, iperf3 through it; CPU of the splicing process only (all threads). ${machine()}.\n\n` +
      '**What limits us.** On the kernel path the hop process only sets a pair up and hears when it ends; per byte, its epoll thread calls splice(2) twice ' +
      '(socket → pipe, pipe → socket) per 64 KiB, exactly what HAProxy does when it splices, and the time is the kernel\'s TCP receive and send work ' +
      'charged to the calling thread. The JS loop (the fallback) spends about two thirds of its busy time in `writeBuffer`, i.e. write(2) copying into the ' +
      'socket, most of the rest in libuv\'s read(2): the two copies through user space that splice(2) avoids. An eBPF sockmap redirect would avoid the pipe ' +
      'too, but queues without limit behind a slow reader on this kernel (bench/sockmap-probe.sh), so it is not used.')
  }
} finally {
  for (const p of [iperfServer, ha, haSplice]) p.kill('SIGKILL')
  hop.close()
  rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}
