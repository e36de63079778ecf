// bench/hop: one splice hop on loopback, CPU-s/GiB of the splicing process, the
// reused-buffer copy (src/core/stream.ts) against the `pipe` it replaced, in paired,
// interleaved rounds (the other engineers' load on a shared machine cancels in the
// per-round ratio). iperf3 client → this process (accepted socket ⇄ connected socket)
// → iperf3 server, all on 127.0.0.1; only this process's CPU is counted.
// usage (after npm run build; iperf3 installed): node bench/hop.mjs [seconds] [rounds] [--json]
import { spawn } from 'node:child_process'
import net from 'node:net'
import { connectTcp, splice } from '../dist/core/stream.js'
import { median, report, recordSection, machine } from './lib.mjs'

const nums = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const secs = nums[0] ?? 3
const rounds = nums[1] ?? 5
const PORT_IPERF = 15201
const PORT_HOP = 15202

const iperfServer = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(PORT_IPERF)], { stdio: 'ignore' })
const hop = net.createServer({ allowHalfOpen: true }, (sock) => {
  sock.pause()
  sock.on('error', () => {})
  connectTcp('127.0.0.1', PORT_IPERF, 5_000).then((up) => splice(sock, up), () => sock.destroy())
})
await new Promise((resolve) => hop.listen(PORT_HOP, '127.0.0.1', resolve))

function iperf () {
  return new Promise((resolve, reject) => {
    const c = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(PORT_HOP), '-t', String(secs), '-J'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.on('data', (d) => { out += d })
    c.on('close', (code) => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`iperf3 exited ${code}: ${out.slice(0, 300)}`)))
  })
}

async function round (mode) {
  if (mode === 'kernel') delete process.env.BECKON_SPLICE
  else process.env.BECKON_SPLICE = mode === 'userbuf' ? 'js' : 'pipe'
  const c0 = process.cpuUsage()
  const r = await iperf()
  const c = process.cpuUsage(c0)
  const gib = r.end.sum_received.bytes / 2 ** 30
  return { cpuPerGiB: (c.user + c.system) / 1e6 / gib, mbps: r.end.sum_received.bits_per_second / 1e6 }
}

try {
  await new Promise((resolve) => setTimeout(resolve, 300))
  await round('userbuf'); await round('pipe') // warm-up, not counted
  const pairs = []
  for (let i = 0; i < rounds; i++) {
    // Alternate which goes first, so neither always follows the other.
    const order = i % 2 === 0 ? ['userbuf', 'pipe'] : ['pipe', 'userbuf']
    const r = {}
    for (const m of order) r[m] = await round(m)
    pairs.push(r)
  }
  const rows = [
    ['cpu s/GiB, one hop', median(pairs.map((p) => p.userbuf.cpuPerGiB)), median(pairs.map((p) => p.pipe.cpuPerGiB)), median(pairs.map((p) => p.pipe.cpuPerGiB / p.userbuf.cpuPerGiB)), `ref = stream pipe; ratio = median of ${rounds} paired ref/ours (≥ 1: ours cheaper)`],
    ['  rounds', pairs.map((p) => p.userbuf.cpuPerGiB.toFixed(2)).join('/'), pairs.map((p) => p.pipe.cpuPerGiB.toFixed(2)).join('/'), '-', 'per round'],
    ['throughput (Mbit/s)', median(pairs.map((p) => p.userbuf.mbps)), median(pairs.map((p) => p.pipe.mbps)), median(pairs.map((p) => p.userbuf.mbps / p.pipe.mbps)), 'ratio = median of paired ours/ref (≥ 1: ours faster)'],
  ]
  const text = report('bench/hop', rows)
  if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ text, pairs }) + '\n')
  if (process.argv.includes('--record')) {
    recordSection('hop', text, `One plain-TCP hop on loopback, iperf3 through it; CPU of the splicing process only. ${machine()}.\n\n` +
      '**What limits us.** A `--cpu-prof` of this process (`node --cpu-prof bench/hop.mjs`) puts about two thirds of its busy time in ' +
      '`writeBuffer`, i.e. the write(2) system call copying into the socket, and most of the rest in libuv\'s read(2) (shown as "(program)"); ' +
      'the JS of the copy loop (stream machinery, buffer views) is under a tenth, and GC about 5 %. Reading into one reused buffer per ' +
      'direction removed the per-read ArrayBuffer allocation and the Readable queue (the gain above). What remains is the two copies ' +
      'through user space that HAProxy avoids with splice(2): only an in-kernel join (an eBPF sockmap redirect) removes them.')
  }
} finally {
  iperfServer.kill('SIGKILL')
  hop.close()
  process.exit(0)
}
