// Secrets never reach the logs.
import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger } from '../../../src/core/log.js'

t.test('redacts secrets at any depth up to three levels', async (t) => {
  const lines: string[] = []
  const sink = new Writable({ write (chunk, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const log = createLogger({ destination: sink, level: 'info', name: 'test' })
  log.info({
    password: 'hunter2',
    psk: 'pre-shared',
    conf: { secret: 'deep', nested: { sessionKey: 'k'.repeat(8), token: 'tok' } },
    headers: { authorization: 'Basic abc', 'proxy-authorization': 'Basic def' },
    req: { headers: { 'proxy-authorization': 'Bearer xyz' } },
    keep: 'visible',
  }, 'hello')
  const out = lines.join('')
  for (const s of ['hunter2', 'pre-shared', 'deep', 'kkkkkkkk', 'tok"', 'Basic abc', 'Basic def', 'Bearer xyz']) {
    t.notOk(out.includes(s), `${s} is not in the log`)
  }
  t.match(out, /"keep":"visible"/)
  t.match(out, /"role":"test"/)
  t.match(out, /\[redacted\]/)
})
