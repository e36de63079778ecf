/** The pcap reader moved to src/lab/pcap.ts (`beckon demo` summarises captures with it). */
export { reassemble, streamsInclude, tcpStreams } from '../../src/lab/pcap.js'
