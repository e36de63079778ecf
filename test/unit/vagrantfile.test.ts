// The Vagrantfile is the lab on VMs: same machines, addresses and carrier firewall rules,
// each Beckon machine provisioned by install.sh with its role; `vagrant validate` accepts it.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ADDRESSES, FIREWALL_RULES } from '../../src/lab/lab.js'

const repo = fileURLToPath(new URL('../..', import.meta.url))
const vagrantfile = readFileSync(`${repo}/Vagrantfile`, 'utf8')

t.test('machines and addresses are the lab\'s', async (t) => {
  const machines = new Map([...vagrantfile.matchAll(/^\s*"([a-z-]+)"\s*=> \{ ips: \[([^\]]*)\], nets: \[[^\]]*\], role: ("?[a-z]*"?|nil)/gm)]
    .map((m) => [m[1]!, { ips: [...m[2]!.matchAll(/"([\d.]+)"/g)].map((x) => x[1]), role: m[3]!.replaceAll('"', '') }]))
  t.same([...machines.keys()].sort(), Object.keys(ADDRESSES).sort())
  for (const [name, ifs] of Object.entries(ADDRESSES)) {
    t.same(machines.get(name)?.ips, Object.values(ifs).map((a) => a.split('/')[0]), `${name}: addresses`)
  }
  t.same(Object.fromEntries([...machines].filter(([, m]) => m.role !== 'nil').map(([n, m]) => [n, m.role])),
    { client: 'client', relay: 'relay', gateway: 'gateway', terminal: 'agent' }, 'roles')
  t.match(vagrantfile, /path: "appliance\/install\.sh", args: \["--source", "\/opt\/beckon-src", spec\[:role\]\]/)
  t.match(vagrantfile, /config\.vm\.provider "libvirt"/)
  t.match(vagrantfile, /config\.vm\.provider "virtualbox"/)
})

t.test('carrier-fw carries the lab\'s rules (inet0→eth1, carr0→eth2, plus vagrant management)', async (t) => {
  const block = /FIREWALL_RULES = <<~NFT\n([\s\S]*?)\nNFT/.exec(vagrantfile)![1]!
  const norm = (s: string): string[] => s.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.includes('vagrant management'))
  t.same(norm(block), norm(FIREWALL_RULES.replaceAll('"inet0"', '"eth1"').replaceAll('"carr0"', '"eth2"')))
})

const hasVagrant = spawnSync('sh', ['-c', 'command -v vagrant']).status === 0
t.test('vagrant validate --ignore-provider', { skip: hasVagrant ? false : 'vagrant not installed (apt-get install --no-install-recommends vagrant)' }, async (t) => {
  // validate leaves a .vagrant/ behind in the checkout; remove it unless it was there.
  const had = existsSync(`${repo}/.vagrant`)
  t.teardown(() => { if (!had) rmSync(`${repo}/.vagrant`, { recursive: true, force: true }) })
  const r = spawnSync('vagrant', ['validate', '--ignore-provider'], { cwd: repo, encoding: 'utf8', timeout: 120_000, env: { ...process.env, VAGRANT_CHECKPOINT_DISABLE: '1' } })
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.match(r.stdout, /Vagrantfile validated successfully/)
})
