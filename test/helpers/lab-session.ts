/**
 * A namespace lab for one test file, and `beckon connect` sessions in its client node:
 * up in the first test, down in the teardown (also when a test fails), every spawned
 * process killed.
 */
import type { Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitFor } from '../../src/core/exec.js'
import { onJsonLines } from '../../src/core/lines.js'
import { readLabState, stopRole, type LabState } from '../../src/lab/lab.js'
import { ViciSession } from '../../src/proto/vici/session.js'
import { BECKON, beckon, type CliResult } from './cli.js'

export interface Stage extends Record<string, unknown> { stage?: string, error?: { code: string, message: string } }

export interface Session {
  proc: ChildProcess
  stages: Stage[]
  /** Resolves when the process exits. */
  exited: Promise<number | null>
}

export class LabHarness {
  readonly stateDir: string
  readonly args: string[]
  private readonly children: ChildProcess[] = []
  st!: LabState

  constructor (t: Test, short: string) {
    const prefix = `${short}${process.pid % 10000}`
    this.stateDir = mkdtempSync(join(tmpdir(), `beckon-${short}-`))
    this.args = ['--state-dir', this.stateDir, '--prefix', prefix]
    t.teardown(async () => {
      for (const c of this.children) c.kill('SIGKILL')
      await beckon(['lab', 'down', ...this.args])
    })
  }

  async up (extra: string[] = []): Promise<CliResult> {
    const r = await beckon(['lab', 'up', ...this.args, '--json', ...extra], { timeoutMs: 120_000 })
    if (r.status === 0) this.st = readLabState(this.stateDir)
    return r
  }

  inNode (node: string, argv: string[], timeoutMs = 30_000): Promise<CliResult> {
    return beckon(['lab', 'exec', ...this.args, node, '--', ...argv], { timeoutMs })
  }

  /** `beckon connect <device>` in IPsec mode from the client node, as `user`. */
  start (user?: { name: string, password: string }, device = 'patient-phone', env: Record<string, string> = {}): Session {
    const args = ['lab', 'exec', ...this.args, 'client', '--', process.execPath, BECKON, 'connect', device, '--json']
    if (user !== undefined) args.push('--user', user.name)
    const proc = spawn(process.execPath, [BECKON, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env, ...(user === undefined ? {} : { BECKON_PASSWORD: user.password }) } })
    this.children.push(proc)
    const stages: Stage[] = []
    onJsonLines(proc.stderr!, (v, line) => stages.push(v ?? { raw: line }))
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    return { proc, stages, exited }
  }

  /** Starts a session and waits for its tunnel. */
  async connect (user?: { name: string, password: string }, device?: string, env?: Record<string, string>): Promise<Session> {
    const s = this.start(user, device, env)
    await waitFor('the IPsec tunnel', () => {
      const err = s.stages.find((x) => x.error !== undefined)
      if (err !== undefined) throw new Error(`beckon connect failed: ${JSON.stringify(err)}`)
      return s.stages.some((x) => x.stage === 'tunnel-up')
    }, 30_000)
    return s
  }

  /** Starts a session that must fail; resolves with its coded error. */
  async refused (user?: { name: string, password: string }): Promise<{ code: string, message: string }> {
    const s = this.start(user)
    await Promise.race([s.exited, new Promise((_r, reject) => setTimeout(() => reject(new Error('beckon connect did not end')), 30_000))])
    const err = s.stages.find((x) => x.error !== undefined)?.error
    if (err === undefined) throw new Error(`expected a refusal, got ${JSON.stringify(s.stages)}`)
    return err
  }

  async stop (s: Session): Promise<void> {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) return
    s.proc.kill('SIGTERM')
    await s.exited
  }

  /** curl the glucose log at the terminal's permanent address from the client node. */
  get (path = '/glucose'): Promise<CliResult> {
    return this.inNode('client', ['curl', '-sS', '-m', '5', `http://[${this.st.terminal.permanentAddress}]:8080${path}`])
  }

  /**
   * Replaces the sink on the terminal (port 9000, allowed by the policy of a lab started
   * with --with-sink) by a server of one random file; returns the file's path and SHA-256.
   */
  async serveFile (size: number): Promise<{ path: string, sha: string, port: number }> {
    const path = join(this.stateDir, 'source.bin')
    writeFileSync(path, randomBytes(size))
    await stopRole(this.st, 'sink')
    const srv = spawn('ip', ['netns', 'exec', this.st.nodes.terminal.netns, process.execPath, '-e',
      `const fs=require('fs');require('http').createServer((q,s)=>{s.writeHead(200,{'content-length':${size}});fs.createReadStream(${JSON.stringify(path)}).pipe(s)}).listen(9000,'::',()=>console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.children.push(srv)
    await new Promise((resolve) => srv.stdout!.once('data', resolve))
    return { path, sha: sha256(path), port: 9000 }
  }

  /** curl of the served file in the client node, rate-limited so faults land mid-transfer. */
  download (out: string, port = 9000, rate = '4M'): { done: Promise<number | null>, size: () => number } {
    const p = spawn('ip', ['netns', 'exec', this.st.nodes.client.netns, 'curl', '-sS', '--limit-rate', rate, '-m', '150', '-o', out, `http://[${this.st.terminal.permanentAddress}]:${port}/file`], { stdio: ['ignore', 'ignore', 'inherit'] })
    this.children.push(p)
    return {
      done: new Promise((resolve) => p.once('exit', (code) => resolve(code))),
      size: () => existsSync(out) ? statSync(out).size : 0,
    }
  }

  /** The IKE and CHILD SPIs on the client's and the terminal's charon. */
  async spis (): Promise<string[]> {
    return [...(await spisAt(this.st.ipsec.clientVici)).map((s) => `client ${s}`), ...(await spisAt(this.st.ipsec.terminalVici)).map((s) => `terminal ${s}`)]
  }
}

export const sha256 = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex')

export async function spisAt (uri: string): Promise<string[]> {
  const v = await ViciSession.open({ uri, reconnect: false })
  try {
    const sas = await v.listSas()
    return sas.flatMap((sa) => [`ike ${String(sa.raw.get('initiator-spi'))}/${String(sa.raw.get('responder-spi'))}`, ...sa.children.map((c) => `child ${c.spiIn ?? '?'}/${c.spiOut ?? '?'}`)])
  } finally { await v.close() }
}
