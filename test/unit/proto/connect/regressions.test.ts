// Defects an outside fuzz run found in the client's CONNECT response reader.
import t from 'tap'
import type { Test } from 'tap'
import net, { type AddressInfo } from 'node:net'
import { readResponse } from '../../../../src/proto/connect/connect.js'

async function answer (t: Test, text: string, end = false): Promise<net.Socket> {
  const srv = net.createServer((s) => { s.on('error', () => {}); if (end) s.end(text); else s.write(text) })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const c = net.connect((srv.address() as AddressInfo).port, '127.0.0.1')
  c.on('error', () => {})
  t.teardown(() => { c.destroy(); srv.close() })
  return c
}

t.test('a fractional Content-Length is refused at once, not waited on until the timeout', async (t) => {
  for (const cl of ['0.5', '1e2', '-1', ' 5x', '0x10']) {
    const start = Date.now()
    await t.rejects(readResponse(await answer(t, `HTTP/1.1 403 Forbidden\r\nContent-Length: ${cl}\r\n\r\n`), 3000), { code: 'BECKON_ERR_PROTOCOL', message: /bad Content-Length/ }, cl)
    t.ok(Date.now() - start < 1000, `${cl}: answered promptly`)
  }
  const r = await readResponse(await answer(t, 'HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\n\r\n{"code":"X","mes', true), 3000)
  t.equal(r.status, 403, 'a body cut short by the end of the stream leaves only the status')
  t.equal(r.error, undefined)
  const n = await readResponse(await answer(t, 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nnull'), 3000)
  t.equal(n.error, undefined, 'a JSON null body is no crash')
})
