/**
 * The lab's authoritative DNS server: Debian's BIND 9 (`named`), primary for the device
 * zone, changed only by RFC 2136 UPDATEs signed with the relay's TSIG key, and nothing else:
 * no recursion, no forwarders, no rndc channel, listening on one address only. Everything
 * (config, zone, journal, pid file) lives in one directory under the lab's state.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const NAMED_BIN = '/usr/sbin/named'

export interface BindOptions {
  listen: { address: string, port: number }
  zone: string
  /** TSIG key for updates and transfers; secret in base64 (as tsig-keygen prints it). */
  key: { name: string, secret: string }
  /** The zone's name server record. */
  ns: { name: string, address: string }
}

/** Writes named.conf and the zone file into `dir`; returns the named.conf path. */
export function writeBindConfig (dir: string, o: BindOptions): string {
  mkdirSync(dir, { recursive: true })
  const zoneFile = join(dir, `${o.zone}.zone`)
  const v6 = o.listen.address.includes(':')
  writeFileSync(join(dir, 'named.conf'), `// Beckon lab: authoritative only, for ${o.zone}.
options {
  directory "${dir}";
  pid-file "${join(dir, 'named.pid')}";
  session-keyfile "${join(dir, 'session.key')}";
  managed-keys-directory "${dir}";
  listen-on port ${o.listen.port} { ${v6 ? 'none' : o.listen.address}; };
  listen-on-v6 port ${o.listen.port} { ${v6 ? o.listen.address : 'none'}; };
  recursion no;
  allow-recursion { none; };
  allow-query-cache { none; };
  dnssec-validation no;
  notify no;
  allow-transfer { none; };
  allow-update { none; };
  version none;
};
controls { };
key "${o.key.name}" {
  algorithm hmac-sha256;
  secret "${o.key.secret}";
};
zone "${o.zone}" {
  type primary;
  file "${zoneFile}";
  // The relay's key may change every name in the zone; transfers let it reconcile.
  update-policy { grant ${o.key.name} zonesub ANY; };
  allow-transfer { key ${o.key.name}; };
};
logging {
  channel stderr_only { stderr; severity info; print-time yes; print-category yes; };
  category default { stderr_only; };
  category update { stderr_only; };
  category xfer-out { stderr_only; };
  category lame-servers { null; };
};
`, { mode: 0o600 })
  writeFileSync(zoneFile, `$ORIGIN ${o.zone}.
$TTL 30
@   IN SOA ${o.ns.name}. hostmaster.${o.zone}. ( 1 60 30 600 30 )
    IN NS  ${o.ns.name}.
${o.ns.name}. IN ${o.ns.address.includes(':') ? 'AAAA' : 'A'} ${o.ns.address}
`)
  return join(dir, 'named.conf')
}

/** `named` in the foreground, logging to stderr, as root inside its namespace. */
export function namedCommand (conf: string): string[] {
  return [NAMED_BIN, '-g', '-c', conf]
}
