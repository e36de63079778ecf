// bench/flame: a flame graph (SVG) from a V8 .cpuprofile (`node --cpu-prof`), no other
// tool needed. Width = share of samples; each box is a function under its caller; the
// top-level boxes "(program)" and "(garbage collector)" are time outside JS (libuv,
// syscalls, OpenSSL) and GC; idle samples are left out.
// usage: node bench/flame.mjs <file.cpuprofile> <out.svg> [title]
import { readFileSync, writeFileSync } from 'node:fs'

const ROW = 16
const WIDTH = 1200

/** SVG text of the flame graph of profile `p`. */
export function flameSvg (p, title = 'CPU profile') {
  const byId = new Map(p.nodes.map((n) => [n.id, { ...n, self: 0, total: 0 }]))
  // Idle samples are the event loop waiting: not CPU, left out.
  let idle = 0
  for (const s of p.samples) { const n = byId.get(s); if (n.callFrame.functionName === '(idle)') idle++; else n.self++ }
  const root = byId.get(p.nodes[0].id)
  let depthMax = 0
  const sum = (n, d) => {
    depthMax = Math.max(depthMax, d)
    n.total = n.self + (n.children ?? []).reduce((a, c) => a + sum(byId.get(c), d + 1), 0)
    return n.total
  }
  sum(root, 0)
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const height = (depthMax + 2) * ROW + 24
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="monospace" font-size="11">`,
    `<text x="4" y="14">${esc(title)} — ${p.samples.length - idle} busy samples (${idle} idle left out); hover a box for its share</text>`]
  const draw = (n, x, d) => {
    const w = (n.total / root.total) * WIDTH
    if (w < 0.5) return
    const f = n.callFrame
    const name = `${f.functionName || '(anonymous)'}${f.url ? ' ' + f.url.split('/').slice(-2).join('/') + ':' + (f.lineNumber + 1) : ''}`
    const y = height - (d + 1) * ROW
    const hue = f.url === '' ? 30 : f.url.startsWith('node:') ? 200 : 10
    const pct = (100 * n.total / root.total).toFixed(1)
    out.push(`<g><title>${esc(name)} — ${pct} % (self ${(100 * n.self / root.total).toFixed(1)} %)</title>` +
      `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${ROW - 1}" fill="hsl(${hue},70%,${60 + (d % 3) * 6}%)"/>` +
      (w > 40 ? `<text x="${(x + 3).toFixed(1)}" y="${y + 12}">${esc(name.slice(0, Math.floor(w / 6.6)))}</text>` : '') + '</g>')
    let cx = x
    for (const c of n.children ?? []) { const k = byId.get(c); draw(k, cx, d + 1); cx += (k.total / root.total) * WIDTH }
  }
  draw(root, 0, 0)
  out.push('</svg>')
  return out.join('\n') + '\n'
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, svg, title] = process.argv.slice(2)
  if (file === undefined || svg === undefined) { console.error('usage: node bench/flame.mjs <file.cpuprofile> <out.svg> [title]'); process.exit(2) }
  writeFileSync(svg, flameSvg(JSON.parse(readFileSync(file, 'utf8')), title ?? file))
  console.log(`bench/flame: wrote ${svg}`)
}
