// Golden wire bytes for every VICI packet type and element type.
// Sources: strongSwan 5.9.8 src/libcharon/plugins/vici/README.md, vici_message.h,
// vici_socket.h; the version/register captures are from a real charon on this machine.
import t from 'tap'
import {
  PacketType, decodePacket, encodePacket, encodeMessage, decodeMessage, sectionToJson,
  type Packet,
} from '../../src/proto/vici/codec.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex')
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex')

function golden (name: string, packet: Packet, bytes: Buffer): void {
  t.test(name, async (t) => {
    t.same(encodePacket(packet).toString('hex'), bytes.toString('hex'), 'encodes to the golden bytes')
    const back = decodePacket(bytes)
    t.equal(back.type, packet.type, 'decodes the packet type')
    t.same(encodePacket(back).toString('hex'), bytes.toString('hex'), 'decode → encode is identity')
  })
}

golden('CMD_REQUEST "version", empty message', { type: PacketType.CMD_REQUEST, name: 'version', message: new Map() }, hex(`
  00                      # type CMD_REQUEST
  07 ${ascii('version')}  # u8 name length, name
`))

golden('CMD_RESPONSE with one key/value', {
  type: PacketType.CMD_RESPONSE,
  message: new Map([['version', Buffer.from('5.9.8')]]),
}, hex(`
  01                      # type CMD_RESPONSE (unnamed)
  03                      # KEY_VALUE
  07 ${ascii('version')}  # u8 key length, key
  0005 ${ascii('5.9.8')}  # u16be value length, value
`))

golden('CMD_UNKNOWN', { type: PacketType.CMD_UNKNOWN }, hex('02 # type only'))

golden('EVENT_REGISTER "ike-updown"', { type: PacketType.EVENT_REGISTER, name: 'ike-updown' }, hex(`
  03                          # type EVENT_REGISTER
  0a ${ascii('ike-updown')}   # u8 name length, event name
`))

golden('EVENT_UNREGISTER "ike-updown"', { type: PacketType.EVENT_UNREGISTER, name: 'ike-updown' }, hex(`
  04                          # type EVENT_UNREGISTER
  0a ${ascii('ike-updown')}
`))

golden('EVENT_CONFIRM', { type: PacketType.EVENT_CONFIRM }, hex('05'))
golden('EVENT_UNKNOWN', { type: PacketType.EVENT_UNKNOWN }, hex('06'))

golden('EVENT "child-updown" with a value and a nested section', {
  type: PacketType.EVENT,
  name: 'child-updown',
  message: new Map<string, any>([
    ['up', Buffer.from('yes')],
    ['ab', new Map([['state', Buffer.from('ESTABLISHED')]])],
  ]),
}, hex(`
  07                            # type EVENT
  0c ${ascii('child-updown')}   # event name
  03 02 ${ascii('up')}          # KEY_VALUE "up"
     0003 ${ascii('yes')}       #   = "yes"
  01 02 ${ascii('ab')}          # SECTION_START "ab"
  03 05 ${ascii('state')}       #   KEY_VALUE "state"
     000b ${ascii('ESTABLISHED')}
  02                            # SECTION_END
`))

t.test('every element type: the load-conn example from the notes', async (t) => {
  const msg = {
    peer: {
      version: 2,
      remote_addrs: ['127.0.0.1'],
      encap: true,
      local: { auth: 'psk' },
    },
  }
  const bytes = hex(`
    01 04 ${ascii('peer')}              # SECTION_START "peer"
    03 07 ${ascii('version')}           #   KEY_VALUE "version"
       0001 ${ascii('2')}               #     = "2" (numbers travel as strings)
    04 0c ${ascii('remote_addrs')}      #   LIST_START "remote_addrs"
    05 0009 ${ascii('127.0.0.1')}       #     LIST_ITEM u16be length, value
    06                                  #   LIST_END
    03 05 ${ascii('encap')}             #   KEY_VALUE "encap"
       0003 ${ascii('yes')}             #     booleans travel as yes/no
    01 05 ${ascii('local')}             #   SECTION_START "local"
    03 04 ${ascii('auth')} 0003 ${ascii('psk')}
    02                                  #   SECTION_END (local)
    02                                  # SECTION_END (peer)
                                        # no root SECTION_END: charon rejects one
  `)
  t.equal(encodeMessage(msg).toString('hex'), bytes.toString('hex'))
  t.equal(sectionToJson(decodeMessage(bytes)),
    '{"peer":{"version":"2","remote_addrs":["127.0.0.1"],"encap":"yes","local":{"auth":"psk"}}}')
})

t.test('integer-like keys keep wire order (plain objects would not)', async (t) => {
  const bytes = hex(`
    03 01 ${ascii('2')} 0001 ${ascii('b')}  # "2" = b first on the wire
    03 01 ${ascii('1')} 0001 ${ascii('a')}  # "1" = a second
  `)
  const m = decodeMessage(bytes)
  t.same([...m.keys()], ['2', '1'])
  t.equal(encodeMessage(m).toString('hex'), bytes.toString('hex'))
})

t.test('binary values stay binary', async (t) => {
  const der = Buffer.from([0x30, 0x82, 0x00, 0xff, 0x00])
  const m = decodeMessage(encodeMessage({ data: der }))
  t.ok((m.get('data') as Buffer).equals(der))
  t.equal(sectionToJson(m), `{"data":{"base64":"${der.toString('base64')}"}}`)
})
