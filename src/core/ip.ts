/**
 * IP addresses as bytes and back (RFC 5952 text for IPv6). Used by the signal codec
 * (relay address in 4 or 16 bytes) and for permanent IPv6 addresses.
 */
import { isIP } from 'node:net'

/** 4 or 16 bytes, or undefined when `addr` is not an IP literal (IPv4-mapped forms excluded). */
export function ipBytes (addr: string): Buffer | undefined {
  const fam = isIP(addr)
  if (fam === 4) return Buffer.from(addr.split('.').map(Number))
  if (fam !== 6 || addr.includes('.')) return undefined
  const [head, tail] = addr.includes('::') ? addr.split('::') as [string, string] : [addr, undefined]
  const h = head === '' ? [] : head.split(':')
  const tl = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl]
  const b = Buffer.alloc(16)
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2))
  return b
}

/** Text form of 4 or 16 bytes; IPv6 compressed as RFC 5952 says (longest zero run ≥ 2). */
export function ipString (b: Buffer): string {
  if (b.length === 4) return [...b].join('.')
  const g: string[] = []
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i).toString(16))
  let best = -1; let len = 0
  for (let i = 0; i < 8;) {
    if (g[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && g[j] === '0') j++
    if (j - i > len && j - i >= 2) { best = i; len = j - i }
    i = j
  }
  return best < 0 ? g.join(':') : `${g.slice(0, best).join(':')}::${g.slice(best + len).join(':')}`
}
