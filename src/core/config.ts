/**
 * Role configuration: one YAML file per role, every key overridable from the
 * environment, validated at start with a message that names the key.
 *
 * Environment: BECKON_<ROLE>_<KEY>, nested keys joined by `__`, values parsed as YAML
 * scalars:  BECKON_RELAY_CLIENT_LISTEN=0.0.0.0:8443   BECKON_GATEWAY_SMPP__URL=smpp://…
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { parse as parseYaml } from 'yaml'
import { BeckonError } from './errors.js'

export type Obj = Record<string, unknown>

export function readYamlFile (path: string): Obj {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new BeckonError('BECKON_ERR_CONFIG', `cannot read ${path}: ${(err as Error).message}`)
  }
  let v: unknown
  try {
    // maxAliasCount bounds alias expansion (billion laughs); checkTree refuses cycles.
    v = parseYaml(text, { maxAliasCount: 100 })
  } catch (err) {
    throw new BeckonError('BECKON_ERR_CONFIG', `${path}: ${(err as Error).message}`)
  }
  if (v === null || v === undefined) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw new BeckonError('BECKON_ERR_CONFIG', `${path}: top level must be a mapping`)
  checkTree(v, path)
  return v as Obj
}

/** How deep a configuration may nest; real files stay under 6. */
export const MAX_CONFIG_DEPTH = 32

/**
 * YAML aliases may point at a node that contains them (`a: &x [*x]`), which parses
 * into a cyclic object that every later reader would recurse into forever. Refuse
 * cycles and absurd nesting here, iteratively, naming where.
 */
export function checkTree (root: object, path: string): void {
  const stack: Array<[unknown, string, number, object[]]> = [[root, path, 0, []]]
  while (stack.length > 0) {
    const [v, at, depth, above] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (above.includes(v)) throw new BeckonError('BECKON_ERR_CONFIG', `${at}: an alias refers to a node that contains it`)
    if (depth > MAX_CONFIG_DEPTH) throw new BeckonError('BECKON_ERR_CONFIG', `${at}: nested deeper than ${MAX_CONFIG_DEPTH} levels`)
    const chain = [...above, v]
    for (const [k, child] of Object.entries(v)) stack.push([child, Array.isArray(v) ? `${at}[${k}]` : `${at}.${k}`, depth + 1, chain])
  }
}

/** Applies BECKON_<ROLE>_* variables onto `obj` (in place) and returns it. */
export function applyEnv (obj: Obj, role: string, env: NodeJS.ProcessEnv = process.env): Obj {
  const prefix = `BECKON_${role.toUpperCase()}_`
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(prefix) || raw === undefined) continue
    const path = name.slice(prefix.length).split('__').map((p) => p.toLowerCase())
    if (path.some((p) => p === '')) continue
    let cur = obj
    for (const key of path.slice(0, -1)) {
      const next = cur[key]
      if (next === undefined || next === null) cur[key] = {}
      else if (typeof next !== 'object' || Array.isArray(next)) throw new BeckonError('BECKON_ERR_CONFIG', `${name}: ${key} is not a mapping`)
      cur = cur[key] as Obj
    }
    let value: unknown
    try { value = parseYaml(raw) } catch { value = raw }
    cur[path[path.length - 1]!] = value ?? raw
  }
  return obj
}

export function loadRoleConfig (role: string, path: string | undefined, env: NodeJS.ProcessEnv = process.env): Obj {
  return applyEnv(path === undefined ? {} : readYamlFile(path), role, env)
}

/** The longest delay node's setTimeout honours (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Typed reads from an untrusted mapping; each error names the full key path.
 * `Fields.of(obj, 'relay.yaml')` then `.str('listen')`, `.sub('smpp')` …
 */
export class Fields {
  constructor (readonly obj: Obj, readonly path: string) {}

  static of (v: unknown, path: string): Fields {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BeckonError('BECKON_ERR_CONFIG', `${path} must be a mapping`)
    return new Fields(v as Obj, path)
  }

  private at (key: string): string { return `${this.path}.${key}` }

  private fail (key: string, want: string): never {
    const got = this.obj[key]
    throw new BeckonError('BECKON_ERR_CONFIG', `${this.at(key)} must be ${want} (got ${got === undefined ? 'nothing' : JSON.stringify(got)})`)
  }

