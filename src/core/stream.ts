/**
 * Byte-stream helpers for handshakes and the data path.
 *
 * Data-path sockets are created with `allowHalfOpen`, so a peer's FIN travels through
 * every hop as a FIN (pipe ends the other side) while the reverse direction keeps
 * flowing, as in any TCP proxy worth the name.
 *
 * Handshakes read exact, bounded amounts with a deadline and put back whatever
 * follows (`unshift`), so the splice that comes next loses no byte. The splice moves
 * each direction with backpressure, passes half-close on, buffers nothing beyond one
 * read, and one side's error resets the other (a break travels on as a break: the far
 * end must never take a cut path for a clean end of stream).
 *
 * Per hop, the copy loop is most of a relay's CPU (bench/splice, bench/hop). A plain
 * TCP socket is read into one reused buffer per direction (libuv reads straight into
 * it: the `onread: { buffer, callback }` mechanism of `net.Socket`, switched on after
 * the handshake through the socket's own `useUserBuffer`), so no ArrayBuffer is
 * allocated and collected per chunk and no Readable queue is involved. The buffer is
 * read again only once the kernel has taken the bytes: when `write` could not finish
 * synchronously the source stops reading until the write callback runs. Sockets whose
 * handle cannot do this (TLS: the cleartext comes from the TLS layer) keep `pipe`.
 * `BECKON_SPLICE=pipe` forces `pipe` everywhere (benches compare the two).
 *
 * Two plain TCP sockets skip all of that when the native addon is built: the kernel
 * moves their bytes with splice(2) (src/core/kernel-splice.ts, native/splice.c) and this
 * module only hands them over and hears when they are done; `BECKON_SPLICE=js` keeps
 * them in the JS loop.
 */
import net, { type Socket } from 'node:net'
import { BeckonError } from './errors.js'
import { kernelAdd, kernelSplice, kernelStop } from './kernel-splice.js'

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
    // At the end of the stream read(n) hands over whatever is left, even if short.
    if (b !== null && b.length < n) throw new BeckonError('BECKON_ERR_PROTOCOL', `connection closed after ${b.length} of ${n} bytes of ${what}`)
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
 * each way; never rejects (errors close both sides). Two plain TCP sockets go to the
 * kernel path when the native addon is there (src/core/kernel-splice.ts); anything
 * else, or a kernel path that cannot take them, uses the JS loop.
 */
export function splice (a: Socket, b: Socket): Promise<{ aToB: number, bToA: number }> {
  return new Promise((resolve) => {
    const inKernel = { aToB: 0, bToA: 0, orderly: false }
    let closed = 0
    const finish = (): void => {
      if (++closed === 2) resolve({ aToB: b.bytesWritten - bBase + inKernel.aToB, bToA: a.bytesWritten - aBase + inKernel.bToA })
    }
    const aBase = a.bytesWritten
    const bBase = b.bytesWritten
    a.on('error', () => { resetSocket(b); a.destroy() })
    b.on('error', () => { resetSocket(a); b.destroy() })
    // A side that closed after both its directions ended lets the other finish its
    // writes; one destroyed before that (a kill, a shutdown) is a break, passed on as one.
    const onClose = (x: Socket, y: Socket): void => {
      if (inKernel.orderly || (x.readableEnded && x.writableFinished)) y.destroySoon?.()
      else resetSocket(y)
      finish()
    }
    a.once('close', () => onClose(a, b))
    b.once('close', () => onClose(b, a))
    // Once the data path is up, a dead peer is found by keepalives, not by timers.
    a.setKeepAlive(true, 30_000)
    b.setKeepAlive(true, 30_000)
    a.setNoDelay(true)
    b.setNoDelay(true)
    const inJs = (): void => {
      const pipeOnly = process.env.BECKON_SPLICE === 'pipe'
      if (pipeOnly || !copyWithUserBuffer(a, b)) pipeTo(a, b)
      if (pipeOnly || !copyWithUserBuffer(b, a)) pipeTo(b, a)
      a.resume()
      b.resume()
    }
    const k = kernelSplice()
    if (k === null || fdOf(a) < 0 || fdOf(b) < 0) { inJs(); return }
    handOver(k, a, b, inKernel).then((taken) => { if (!taken) inJs() }, () => inJs())
  })
}

