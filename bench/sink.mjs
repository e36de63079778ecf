// Bench sink on the terminal: reads a u64be byte count N, then N bytes, answers with
// the u64be count it received, and closes. usage: node sink.mjs <port> [host]
import net from 'node:net'
const port = Number(process.argv[2] ?? 9000)
const host = process.argv[3] ?? '0.0.0.0'
net.createServer((s) => {
  let want = -1n
  let got = 0n
  let head = Buffer.alloc(0)
  s.on('data', (d) => {
    if (want < 0n) {
      head = Buffer.concat([head, d])
      if (head.length < 8) return
      want = head.readBigUInt64BE(0)
      d = head.subarray(8)
    }
    got += BigInt(d.length)
    if (got >= want) {
      const r = Buffer.alloc(8)
      r.writeBigUInt64BE(got)
      s.end(r)
    }
  })
  s.on('error', () => {})
}).listen(port, host, () => process.stdout.write(`sink on ${host}:${port}\n`))
