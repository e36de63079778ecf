/**
 * Network namespaces and veth/bridge plumbing for the test network (iproute2).
 *
 * Every namespace made here is recorded so `destroy()` can remove it, its processes
 * and its links; tests call it from a teardown that runs on failure too.
 */
import { spawnSync } from 'node:child_process'
import { run, type RunResult } from '../core/exec.js'

export class Netns {
  constructor (readonly name: string) {}

  /** `ip -n <ns> …` */
  ip (...args: string[]): Promise<RunResult> {
    return run('ip', ['-n', this.name, ...args])
  }

  /** Runs a command inside the namespace. */
  exec (cmd: string, args: readonly string[] = [], opts: { allowFail?: boolean, input?: string, timeoutMs?: number } = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts)
  }

  async addAddress (dev: string, cidr: string): Promise<void> {
    // nodad: a test address must be usable at once, not after IPv6 DAD.
    await this.ip('addr', 'add', cidr, 'dev', dev, ...(cidr.includes(':') ? ['nodad'] : []))
  }

  async up (dev: string): Promise<void> {
    await this.ip('link', 'set', dev, 'up')
  }

  /** PIDs of the processes living in this namespace. */
  async pids (): Promise<number[]> {
    const r = await run('ip', ['netns', 'pids', this.name], { allowFail: true })
    return r.stdout.split(/\s+/).filter(Boolean).map(Number)
  }
}

export async function listNetns (): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { allowFail: true })
  return r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean)
}

export async function createNetns (name: string): Promise<Netns> {
  await run('ip', ['netns', 'add', name])
  const ns = new Netns(name)
  await ns.up('lo')
  return ns
}

/** Kills whatever still runs in the namespace, then deletes it (links go with it). */
export async function deleteNetns (name: string): Promise<void> {
  const ns = new Netns(name)
  for (const pid of await ns.pids()) {
    try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
  }
  await run('ip', ['netns', 'del', name], { allowFail: true })
}

/** A veth pair with one end in each namespace. Names are ≤ 15 characters. */
export async function veth (a: Netns, aIf: string, b: Netns, bIf: string): Promise<void> {
  await run('ip', ['link', 'add', aIf, 'netns', a.name, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name])
  await a.up(aIf)
  await b.up(bIf)
}

/** Synchronous variant for process 'exit' handlers, where nothing async runs. */
export function deleteNetnsSync (name: string): void {
  const r = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' })
  for (const pid of (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number)) {
    try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
  }
  spawnSync('ip', ['netns', 'del', name])
}

/**
 * Tracks namespaces made by one test or lab so that all of them can be removed.
 * Until `destroy()` runs, an 'exit' hook removes them synchronously, so a crash
 * (uncaught exception, failed assertion that exits) leaves nothing behind either.
 */
export class NetnsSet {
  private readonly made: Netns[] = []
  private readonly onExit = (): void => { for (const ns of this.made) deleteNetnsSync(ns.name) }

  constructor (readonly prefix: string) {}

  async create (role: string): Promise<Netns> {
    if (this.made.length === 0) process.on('exit', this.onExit)
    const ns = await createNetns(`${this.prefix}-${role}`)
    this.made.push(ns)
    return ns
  }

  get all (): readonly Netns[] { return this.made }

  async destroy (): Promise<void> {
    for (const ns of this.made.splice(0).reverse()) await deleteNetns(ns.name)
    process.off('exit', this.onExit)
  }
}
