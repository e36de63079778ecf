/**
 * The in-kernel data path for a plain-TCP hop: native/splice.c (built by `npm ci`
 * through node-gyp) joins two sockets with splice(2) on one epoll thread, as HAProxy
 * does, so bytes no longer cross into user space twice per hop.
 *
 * Loading is lazy and never fatal: a missing or unloadable addon (no compiler when the
 * package was installed, another Node ABI) leaves the JS copy loop in charge, and
 * `kernelSpliceStatus()` says why, for logs and `beckon doctor`.
 * `BECKON_SPLICE=js` (or `pipe`) turns it off.
 */
import { createRequire } from 'node:module'

interface Native {
  init: (onDone: (id: number, aToB: number, bToA: number, errno: number, side: number) => void) => void
  add: (fdA: number, fdB: number, id: number) => number
  stop: (handle: number) => [number, number] | null
  stats: () => { live: number, pooledPipes: number }
}

export interface KernelDone { aToB: number, bToA: number, errno: number, side: number }

let native: Native | null | undefined
let reason = ''
const waiting = new Map<number, (d: KernelDone) => void>()
let nextId = 1

function load (): Native | null {
  if (native !== undefined) return native
  if (process.platform !== 'linux') {
    reason = 'not Linux'
    return (native = null)
  }
  try {
    const req = createRequire(import.meta.url)
    const n = req(new URL('../../build/Release/beckon_splice.node', import.meta.url).pathname) as Native
    n.init((id, aToB, bToA, errno, side) => {
      const cb = waiting.get(id)
      waiting.delete(id)
      cb?.({ aToB, bToA, errno, side })
    })
    reason = 'splice(2) on a native epoll thread'
    return (native = n)
  } catch (err) {
    reason = `native addon not loaded (${(err as Error).message.split('\n')[0]})`
    return (native = null)
  }
}

/** Which data path plain hops use, and why. */
export function kernelSpliceStatus (): { active: boolean, reason: string } {
  const mode = process.env.BECKON_SPLICE
  if (mode === 'js' || mode === 'pipe') return { active: false, reason: `BECKON_SPLICE=${mode}` }
  const active = load() !== null // sets `reason`
  return { active, reason }
}

/** The addon, or null when the JS loop must do the work. */
export function kernelSplice (): Native | null {
  const mode = process.env.BECKON_SPLICE
  if (mode === 'js' || mode === 'pipe') return null
  return load()
}

/**
 * Hands two fds to the kernel path. `onDone` runs once when the pair is over by itself
 * (never after `stop`). Returns the handle `stop` takes.
 */
export function kernelAdd (n: Native, fdA: number, fdB: number, onDone: (d: KernelDone) => void): { handle: number, id: number } {
  const id = nextId
  nextId = nextId >= 0xffff_fff0 ? 1 : nextId + 1
  const handle = n.add(fdA, fdB, id)
  waiting.set(id, onDone)
  return { handle, id }
}

/**
 * Takes a pair back (its fds are untouched from then on). Null when the pair was already
 * over in the addon: its completion is then on its way and `onDone` still runs.
 */
export function kernelStop (n: Native, handle: number, id: number): [number, number] | null {
  const moved = n.stop(handle)
  if (moved !== null) waiting.delete(id)
  return moved
}

/** Live pairs and idle pooled pipes: for tests and metrics. */
export function kernelSpliceStats (): { live: number, pooledPipes: number } | null {
  return native?.stats() ?? null
}

/** One line for a role's start-up log: which path plain hops take. */
export function dataPath (): string {
  const st = kernelSpliceStatus()
  return st.active ? `kernel: ${st.reason}` : `js copy loop: ${st.reason}`
}
