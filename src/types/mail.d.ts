// Minimal types for nodemailer@10 and mailparser@3.9.31 (neither ships any). Only what we use.
declare module 'nodemailer' {
  export interface SendResult { messageId: string, response: string, accepted: unknown[], rejected: unknown[] }
  export interface Transporter {
    sendMail (msg: Record<string, unknown>): Promise<SendResult>
    verify (): Promise<true>
    close (): void
  }
  export function createTransport (options: Record<string, unknown>): Transporter
  const nodemailer: { createTransport: typeof createTransport }
  export default nodemailer
}

declare module 'mailparser' {
  export interface ParsedMail {
    subject?: string
    text?: string
    messageId?: string
    from?: { text: string }
    to?: { text: string } | Array<{ text: string }>
    headers: Map<string, unknown>
  }
  export function simpleParser (source: Buffer | string, options?: Record<string, unknown>): Promise<ParsedMail>
}
