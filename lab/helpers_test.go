package lab

import (
	"encoding/binary"
	"net/netip"
)

// frame builds an Ethernet frame carrying an IP packet (IPv4 or IPv6 by
// the addresses) with protocol proto and payload.
func frame(src, dst netip.Addr, proto byte, payload []byte) []byte {
	eth := make([]byte, 14)
	copy(eth[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(eth[6:12], []byte{2, 0, 0, 0, 0, 1})
	if src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		return append(eth, ipv4(src, dst, proto, payload)...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	ip := make([]byte, 40, 40+len(payload))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip[6], ip[7] = proto, 64
	copy(ip[8:24], src.AsSlice())
	copy(ip[24:40], dst.AsSlice())
	return append(eth, append(ip, payload...)...)
}

// ipv4 builds an IPv4 packet with a correct header checksum.
func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	ip := make([]byte, 20, 20+len(payload))
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	copy(ip[12:16], src.AsSlice())
	copy(ip[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	return append(ip, payload...)
}

// udp builds a UDP datagram (checksum zero: allowed for IPv4, and nothing
// here checks it).
func udp(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}
