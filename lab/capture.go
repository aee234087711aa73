package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Capture limits.
const (
	// Snaplen is how much of each frame a Capture keeps.
	Snaplen = 2048
	// MaxCaptureBytes bounds what one Capture keeps; later frames are
	// counted in Dropped only.
	MaxCaptureBytes = 64 << 20
)

// Kind classifies a captured packet.
type Kind uint8

// Kinds of packets.
const (
	KindOther     Kind = iota
	KindIKE            // UDP 500, or UDP 4500 with the non-ESP marker
	KindESP            // IP protocol 50, or UDP 4500 without the marker (RFC 3948)
	KindKeepalive      // NAT-T keepalive (one octet 0xFF on UDP 4500)
)

func (k Kind) String() string {
	switch k {
	case KindIKE:
		return "IKE"
	case KindESP:
		return "ESP"
	case KindKeepalive:
		return "keepalive"
	}
	return "other"
}

// IKE and NAT-T ports.
const (
	portIKE  = 500
	portNATT = 4500
)

// Packet is one captured frame with what DecodeFrame found in it.
type Packet struct {
	Time  time.Time
	Frame []byte // the Ethernet frame, at most Snaplen octets
	Info  PacketInfo
}

// PacketInfo describes an IP packet: addresses, protocol and, for IKE and
// ESP, what the lab needs to tell them apart.
type PacketInfo struct {
	Family           Family
	Src, Dst         netip.Addr
	Proto            uint8 // IP protocol (17 UDP, 50 ESP, ...)
	SrcPort, DstPort uint16
	Kind             Kind
	UDPEncap         bool   // ESP in UDP (RFC 3948)
	SPI, Seq         uint32 // ESP
	ESP              []byte // the ESP packet from its SPI on (a subslice of the frame)
}

// Between reports whether the packet went between a and b (either way).
func (pi *PacketInfo) Between(a, b netip.Addr) bool {
	return pi.Src == a && pi.Dst == b || pi.Src == b && pi.Dst == a
}

// Involves reports whether a is the packet's source or destination.
func (pi *PacketInfo) Involves(a netip.Addr) bool { return pi.Src == a || pi.Dst == a }

// DecodeFrame reads an Ethernet frame carrying IPv4 or IPv6. ok is false
// for anything else and for truncated or malformed headers; non-first
// fragments are KindOther.
func DecodeFrame(frame []byte) (pi PacketInfo, ok bool) {
	if len(frame) < 14 {
		return pi, false
	}
	var payload []byte
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		ip := frame[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return pi, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total < ihl || total > len(ip) {
			return pi, false
		}
		pi.Family, pi.Proto = IPv4, ip[9]
		pi.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		pi.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			return pi, true // not the first fragment
		}
		payload = ip[ihl:total]
	case 0x86dd:
		ip := frame[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return pi, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return pi, false
		}
		pi.Family, pi.Proto = IPv6, ip[6]
		pi.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		pi.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		payload = ip[40 : 40+plen]
	default:
		return pi, false
	}
	switch pi.Proto {
	case 50:
		if len(payload) >= 8 {
			pi.Kind, pi.ESP = KindESP, payload
			pi.SPI, pi.Seq = binary.BigEndian.Uint32(payload[0:4]), binary.BigEndian.Uint32(payload[4:8])
		}
	case 17:
		if len(payload) < 8 {
			return pi, false
		}
		pi.SrcPort, pi.DstPort = binary.BigEndian.Uint16(payload[0:2]), binary.BigEndian.Uint16(payload[2:4])
		ulen := int(binary.BigEndian.Uint16(payload[4:6]))
		if ulen < 8 || ulen > len(payload) {
			return pi, false
		}
		data := payload[8:ulen]
		switch {
		case pi.SrcPort == portNATT || pi.DstPort == portNATT:
			switch {
			case len(data) == 1 && data[0] == 0xff:
				pi.Kind = KindKeepalive
			case len(data) >= 4 && binary.BigEndian.Uint32(data[0:4]) == 0:
				pi.Kind = KindIKE
			case len(data) >= 8:
				pi.Kind, pi.UDPEncap, pi.ESP = KindESP, true, data
				pi.SPI, pi.Seq = binary.BigEndian.Uint32(data[0:4]), binary.BigEndian.Uint32(data[4:8])
			}
		case pi.SrcPort == portIKE || pi.DstPort == portIKE:
			pi.Kind = KindIKE
		}
	}
	return pi, true
}

// Capture records the frames on one link of a namespace, both directions,
// with an AF_PACKET socket.
type Capture struct {
	ns, ifName string
	fd         int
	stop       atomic.Bool
	done       chan struct{} // closed when routineRead ends

	mu      sync.Mutex // guards the following
	pkts    []Packet
	bytes   int
	dropped int
}

// StartCapture starts capturing on interface ifName of namespace ns. The
// socket is bound before StartCapture returns: every frame that crosses
// the link afterwards is seen.
func StartCapture(ns, ifName string) (*Capture, error) {
	c := &Capture{ns: ns, ifName: ifName, fd: -1, done: make(chan struct{})}
	proto := htons(unix.ETH_P_ALL)
	err := doInNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("lab: capture on %s/%s: %w", ns, ifName, err)
	}
	go c.routineRead()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) routineRead() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		flags := 0
		stopping := c.stop.Load()
		if stopping {
			flags = unix.MSG_DONTWAIT // drain what the socket holds, then end
		}
		n, _, err := unix.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if stopping {
					return
				}
				continue
			}
			return
		}
		c.record(buf[:n])
	}
}

func (c *Capture) record(frame []byte) {
	now := time.Now()
	if len(frame) > Snaplen {
		frame = frame[:Snaplen]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes+len(frame) > MaxCaptureBytes {
		c.dropped++
		return
	}
	f := append([]byte(nil), frame...)
	pi, _ := DecodeFrame(f)
	c.pkts = append(c.pkts, Packet{Time: now, Frame: f, Info: pi})
	c.bytes += len(f)
}

// Stop ends the capture (after reading what the socket still holds) and
// returns every packet captured.
func (c *Capture) Stop() []Packet {
	c.stop.Store(true)
	<-c.done
	unix.Close(c.fd)
	return c.Packets()
}

// Packets returns the packets captured so far.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.pkts...)
}

// Dropped is how many frames did not fit in MaxCaptureBytes.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// WritePcap writes packets as a pcap file (Ethernet link type) that tshark
// and tcpdump read.
func WritePcap(w io.Writer, pkts []Packet) error {
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], Snaplen)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for _, p := range pkts {
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[0:], uint32(p.Time.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(p.Time.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(p.Frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(p.Frame)))
		if _, err := w.Write(rec[:]); err != nil {
			return err
		}
		if _, err := w.Write(p.Frame); err != nil {
			return err
		}
	}
	return nil
}
