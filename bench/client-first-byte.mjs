// In the client node: connect-to-first-byte from the glucose service, `beckon connect`
// (SMS-signalled rendezvous, IPsec tunnel, then GET over it) against `ssh -W` through
// the bastion's reverse tunnel (ssh -J), n paired rounds, alternating which goes first.
// usage: node client-first-byte.mjs <beckon main.js> <client.yaml> <terminal address> <ssh_config> <n>
import { spawn } from 'node:child_process'
import net from 'node:net'

const [main, clientCfg, T, sshCfg, n] = process.argv.slice(2)
const GET = 'GET /glucose HTTP/1.0\r\nHost: patient-phone\r\n\r\n'

function exited (child) { return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve)) }

async function beckon () {
  const t0 = performance.now()
  const conn = spawn(process.execPath, [main, 'connect', 'patient-phone', '--json'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, BECKON_CLIENT_CONFIG: clientCfg } })
  try {
    const stages = {}
    await new Promise((resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => reject(new Error('beckon connect: no tunnel within 20 s')), 20_000)
      conn.stderr.on('data', (d) => {
        buf += d
        for (const line of buf.split('\n').slice(0, -1)) {
          try { const j = JSON.parse(line); if (stages[j.stage] === undefined) stages[j.stage] = performance.now() - t0 } catch {}
        }
        buf = buf.slice(buf.lastIndexOf('\n') + 1)
        if (stages['tunnel-up'] !== undefined) { clearTimeout(timer); resolve() }
      })
      conn.once('exit', (code) => { clearTimeout(timer); reject(new Error(`beckon connect exited ${code}`)) })
    })
    const s = net.connect({ host: T, port: 8080 })
    s.setNoDelay(true)
    await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
    s.write(GET)
    await new Promise((resolve, reject) => { s.once('data', resolve); s.once('error', reject) })
    const ms = performance.now() - t0
    s.destroy()
    return { ms, started: stages.connecting, connected: stages.connected, tunnelUp: stages['tunnel-up'] }
  } finally {
    conn.kill('SIGTERM')
    await exited(conn)
  }
}

async function ssh () {
  const t0 = performance.now()
  const c = spawn('ssh', ['-F', sshCfg, '-W', '127.0.0.1:8080', 'terminal'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let err = ''
  c.stderr.on('data', (d) => { err += d })
  try {
    c.stdin.write(GET)
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ssh: no byte within 20 s: ${err}`)), 20_000)
      c.stdout.once('data', () => { clearTimeout(timer); resolve() })
      c.once('exit', (code) => { clearTimeout(timer); reject(new Error(`ssh exited ${code}: ${err}`)) })
    })
    return { ms: performance.now() - t0 }
  } finally {
    c.kill('SIGTERM')
    await exited(c)
  }
}

const out = []
for (let i = 0; i < Number(n); i++) {
  const r = {}
  if (i % 2 === 0) { r.beckon = await beckon(); r.ssh = await ssh() } else { r.ssh = await ssh(); r.beckon = await beckon() }
  out.push(r)
}
process.stdout.write(JSON.stringify(out) + '\n')
