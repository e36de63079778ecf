// In the client node: push <mib> MiB to the terminal's sink and wait for its count.
// usage: node client-bulk.mjs ours <client.yaml> <mib>
//        node client-bulk.mjs ref <host:port> <ca> <mib>
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { parse } from 'yaml'
import { openSession } from '../dist/roles/client/client.js'

const [mode, a, b, c] = process.argv.slice(2)
let sock
let mib
if (mode === 'ours') {
  const cfg = parse(readFileSync(a, 'utf8'))
  const [host, port] = cfg.relay.split(':')
  mib = Number(b)
  sock = (await openSession({ relay: { host, port: Number(port) }, tls: { ca: readFileSync(cfg.ca) }, user: cfg.user, password: cfg.password }, 'patient-phone:9000')).socket
} else {
  const [host, port] = a.split(':')
  mib = Number(c)
  sock = tls.connect({ socket: net.connect({ host, port: Number(port) }), host, ca: readFileSync(b) })
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject) })
}
const total = BigInt(mib) * 1048576n
const chunk = Buffer.alloc(1 << 20, 0x5a) // one buffer, written over and over
const reply = new Promise((resolve, reject) => {
  let got = Buffer.alloc(0)
  sock.on('data', (d) => { got = Buffer.concat([got, d]); if (got.length >= 8) resolve(got.readBigUInt64BE(0)) })
  sock.once('error', reject)
  sock.once('close', () => reject(new Error('closed before the sink answered')))
})
sock.resume()
const t0 = performance.now()
const head = Buffer.alloc(8)
head.writeBigUInt64BE(total)
sock.write(head)
for (let i = 0; i < mib; i++) {
  if (!sock.write(chunk)) await new Promise((resolve) => sock.once('drain', resolve))
}
const got = await reply
const secs = (performance.now() - t0) / 1000
sock.destroy()
if (got !== total) throw new Error(`sink counted ${got} of ${total} bytes`)
process.stdout.write(JSON.stringify({ mbps: (mib * 8 * 1.048576) / secs, secs }) + '\n')