type Native = NonNullable<ReturnType<typeof kernelSplice>>
interface TcpHandle { fd?: number, reading?: boolean, readStop?: () => number }

/**
 * The fd of a plain TCP socket we may still write to; -1 for anything the kernel path
 * must not take. One whose peer already ended is fine: the kernel reports that end of
 * stream again at every read, so the FIN still goes on after the bytes before it.
 */
function fdOf (sock: Socket): number {
  if ('encrypted' in sock || sock.destroyed || sock.writableEnded) return -1
  const h = (sock as unknown as { _handle: TcpHandle | null })._handle
  return typeof h?.fd === 'number' && h.fd >= 0 && typeof h.readStop === 'function' ? h.fd : -1
}

/**
 * Gives the pair to the kernel path: what Node already read goes out first, reading
 * stops, and once Node's own writes are out the addon takes both fds. A destroy from
 * anywhere (a kill, a gateway shutting down) first takes the pair back, so the native
 * thread never touches a closed fd. False when the kernel path refused: the JS loop
 * takes over where this left off.
 */
async function handOver (k: Native, a: Socket, b: Socket, inKernel: { aToB: number, bToA: number, orderly: boolean }): Promise<boolean> {
  for (const [src, dst] of [[a, b], [b, a]] as const) {
    let early: Buffer | null
    while ((early = src.read() as Buffer | null) !== null) dst.write(early)
  }
  for (const s of [a, b]) {
    const h = (s as unknown as { _handle: TcpHandle })._handle
    h.reading = false
    h.readStop!()
  }
  // Node's own pending writes must reach the kernel before the addon writes after them.
  for (let i = 0; a.writableLength > 0 || b.writableLength > 0; i++) {
    if (a.destroyed || b.destroyed) return true
    await new Promise((resolve) => setTimeout(resolve, i < 10 ? 0 : 10))
  }
  const fa = fdOf(a)
  const fb = fdOf(b)
  if (fa < 0 || fb < 0) return a.destroyed || b.destroyed
  let pair: { handle: number, id: number }
  // 'kernel': the addon holds the pair; 'stopped': taken back by a destroy; 'done': its
  // completion arrived. A destroy that finds the pair already over in the addon but its
  // completion not yet delivered waits for it, so the counts and the orderly/broken
  // verdict are never lost (and a clean end is not turned into a reset).
  let state: 'kernel' | 'stopped' | 'done' = 'kernel'
  const deferred: Array<() => void> = []
  const restore = (): void => { for (const s of [a, b]) delete (s as unknown as Record<string, unknown>)._destroy }
  try {
    pair = kernelAdd(k, fa, fb, (d) => {
      state = 'done'
      restore()
      inKernel.aToB += d.aToB
      inKernel.bToA += d.bToA
      // Both directions ended (FINs went on as FINs), or one side failed and the addon
      // set both to reset on close.
      inKernel.orderly = d.errno === 0
      for (const run of deferred.splice(0)) run()
      a.destroy()
      b.destroy()
    })
  } catch {
    return false
  }
  for (const s of [a, b]) {
    const own = s._destroy.bind(s)
    s._destroy = (err, cb) => {
      if (state === 'kernel') {
        const moved = kernelStop(k, pair.handle, pair.id)
        if (moved === null) { deferred.push(() => own(err, cb)); return }
        state = 'stopped'
        inKernel.aToB += moved[0]
        inKernel.bToA += moved[1]
      }
      restore()
      own(err, cb)
    }
  }
  return true
}

/**
 * Ends a socket with a TCP reset: the peer sees ECONNRESET, never a clean end of stream.
 * A TLS socket resets the TCP socket under it (its own handle cannot). Only a fully open
 * socket is reset: on Node 20, resetAndDestroy() on a half-closed one (the peer's FIN
 * already in) spins the process at 100 % CPU, never returning; those are destroyed.
 */
export function resetSocket (sock: Socket): void {
  if (sock.destroyed) return
  const tcp = 'encrypted' in sock ? (sock as unknown as { _parent?: unknown })._parent : sock
  if (tcp instanceof net.Socket && !tcp.destroyed && tcp.readyState === 'open') tcp.resetAndDestroy()
  sock.destroy()
}

