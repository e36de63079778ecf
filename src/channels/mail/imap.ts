/**
 * Receiving signals by e-mail: the gateway's mailbox over IMAP with TLS (imapflow),
 * an outbound connection that idles (RFC 2177) and reconnects with backoff.
 *
 * Every message in INBOX is decided once and filed before anything is dialled:
 *   valid signal          → moved to Processed, then the dial-out starts
 *   anything else         → moved to Quarantine, logged with its code
 * So a message is acted on at most once, across restarts too: whatever is still in
 * INBOX after a crash was never acted on, and is decided when the gateway comes back.
 */
import { ImapFlow } from 'imapflow'
import { simpleParser } from 'mailparser'
import { BeckonError, toBeckonError } from '../../core/errors.js'
import { silentLogger, type Logger } from '../../core/log.js'
import { tokenFromText } from './format.js'

export interface ImapOptions {
  host: string
  port: number
  user: string
  password: string
  ca?: Buffer
  inbox?: string
  processed?: string
  quarantine?: string
  reconnect?: { initialMs: number, maxMs: number }
  log?: Logger
}

export interface MailMeta {
  channel: 'email'
  uid: number
  messageId: string | undefined
  from: string | undefined
}

/** The gateway's decision on one token; `then` runs after the message is filed. */
export type Verdict = { ok: true, then: () => Promise<void> } | { ok: false, error: BeckonError }

export interface InboxStats { processed: number, quarantined: number, connects: number }

const MAX_MESSAGE = 256 * 1024
/** Messages decided per pass; a fuller mailbox is drained in several passes. */
const BATCH = 50

export class MailInbox {
  readonly stats: InboxStats = { processed: 0, quarantined: 0, connects: 0 }
  private client: ImapFlow | undefined
  private stopped = true
  private backoffMs = 0
  private timer: NodeJS.Timeout | undefined
  private running = false
  private again = false
  private readonly log: Logger
  private readonly folders: { inbox: string, processed: string, quarantine: string }

  constructor (private readonly o: ImapOptions, private readonly decide: (token: Buffer, meta: MailMeta) => Verdict, private readonly onInvalid: (err: BeckonError, meta: MailMeta) => void) {
    this.log = (o.log ?? silentLogger).child({ imap: `${o.host}:${o.port}`, mailbox: o.user })
    this.folders = { inbox: o.inbox ?? 'INBOX', processed: o.processed ?? 'Processed', quarantine: o.quarantine ?? 'Quarantine' }
  }

  get connected (): boolean { return this.client?.usable === true }

  start (): void {
    if (!this.stopped) return
    this.stopped = false
    void this.connect()
  }

  private async connect (): Promise<void> {
    const client = new ImapFlow({
      host: this.o.host,
      port: this.o.port,
      secure: true,
      tls: { ca: this.o.ca, servername: this.o.host },
      auth: { user: this.o.user, pass: this.o.password },
      logger: false,
      emitLogs: false,
      // IDLE again right after every command: the default waits 15 s, and a signal that
      // arrives meanwhile would wait with it.
      autoIdleDelay: 0,
    } as ConstructorParameters<typeof ImapFlow>[0])
    this.client = client
    client.on('error', (err: Error) => this.log.warn({ err: err.message }, 'imap error'))
    client.on('close', () => this.onClose(client))
    client.on('exists', () => { void this.drain() })
    try {
      await client.connect()
      for (const f of [this.folders.processed, this.folders.quarantine]) {
        await client.mailboxCreate(f).catch(() => { /* exists already */ })
      }
      await client.mailboxOpen(this.folders.inbox)
      this.backoffMs = 0
      this.stats.connects++
      this.log.info('imap: mailbox open, idling')
      await this.drain()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'imap: connect failed')
      client.close()
    }
  }

  private onClose (client: ImapFlow): void {
    if (this.client !== client) return
    this.client = undefined
    if (this.stopped) return
    const p = this.o.reconnect ?? { initialMs: 250, maxMs: 10_000 }
    this.backoffMs = this.backoffMs === 0 ? p.initialMs : Math.min(this.backoffMs * 2, p.maxMs)
    this.log.info({ delayMs: this.backoffMs }, 'imap: reconnecting')
    this.timer = setTimeout(() => { this.timer = undefined; if (!this.stopped) void this.connect() }, this.backoffMs)
  }

  /** Decides and files every message in INBOX; one run at a time, re-run on new mail. */
  private async drain (): Promise<void> {
    if (this.running) { this.again = true; return }
    this.running = true
    try {
      do {
        this.again = false
        await this.drainOnce()
      } while (this.again && this.client?.usable === true)
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'imap: processing failed; will retry on reconnect or new mail')
    } finally {
      this.running = false
    }
  }

  private async drainOnce (): Promise<void> {
    const client = this.client
    if (client?.usable !== true) return
    const lock = await client.getMailboxLock(this.folders.inbox)
    const after: Array<() => Promise<void>> = []
    try {
      const box = client.mailbox
      if (box === false || box.exists === 0) return
      // UIDs and sizes only (bounded batch); each source is fetched on its own, and an
      // oversized message is quarantined without ever being downloaded.
      const all: Array<{ uid: number, size: number }> = []
      for await (const m of client.fetch('1:*', { uid: true, size: true })) all.push({ uid: m.uid, size: m.size ?? 0 })
      const msgs = all.slice(0, BATCH)
      if (all.length > BATCH) this.again = true
      for (const m of msgs) {
        const meta: MailMeta = { channel: 'email', uid: m.uid, messageId: undefined, from: undefined }
        let verdict: Verdict
        try {
          if (m.size > MAX_MESSAGE) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', `message of ${m.size} bytes exceeds ${MAX_MESSAGE}`)
          const one = await client.fetchOne(String(m.uid), { source: true }, { uid: true })
          if (one === false || one === undefined || one.source === undefined) throw new BeckonError('BECKON_ERR_MAIL_MALFORMED', 'message vanished before it was read')
          const parsed = await simpleParser(one.source, { skipHtmlToText: true, skipImageLinks: true })
          meta.messageId = parsed.messageId
          meta.from = parsed.from?.text
          verdict = this.decide(tokenFromText(parsed.text), meta)
        } catch (err) {
          verdict = { ok: false, error: toBeckonError(err, 'BECKON_ERR_MAIL_MALFORMED') }
          this.onInvalid(verdict.error, meta)
        }
        // File first, act after: a crash in between loses the session, never repeats it.
        await client.messageMove(String(m.uid), verdict.ok ? this.folders.processed : this.folders.quarantine, { uid: true })
        if (verdict.ok) { this.stats.processed++; after.push(verdict.then) } else this.stats.quarantined++
      }
    } finally {
      lock.release()
    }
    for (const fn of after) void fn()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    const c = this.client
    this.client = undefined
    if (c?.usable === true) await c.logout().catch(() => c.close())
    else c?.close()
  }
}
