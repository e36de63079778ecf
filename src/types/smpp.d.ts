// Minimal types for smpp@0.5.1 (farhadi/node-smpp), which ships none. Only what we use.
declare module 'smpp' {
  import type { EventEmitter } from 'node:events'
  import type { Server as NetServer } from 'node:net'

  export interface PDU {
    command: string
    command_status: number
    sequence_number: number
    system_id?: string
    password?: string
    address_range?: string
    source_addr?: string
    destination_addr?: string
    esm_class?: number
    data_coding?: number
    short_message?: Buffer | { udh?: Buffer[], message: Buffer | string }
    message_id?: string
    isResponse (): boolean
    response (options?: Record<string, unknown>): PDU
  }

  export interface Session extends EventEmitter {
    server?: Server
    socket: import('node:net').Socket
    send (pdu: PDU, cb?: (resp: PDU) => void): boolean
    pause (): void
    resume (): void
    close (cb?: () => void): void
    destroy (cb?: () => void): void
    bind_transmitter (o: Record<string, unknown>, cb: (resp: PDU) => void): boolean
    bind_receiver (o: Record<string, unknown>, cb: (resp: PDU) => void): boolean
    bind_transceiver (o: Record<string, unknown>, cb: (resp: PDU) => void): boolean
    submit_sm (o: Record<string, unknown>, cb: (resp: PDU) => void): boolean
    deliver_sm (o: Record<string, unknown>, cb: (resp: PDU) => void): boolean
    unbind (cb?: (resp: PDU) => void): boolean
    enquire_link (cb?: (resp: PDU) => void): boolean
  }

  export interface Server extends NetServer {
    sessions: Session[]
  }

  export function connect (options: { url: string, auto_enquire_link_period?: number, connectTimeout?: number }, listener?: () => void): Session
  export function createServer (options: Record<string, unknown>, listener?: (s: Session) => void): Server
  export function createServer (listener?: (s: Session) => void): Server

  export const ESME_ROK: number
  export const ESME_RBINDFAIL: number
  export const ESME_RINVPASWD: number
  export const ESME_RINVSYSID: number
  export const ESME_RALYBND: number
  export const ESME_RINVBNDSTS: number
  export const ESME_RSYSERR: number
  export const ESME_RINVDSTADR: number
  export const ESME_RMSGQFUL: number
  export const ESME_RX_T_APPN: number
}
