/** Runs the built `beckon` command (npm test builds dist/ first). */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const BECKON = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export interface CliResult { status: number | null, stdout: string, stderr: string }

/** Asynchronous on purpose: in-process fake servers must keep running meanwhile. */
export function beckon (args: string[], opts: { env?: NodeJS.ProcessEnv, netns?: string, timeoutMs?: number } = {}): Promise<CliResult> {
  const child = beckonAsync(args, opts)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
  return new Promise((resolve) => child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }) }))
}

export function beckonAsync (args: string[], opts: { env?: NodeJS.ProcessEnv, netns?: string } = {}): ChildProcess {
  const cmd = opts.netns === undefined ? process.execPath : 'ip'
  const argv = opts.netns === undefined ? [BECKON, ...args] : ['netns', 'exec', opts.netns, process.execPath, BECKON, ...args]
  return spawn(cmd, argv, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
}
