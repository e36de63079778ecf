// TCP round trips: `server <port> [host] [v6only]` echoes; `client <host> <port> <n>` sends 32-byte
// pings one at a time and prints {"medianMs","p99Ms"}.
import net from 'node:net'
const [mode, a, b, c] = process.argv.slice(2)
if (mode === 'server') {
  net.createServer((s) => { s.setNoDelay(true); s.pipe(s); s.on('error', () => {}) }).listen({ port: Number(a), host: b ?? '::', ipv6Only: c === 'v6only' })
} else {
  const n = Number(c)
  const s = net.connect({ host: a, port: Number(b) })
  s.setNoDelay(true)
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  const ping = Buffer.alloc(32, 1)
  const times = []
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    s.write(ping)
    let got = 0
    await new Promise((resolve) => {
      const on = (d) => { got += d.length; if (got >= 32) { s.off('data', on); resolve() } }
      s.on('data', on)
    })
    times.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  s.destroy()
  times.sort((x, y) => x - y)
  process.stdout.write(JSON.stringify({ medianMs: times[Math.floor(n / 2)], p99Ms: times[Math.min(n - 1, Math.ceil(n * 0.99) - 1)] }) + '\n')
}
