/**
 * Running host tools (ip, nft, pki, openssl) with their stderr turned into coded errors.
 */
import { spawn } from 'node:child_process'
import { BeckonError } from '../core/errors.js'

export interface RunResult {
  code: number
  stdout: string
  stderr: string
  /** With `binary`: stdout as bytes. */
  stdoutBytes?: Buffer
}

export interface RunOptions {
  input?: string | Buffer
  /** Keep stdout as bytes too (DER, keys). */
  binary?: boolean
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFail?: boolean
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
}

export function run (cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { out.push(d) })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(new BeckonError('BECKON_ERR_LAB', `${cmd}: ${err.message}`, { cause: err }))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const bytes = Buffer.concat(out)
      const stdout = bytes.toString('utf8')
      const res: RunResult = { code: code ?? (signal === null ? 1 : 128), stdout, stderr, ...(opts.binary === true ? { stdoutBytes: bytes } : {}) }
      if (res.code !== 0 && opts.allowFail !== true) {
        reject(new BeckonError('BECKON_ERR_LAB', `${cmd} ${args.join(' ')} exited ${res.code}: ${stderr.trim() || stdout.trim()}`))
      } else resolve(res)
    })
    // A tool that exits before reading stdin must not turn into an EPIPE crash.
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}

/** Polls `probe` until it returns true or `timeoutMs` passes; never a fixed sleep. */
export async function waitFor (what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let delay = 10
  for (;;) {
    if (await probe()) return
    if (Date.now() > deadline) throw new BeckonError('BECKON_ERR_LAB', `timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, 200)
  }
}
