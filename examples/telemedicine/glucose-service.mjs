// The patient's phone serves its glucose log (the telemedicine example).
// usage: node glucose-service.mjs [port] [host]
// GET /glucose → JSON readings; GET /glucose?marker=X echoes X (captures look for it).
import http from 'node:http'

const port = Number(process.argv[2] ?? 8080)
const host = process.argv[3] ?? '0.0.0.0'
const start = Date.UTC(2026, 10, 21, 6, 0)
const readings = Array.from({ length: 6 }, (_, i) => ({
  time: new Date(start + i * 3 * 3600_000).toISOString(),
  mmolPerL: [5.4, 7.9, 6.1, 8.3, 5.9, 6.6][i],
}))

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://patient-phone')
  if (url.pathname !== '/glucose' && url.pathname !== '/') {
    res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error":"not found"}')
    return
  }
  const body = JSON.stringify({ patient: 'patient-phone', unit: 'mmol/L', readings, marker: url.searchParams.get('marker') ?? undefined })
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body)
})
server.listen(port, host, () => process.stdout.write(`glucose service on ${host}:${port}\n`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