  /** Refuses keys this mapping does not know: a typo must not pass unnoticed. */
  only (keys: readonly string[]): this {
    for (const k of Object.keys(this.obj)) {
      if (!keys.includes(k)) throw new BeckonError('BECKON_ERR_CONFIG', `${this.at(k)}: unknown key (known: ${keys.join(', ')})`)
    }
    return this
  }

  has (key: string): boolean { return this.obj[key] !== undefined && this.obj[key] !== null }

  str (key: string, def?: string): string {
    const v = this.obj[key]
    if (v === undefined || v === null) return def ?? this.fail(key, 'a string')
    if (typeof v === 'number') return String(v)
    if (typeof v !== 'string' || v === '') this.fail(key, 'a non-empty string')
    return v
  }

  optStr (key: string): string | undefined {
    return this.has(key) ? this.str(key) : undefined
  }

  num (key: string, def?: number, min = -Infinity, max = Infinity): number {
    const v = this.obj[key]
    if (v === undefined || v === null) return def ?? this.fail(key, 'a number')
    const n = typeof v === 'string' ? Number(v) : v
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) this.fail(key, `a number in [${min}, ${max}]`)
    return n
  }

  bool (key: string, def?: boolean): boolean {
    const v = this.obj[key]
    if (v === undefined || v === null) return def ?? this.fail(key, 'true or false')
    if (typeof v !== 'boolean') this.fail(key, 'true or false')
    return v
  }

  /**
   * Durations: a number of milliseconds, or "250ms", "30s", "5m", "1h". At most
   * MAX_TIMER_MS: node's timers take a signed 32-bit delay and fire at once beyond it.
   */
  ms (key: string, def?: number, max = MAX_TIMER_MS): number {
    const v = this.obj[key]
    if (v === undefined || v === null) return def ?? this.fail(key, 'a duration')
    let n: number
    if (typeof v === 'number') n = Math.round(v)
    else {
      const m = typeof v === 'string' ? /^(\d{1,15}(?:\.\d{1,6})?)(ms|s|m|h)$/.exec(v) : null
      if (m === null) this.fail(key, 'a duration like 250ms, 30s, 5m or 1h')
      n = Math.round(Number(m[1]) * { ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[m[2] as 'ms' | 's' | 'm' | 'h'])
    }
    if (!Number.isFinite(n) || n < 0 || n > max) this.fail(key, `a duration of at most ${max} ms`)
    return n
  }

  /** host:port or [v6]:port. */
  hostPort (key: string, def?: string): { host: string, port: number } {
    const s = this.str(key, def)
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s)
    const port = m === null ? NaN : Number(m[3])
    if (m === null || port > 65535) this.fail(key, 'host:port (IPv6 as [addr]:port)')
    return { host: (m[1] ?? m[2])!, port }
  }

  ip (key: string, def?: string): string {
    const s = this.str(key, def)
    if (isIP(s) === 0) this.fail(key, 'an IP address')
    return s
  }

  strList (key: string, def?: string[]): string[] {
    const v = this.obj[key]
    if (v === undefined || v === null) return def ?? this.fail(key, 'a list of strings')
    if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean)
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' || typeof x === 'number')) this.fail(key, 'a list of strings')
    return v.map(String)
  }

  sub (key: string): Fields {
    if (!this.has(key)) return new Fields({}, this.at(key))
    return Fields.of(this.obj[key], this.at(key))
  }

  list (key: string): Fields[] {
    const v = this.obj[key]
    if (v === undefined || v === null) return []
    if (!Array.isArray(v)) this.fail(key, 'a list')
    return v.map((item, i) => Fields.of(item, `${this.at(key)}[${i}]`))
  }

  /** A mapping of name → mapping, e.g. devices: { patient-phone: {…} }. */
  entries (key: string): Array<[string, Fields]> {
    const v = this.obj[key]
    if (v === undefined || v === null) return []
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'a mapping of names')
    return Object.entries(v as Obj).map(([k, item]) => [k, Fields.of(item, `${this.at(key)}.${k}`)])
  }
}
