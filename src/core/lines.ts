/**
 * JSON lines from a child's output (`beckon … --json` prints one stage per line): each
 * whole line is handed over parsed, or as `undefined` when it is not a JSON object.
 */
import type { Readable } from 'node:stream'

export function onJsonLines (stream: Readable, cb: (value: Record<string, unknown> | undefined, line: string) => void): void {
  let buf = ''
  stream.on('data', (d: Buffer | string) => {
    buf += d.toString()
    for (let i; (i = buf.indexOf('\n')) >= 0;) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      let v: unknown
      try { v = JSON.parse(line) } catch { v = undefined }
      cb(v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : undefined, line)
    }
  })
}