/** Bytes per read on the reused-buffer path (one buffer per direction). */
export const SPLICE_READ_BYTES = 64 * 1024

interface UserBufferHandle { useUserBuffer?: (buf: Uint8Array) => void, readStart: () => number, reading: boolean }

/** The socket's private symbol for `description` (net.Socket keeps the onread state there). */
function socketSymbol (sock: Socket, description: string): symbol | undefined {
  return Object.getOwnPropertySymbols(sock).find((s) => s.description === description)
}

/**
 * Moves src → dst through one reused buffer; false (nothing changed) when src's handle
 * cannot read into a user buffer, so the caller falls back to `pipe`.
 */
function copyWithUserBuffer (src: Socket, dst: Socket): boolean {
  const handle = (src as unknown as { _handle: UserBufferHandle | null })._handle
  const kBuffer = socketSymbol(src, 'kBuffer')
  const kBufferCb = socketSymbol(src, 'kBufferCb')
  if (handle === null || typeof handle.useUserBuffer !== 'function' || kBuffer === undefined || kBufferCb === undefined) return false
  if ('encrypted' in src) return false
  // What the handshake read past its end goes first, in order.
  let early: Buffer | null
  while ((early = src.read() as Buffer | null) !== null) dst.write(early)
  const buf = Buffer.allocUnsafe(SPLICE_READ_BYTES)
  let waiting = false
  const written = (): void => {
    if (!waiting) return
    waiting = false
    // Mirrors net's tryReadStart: the handle was stopped when the callback said false.
    if (!src.destroyed && !handle.reading) { handle.reading = true; handle.readStart() }
  }
  const s = src as unknown as Record<symbol, unknown>
  s[kBuffer] = buf
  s[kBufferCb] = (n: number): boolean => {
    dst.write(buf.subarray(0, n), written)
    // Flushed synchronously: buf is free again. Otherwise the kernel holds a reference
    // to it until the write callback, so stop reading until then.
    if (dst.writableLength === 0) return true
    waiting = true
    return false
  }
  handle.useUserBuffer(buf)
  onEnd(src, () => endOrReset(src, dst))
  return true
}

function pipeTo (src: Socket, dst: Socket): void {
  src.pipe(dst, { end: false })
  onEnd(src, () => endOrReset(src, dst))
}

/** Runs fn at src's end of stream, at once when that already happened (a hand-over drained it). */
function onEnd (src: Socket, fn: () => void): void {
  if (src.readableEnded) fn()
  else src.once('end', fn)
}

/** src's stream ended: a FIN goes on as a FIN, a reset as a reset. */
function endOrReset (src: Socket, dst: Socket): void {
  if (!wasReset(src)) { dst.end(); return }
  resetSocket(dst)
  src.destroy()
}

/**
 * True when the peer reset the connection under a stream that just ended. Node does not
 * always say: libuv reports end of stream on POLLHUP after a short read without reading
 * the pending ECONNRESET, and TLS sockets turn a reset into a clean end (OpenSSL is told
 * to ignore an unexpected EOF) — so a cut path would pass on as a whole one. The kernel
 * knows: after a reset the TCP socket is closed (getpeername → ENOTCONN); after a FIN it
 * is in CLOSE_WAIT and still has its peer. Undecidable once our own FIN is out (an
 * orderly close ends in TIME_WAIT): then it counts as a clean end.
 */
export function wasReset (sock: Socket): boolean {
  // Once our own FIN is out, an orderly close also leaves the socket closed (TIME_WAIT).
  // (writableEnded is no guide: a socket without allowHalfOpen ends itself on 'end'.)
  if (sock.writableFinished) return false
  const tcp = 'encrypted' in sock ? (sock as unknown as { _parent?: unknown })._parent : sock
  const handle = tcp instanceof net.Socket ? (tcp as unknown as { _handle: { getpeername?: (out: object) => number } | null })._handle : null
  if (handle === null || typeof handle.getpeername !== 'function') return false
  return handle.getpeername({}) !== 0
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

