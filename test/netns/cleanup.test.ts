// A process that crashes after building namespaces and starting charon leaves nothing.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { listNetns } from '../../src/lab/netns.js'
import { waitFor } from '../../src/core/exec.js'
import { requireRoot } from '../helpers/charon-pair.js'

if (!requireRoot(t)) process.exit(1)

t.test('crash after setup: namespaces, charon and its /run mount are gone', async (t) => {
  const prefix = `bkcrash${process.pid % 10000}`
  const runMounts = (): number => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === '/run').length
  const mountsBefore = runMounts()
  const fixture = fileURLToPath(new URL('../fixtures/crash-after-setup.mjs', import.meta.url))
  const r = spawnSync(process.execPath, [fixture, prefix], { encoding: 'utf8', timeout: 60_000 })
  t.not(r.status, 0, 'the fixture crashed')
  t.match(r.stderr, /simulated crash after setup/)
  const made = JSON.parse(r.stdout.trim().split('\n')[0]!) as { netns: string, pid: number }
  t.equal(made.netns, `${prefix}-x`)
  t.notOk((await listNetns()).some((n) => n.startsWith(prefix)), 'no namespace left')
  const gone = (): boolean => { try { process.kill(made.pid, 0); return false } catch { return true } }
  // SIGKILL is delivered asynchronously; give the kernel a bounded moment to reap.
  await t.resolves(waitFor(`charon pid ${made.pid} to exit`, gone, 5_000), `charon (pid ${made.pid}) is gone`)
  // The tmpfs on /run lived in charon's private mount namespace; none reaches ours.
  t.equal(runMounts(), mountsBefore, 'no /run mount added to the host mount namespace')
})
