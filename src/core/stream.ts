/**
 * Byte-stream helpers for handshakes and the data path.
 *
 * Data-path sockets are created with `allowHalfOpen`, so a peer's FIN travels through
 * every hop as a FIN (pipe ends the other side) while the reverse direction keeps
 * flowing, as in any TCP proxy worth the name.
 *
 * Handshakes read exact, bounded amounts with a deadline and put back whatever
 * follows (`unshift`), so the splice that comes next loses no byte. The splice is two
 * `pipe`s: backpressure both ways, half-close passed on, nothing buffered beyond the
 * sockets' own high-water marks, and one side's error tears down both.
 */
import net, { type Socket } from 'node:net'
import { BeckonError } from './errors.js'

function readable (sock: Socket, what: string, timeoutMs: number, take: () => Buffer | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, v?: Buffer): void => {
      clearTimeout(timer)
      sock.off('readable', onReadable)
      sock.off('end', onEnd)
      sock.off('close', onEnd)
      sock.off('error', onError)
      if (err !== undefined) reject(err)
      else resolve(v!)
    }
    const onReadable = (): void => {
      try {
        const v = take()
        if (v !== undefined) done(undefined, v)
      } catch (err) {
        done(err as Error)
      }
    }
    const onEnd = (): void => done(new BeckonError('BECKON_ERR_PROTOCOL', `connection closed while reading ${what}`))
    const onError = (err: Error): void => done(new BeckonError('BECKON_ERR_PROTOCOL', `${what}: ${err.message}`, { cause: err }))
    const timer = setTimeout(() => done(new BeckonError('BECKON_ERR_TIMEOUT', `no ${what} within ${timeoutMs} ms`)), timeoutMs)
    sock.on('readable', onReadable)
    sock.on('end', onEnd)
    sock.on('close', onEnd)
    sock.on('error', onError)
    onReadable()
  })
}

/** Reads exactly `n` bytes. */
export function readExact (sock: Socket, n: number, what: string, timeoutMs: number): Promise<Buffer> {
  return readable(sock, what, timeoutMs, () => {
    const b = sock.read(n) as Buffer | null
    if (b !== null) return b
    if (sock.readableEnded) throw new BeckonError('BECKON_ERR_PROTOCOL', `connection closed while reading ${what}`)
    return undefined
  })
}

/**
 * Reads up to and including `delim` (at most `max` bytes), putting back what follows.
 * More than `max` bytes without the delimiter is a protocol error, not a reason to buffer.
 */
export function readUntil (sock: Socket, delim: Buffer, max: number, what: string, timeoutMs: number): Promise<Buffer> {
  let acc: Buffer = Buffer.alloc(0)
  return readable(sock, what, timeoutMs, () => {
    let chunk: Buffer | null
    while ((chunk = sock.read() as Buffer | null) !== null) {
      const searchFrom = Math.max(0, acc.length - delim.length + 1)
      acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk])
      const i = acc.indexOf(delim, searchFrom)
      if (i >= 0) {
        const end = i + delim.length
        if (end < acc.length) sock.unshift(acc.subarray(end))
        return acc.subarray(0, end)
      }
      if (acc.length > max) throw new BeckonError('BECKON_ERR_PROTOCOL', `${what} longer than ${max} bytes`)
    }
    return undefined
  })
}

/**
 * Joins two sockets until both directions have ended. Resolves with the bytes moved
 * each way; never rejects (errors close both sides).
 */
export function splice (a: Socket, b: Socket): Promise<{ aToB: number, bToA: number }> {
  return new Promise((resolve) => {
    let closed = 0
    const finish = (): void => {
      if (++closed === 2) resolve({ aToB: b.bytesWritten - bBase, bToA: a.bytesWritten - aBase })
    }
    const aBase = a.bytesWritten
    const bBase = b.bytesWritten
    const kill = (): void => { a.destroy(); b.destroy() }
    a.on('error', kill)
    b.on('error', kill)
    a.once('close', () => { b.destroySoon?.(); finish() })
    b.once('close', () => { a.destroySoon?.(); finish() })
    // Once the data path is up, a dead peer is found by keepalives, not by timers.
    a.setKeepAlive(true, 30_000)
    b.setKeepAlive(true, 30_000)
    a.setNoDelay(true)
    b.setNoDelay(true)
    a.pipe(b)
    b.pipe(a)
    a.resume()
    b.resume()
  })
}

/** Connects with a deadline; the socket comes back paused, ready for a handshake. */
export function connectTcp (host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, allowHalfOpen: true })
    const timer = setTimeout(() => { sock.destroy(); reject(new BeckonError('BECKON_ERR_TIMEOUT', `connect ${host}:${port} after ${timeoutMs} ms`)) }, timeoutMs)
    sock.once('connect', () => { clearTimeout(timer); sock.pause(); resolve(sock) })
    sock.once('error', (err) => { clearTimeout(timer); reject(new BeckonError('BECKON_ERR_PROTOCOL', `connect ${host}:${port}: ${err.message}`)) })
  })
}

