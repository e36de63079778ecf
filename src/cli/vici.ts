/**
 * `beckon vici`: an operator's VICI client.
 *
 *   beckon vici [--socket URI] <command> [--json '{…}']   one command; streamed
 *       commands print each event as a JSON line {"event","message"} before the response
 *   beckon vici [--socket URI] watch [--events a,b]        broadcast events as JSON lines
 */
import type { Command } from 'commander'
import { BeckonError } from '../core/errors.js'
import { sectionToJson, type ViciSection } from '../proto/vici/codec.js'
import { DEFAULT_URI } from '../proto/vici/conn.js'
import { BROADCAST_EVENTS, STREAMED_COMMANDS, ViciSession } from '../proto/vici/session.js'
import { exitWithError, onTerminate } from './output.js'

interface ViciOpts {
  socket?: string
  timeout: string
  json?: string
  events?: string
}

function parseBody (json: string | undefined): Record<string, unknown> {
  if (json === undefined) return {}
  let v: unknown
  try {
    v = JSON.parse(json)
  } catch (err) {
    throw new BeckonError('BECKON_ERR_USAGE', `--json is not valid JSON: ${(err as Error).message}`)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BeckonError('BECKON_ERR_USAGE', '--json must be a JSON object')
  return v as Record<string, unknown>
}

function parseTimeout (s: string): number {
  const n = Number(s)
  if (!Number.isInteger(n) || n <= 0) throw new BeckonError('BECKON_ERR_USAGE', `--timeout must be a positive number of milliseconds, got ${s}`)
  return n
}

function line (obj: string): void {
  process.stdout.write(obj + '\n')
}

async function runCommand (name: string, o: ViciOpts): Promise<void> {
  const body = parseBody(o.json)
  const timeoutMs = parseTimeout(o.timeout)
  const vici = await ViciSession.open({ uri: o.socket ?? process.env.BECKON_VICI_SOCKET ?? DEFAULT_URI, timeoutMs, reconnect: false })
  try {
    const event = STREAMED_COMMANDS[name]
    let response: ViciSection
    if (event === undefined) {
      response = await vici.call(name, body as never, { timeoutMs })
    } else {
      ({ response } = await vici.streamed(name, event, body as never, {
        timeoutMs,
        onEvent: (m) => line(`{"event":${JSON.stringify(event)},"message":${sectionToJson(m)}}`),
      }))
    }
    line(sectionToJson(response, process.stdout.isTTY ? 2 : 0))
  } finally {
    await vici.close()
  }
}

async function watch (o: ViciOpts): Promise<void> {
  const names = o.events === undefined ? [...BROADCAST_EVENTS] : o.events.split(',').map((s) => s.trim()).filter(Boolean)
  if (names.length === 0) throw new BeckonError('BECKON_ERR_USAGE', '--events names no event')
  // Reconnect: a watcher should outlive a charon restart.
  const vici = await ViciSession.open({ uri: o.socket ?? process.env.BECKON_VICI_SOCKET ?? DEFAULT_URI, timeoutMs: parseTimeout(o.timeout) })
  await vici.subscribe(names, (ev) => {
    line(`{"time":${JSON.stringify(new Date().toISOString())},"event":${JSON.stringify(ev.name)},"message":${sectionToJson(ev.message)}}`)
  })
  process.stderr.write(`watching ${names.join(', ')}\n`)
  await new Promise<void>((resolve) => { onTerminate(() => resolve()) })
  await vici.close()
}

export function registerVici (program: Command): void {
  program
    .command('vici')
    .description('send a VICI command to charon and print the result as JSON, or watch events')
    .argument('<command>', 'VICI command (e.g. version, list-sas, load-conn) or "watch"')
    .option('--socket <uri>', `charon's VICI socket (env BECKON_VICI_SOCKET; default ${DEFAULT_URI})`)
    .option('--json <object>', 'request message as a JSON object')
    .option('--timeout <ms>', 'request timeout in milliseconds', '10000')
    .option('--events <list>', `with watch: comma-separated events (default ${BROADCAST_EVENTS.join(',')})`)
    .action(async (command: string, o: ViciOpts) => {
      try {
        if (command === 'watch') await watch(o)
        else await runCommand(command, o)
      } catch (err) {
        exitWithError(err)
      }
    })
}
