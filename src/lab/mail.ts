/**
 * The lab's mail node: Postfix (SMTP 25, submission 587 with STARTTLS + SASL) delivering
 * over LMTP into Dovecot (IMAPS 993), both from Debian's packages, each with a private
 * configuration, queue and state under the lab's state directory so that several labs,
 * and the host's own mail system, never meet.
 *
 *   relay ──submission 587 (STARTTLS, AUTH)──▶ postfix ──lmtp──▶ dovecot ◀──IMAPS 993 (IDLE)── gateway
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BeckonError } from '../core/errors.js'

export const MAIL_DOMAIN = 'lab.beckon.example'

export interface MailAccount { user: string, password: string }

export interface MailLayout {
  dir: string
  postfixConfig: string
  dovecotConfig: string
  spool: string
}

function uidOf (name: string): number {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' })
  if (r.status !== 0) throw new BeckonError('BECKON_ERR_LAB', `no system user ${name} (install postfix and dovecot-imapd)`)
  return Number(r.stdout.trim())
}

function gidOf (name: string): number {
  const r = spawnSync('getent', ['group', name], { encoding: 'utf8' })
  if (r.status !== 0) throw new BeckonError('BECKON_ERR_LAB', `no system group ${name}`)
  return Number(r.stdout.split(':')[2])
}

function doveadmHash (password: string): string {
  const r = spawnSync('doveadm', ['pw', '-s', 'SHA512-CRYPT', '-p', password], { encoding: 'utf8' })
  if (r.status !== 0) throw new BeckonError('BECKON_ERR_LAB', `doveadm pw: ${r.stderr.trim()}`)
  return r.stdout.trim()
}

/** Writes both servers' configurations; `listen` is the mail node's address. */
export function writeMailConfig (dir: string, listen: string, tls: { cert: string, key: string }, accounts: MailAccount[]): MailLayout {
  const d = (p: string): string => join(dir, p)
  for (const p of ['postfix', 'spool', 'data', 'dovecot/run', 'dovecot/state', 'boxes']) mkdirSync(d(p), { recursive: true })
  chownSync(d('data'), uidOf('postfix'), gidOf('postfix'))
  chownSync(d('boxes'), 65534, 65534)

  // master.cf: Debian's, with every service out of chroot (no chroot tree here), plus submission.
  const master = readFileSync('/etc/postfix/master.cf', 'utf8').split('\n').map((l) => {
    const f = l.split(/\s+/)
    return /^[a-z]/.test(l) && f.length >= 8 ? [f[0], f[1], f[2], f[3], 'n', ...f.slice(5)].join(' ') : l
  })
  writeFileSync(d('postfix/master.cf'), [...master,
    'submission inet n - n - - smtpd',
    '  -o syslog_name=postfix/submission',
    '  -o smtpd_tls_security_level=encrypt',
    '  -o smtpd_sasl_auth_enable=yes',
    '  -o smtpd_tls_auth_only=yes',
    '  -o smtpd_client_restrictions=permit_sasl_authenticated,reject',
    '  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject',
    ''].join('\n'))
  writeFileSync(d('postfix/main.cf'), [
    'compatibility_level = 3.6',
    `queue_directory = ${d('spool')}`,
    `data_directory = ${d('data')}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    `myhostname = mail.${MAIL_DOMAIN}`,
    `mydomain = ${MAIL_DOMAIN}`,
    `inet_interfaces = ${listen.includes(':') ? `[${listen}]` : listen}`,
    `inet_protocols = ${listen.includes(':') ? 'ipv6' : 'ipv4'}`,
    'mydestination =',
    'alias_maps =',
    'alias_database =',
    `virtual_mailbox_domains = ${MAIL_DOMAIN}`,
    'virtual_transport = lmtp:unix:private/dovecot-lmtp',
    'smtpd_sasl_type = dovecot',
    'smtpd_sasl_path = private/auth',
    'smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination',
    `smtpd_tls_cert_file = ${tls.cert}`,
    `smtpd_tls_key_file = ${tls.key}`,
    'smtpd_tls_security_level = may',
    'maillog_file = /dev/stdout',
    '',
  ].join('\n'))

  const users = d('dovecot/users')
  writeFileSync(users, accounts.map((a) => `${a.user}:${doveadmHash(a.password)}\n`).join(''))
  chownSync(users, 0, gidOf('dovecot'))
  chmodSync(users, 0o640)
  writeFileSync(d('dovecot/dovecot.conf'), [
    `base_dir = ${d('dovecot/run')}`,
    `state_dir = ${d('dovecot/state')}`,
    `instance_name = beckon-${Buffer.from(dir).toString('hex').slice(-12)}`,
    'protocols = imap lmtp',
    `listen = ${listen}`,
    'log_path = /dev/stderr',
    'ssl = required',
    `ssl_cert = <${tls.cert}`,
    `ssl_key = <${tls.key}`,
    'disable_plaintext_auth = yes',
    'auth_mechanisms = plain login',
    'first_valid_uid = 100',
    `mail_location = maildir:${d('boxes')}/%u`,
    'passdb {',
    '  driver = passwd-file',
    `  args = scheme=SHA512-CRYPT ${users}`,
    '}',
    'userdb {',
    '  driver = static',
    `  args = uid=65534 gid=65534 home=${d('boxes')}/%u`,
    '}',
    'namespace inbox {',
    '  inbox = yes',
    '  separator = /',
    '}',
    'service imap-login {',
    '  inet_listener imap {',
    '    port = 0',
    '  }',
    '  inet_listener imaps {',
    '    port = 993',
    '    ssl = yes',
    '  }',
    '}',
    'service lmtp {',
    `  unix_listener ${d('spool')}/private/dovecot-lmtp {`,
    '    user = postfix',
    '    group = postfix',
    '    mode = 0600',
    '  }',
    '}',
    'service auth {',
    `  unix_listener ${d('spool')}/private/auth {`,
    '    user = postfix',
    '    group = postfix',
    '    mode = 0660',
    '  }',
    '}',
    'protocol lmtp {',
    '  auth_username_format = %Lu',
    '}',
    '',
  ].join('\n'))
  return { dir, postfixConfig: d('postfix'), dovecotConfig: d('dovecot/dovecot.conf'), spool: d('spool') }
}
