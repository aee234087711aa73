// Package tuntest has test helpers for the data plane: a TUN device made of
// channels (a tun.Device, as wireguard-go's tun/tuntest) and builders and
// parsers for the IPv4 and IPv6 packets tests push through it.
package tuntest

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// Protocol numbers used by the builders.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// checksum is the Internet checksum (RFC 1071) of buf, folded into initial.
func checksum(buf []byte, initial uint32) uint32 {
	v := initial
	for i := 0; i+1 < len(buf); i += 2 {
		v += uint32(binary.BigEndian.Uint16(buf[i:]))
	}
	if len(buf)%2 == 1 {
		v += uint32(buf[len(buf)-1]) << 8
	}
	return v
}

func fold(v uint32) uint16 {
	for v > 0xffff {
		v = v>>16 + v&0xffff
	}
	return ^uint16(v)
}

// pseudo is the transport pseudo-header sum (RFC 768, RFC 8200 §8.1).
func pseudo(src, dst netip.Addr, proto byte, length int) uint32 {
	v := checksum(src.AsSlice(), 0)
	v = checksum(dst.AsSlice(), v)
	return v + uint32(proto) + uint32(length)
}

// IP wraps a transport payload (with its checksum field still zero at
// csumOff, or csumOff < 0 for none) in an IPv4 or IPv6 header, chosen by
// the family of src and dst, and fills in the checksums.
func IP(src, dst netip.Addr, proto byte, l4 []byte, csumOff int) []byte {
	var hl int
	if src.Is4() {
		hl = 20
	} else {
		hl = 40
	}
	pkt := make([]byte, hl+len(l4))
	copy(pkt[hl:], l4)
	body := pkt[hl:]
	if csumOff >= 0 {
		var sum uint32
		if proto != ProtoICMP { // ICMPv4 has no pseudo header
			sum = pseudo(src, dst, proto, len(body))
		}
		c := fold(checksum(body, sum))
		if c == 0 && proto == ProtoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(body[csumOff:], c)
	}
	if src.Is4() {
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[8] = 64
		pkt[9] = proto
		copy(pkt[12:16], src.AsSlice())
		copy(pkt[16:20], dst.AsSlice())
		binary.BigEndian.PutUint16(pkt[10:], fold(checksum(pkt[:20], 0)))
	} else {
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(l4)))
		pkt[6] = proto
		pkt[7] = 64
		copy(pkt[8:24], src.AsSlice())
		copy(pkt[24:40], dst.AsSlice())
	}
	return pkt
}

// Ping builds an ICMP (or ICMPv6) echo request from src to dst with the
// given identifier, sequence number and payload.
func Ping(dst, src netip.Addr, id, seq uint16, payload []byte) []byte {
	l4 := make([]byte, 8+len(payload))
	if src.Is4() {
		l4[0] = 8 // echo request
	} else {
		l4[0] = 128
	}
	binary.BigEndian.PutUint16(l4[4:], id)
	binary.BigEndian.PutUint16(l4[6:], seq)
	copy(l4[8:], payload)
	if src.Is4() {
		return IP(src, dst, ProtoICMP, l4, 2)
	}
	return IP(src, dst, ProtoICMPv6, l4, 2)
}

// UDP builds a UDP datagram from src to dst.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	copy(l4[8:], payload)
	return IP(src.Addr(), dst.Addr(), ProtoUDP, l4, 6)
}

// Addrs returns the source and destination of an IPv4 or IPv6 packet, or
// ok false when pkt is neither.
func Addrs(pkt []byte) (src, dst netip.Addr, ok bool) {
	if len(pkt) >= 20 && pkt[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), true
	}
	if len(pkt) >= 40 && pkt[0]>>4 == 6 {
		return netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, netip.Addr{}, false
}

// ChannelTUN is a tun.Device backed by channels. Packets a test sends on
// Outbound are what the device's user reads (as if the kernel routed them
// into the TUN); packets the user writes appear on Inbound.
type ChannelTUN struct {
	Inbound  chan []byte // written by the device user; never closed
	Outbound chan []byte // read by the device user

	// ReportBytes makes Write return the number of octets written, as
	// wireguard-go's kernel TUN (tun.NativeTun) does, rather than the
	// number of packets the tun.Device documentation promises. Set it
	// before the device is used.
	ReportBytes bool
	// RefuseWrite, when set before the device is used, is asked about
	// every packet Write is given: a packet it returns an error for is
	// not delivered, and Write goes on with the others and returns the
	// errors joined, as the kernel TUN does.
	RefuseWrite func(pkt []byte) error

	batch     int
	mtu       int
	closed    chan struct{}
	closeOnce sync.Once
	events    chan tun.Event
}

// DefaultMTU is the MTU a ChannelTUN reports.
const DefaultMTU = 1400

// NewChannelTUN returns a device whose Read returns up to batch packets at
// once (at least 1). Inbound is buffered for 1024 packets.
func NewChannelTUN(batch int) *ChannelTUN {
	if batch < 1 {
		batch = 1
	}
	c := &ChannelTUN{
		Inbound:  make(chan []byte, 1024),
		Outbound: make(chan []byte),
		batch:    batch,
		mtu:      DefaultMTU,
		closed:   make(chan struct{}),
		events:   make(chan tun.Event, 1),
	}
	c.events <- tun.EventUp
	return c
}

var _ tun.Device = (*ChannelTUN)(nil)

// File returns nil: there is no file behind the device.
func (c *ChannelTUN) File() *os.File { return nil }

// Read blocks for the first packet, then takes whatever else is ready, up
// to the batch size. It returns os.ErrClosed after Close.
func (c *ChannelTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	max := min(len(bufs), c.batch)
	select {
	case <-c.closed:
		return 0, os.ErrClosed
	case p := <-c.Outbound:
		sizes[0] = copy(bufs[0][offset:], p)
	}
	n := 1
	for n < max {
		select {
		case p := <-c.Outbound:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write copies each packet onto Inbound and returns how many it delivered
// (octets with ReportBytes). It returns os.ErrClosed after Close.
func (c *ChannelTUN) Write(bufs [][]byte, offset int) (int, error) {
	var errs []error
	n := 0
	for _, b := range bufs {
		if c.RefuseWrite != nil {
			if err := c.RefuseWrite(b[offset:]); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		p := append([]byte(nil), b[offset:]...)
		select {
		case <-c.closed:
			return n, os.ErrClosed
		case c.Inbound <- p:
		}
		if c.ReportBytes {
			n += len(p)
		} else {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// BatchSize returns the batch size given to NewChannelTUN.
func (c *ChannelTUN) BatchSize() int { return c.batch }

// MTU returns DefaultMTU.
func (c *ChannelTUN) MTU() (int, error) { return c.mtu, nil }

// Name returns a fixed name.
func (c *ChannelTUN) Name() (string, error) { return "chtun0", nil }

// Events returns the event channel (EventUp is queued at creation).
func (c *ChannelTUN) Events() <-chan tun.Event { return c.events }

// Close makes Read and Write return os.ErrClosed. It may be called twice.
func (c *ChannelTUN) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		close(c.events)
	})
	return nil
}
