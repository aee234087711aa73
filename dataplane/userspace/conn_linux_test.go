//go:build linux

package userspace

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestPktinfoDst(t *testing.T) {
	var pi4 unix.Inet4Pktinfo
	pi4.Addr = [4]byte{192, 0, 2, 7}
	var pi6 unix.Inet6Pktinfo
	pi6.Addr = netip.MustParseAddr("2001:db8::7").As16()
	v4 := cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&pi4)), unix.SizeofInet4Pktinfo))
	v6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&pi6)), unix.SizeofInet6Pktinfo))
	other := cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16))
	for _, c := range []struct {
		name string
		cm   []byte
		want string
	}{
		{"IPv4", v4, "192.0.2.7"},
		{"IPv6", v6, "2001:db8::7"},
		{"after another message", append(append([]byte(nil), other...), v6...), "2001:db8::7"},
		{"none", other, "invalid IP"},
		{"empty", nil, "invalid IP"},
		{"truncated", v4[:len(v4)-8], "invalid IP"},
	} {
		if got := pktinfoDst(c.cm).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { pktinfoDst(v6) }); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}

// FuzzPktinfoDst: any ancillary data parses without panicking, and an
// address found is a valid one.
func FuzzPktinfoDst(f *testing.F) {
	var pi4 unix.Inet4Pktinfo
	pi4.Addr = [4]byte{192, 0, 2, 7}
	f.Add(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&pi4)), unix.SizeofInet4Pktinfo)))
	f.Add(cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, make([]byte, unix.SizeofInet6Pktinfo)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, cm []byte) {
		// The kernel hands the buffer aligned; so does the backend.
		buf := make([]uint64, (len(cm)+7)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), len(cm))
		copy(b, cm)
		if a := pktinfoDst(b); a.IsValid() && !a.Is4() && !a.Is6() {
			t.Fatalf("bad address %v", a)
		}
	})
}

// TestWaitRead: WaitRead returns once a datagram is queued and leaves it
// for ReadBatch; after Close it returns net.ErrClosed.
func TestWaitRead(t *testing.T) {
	c := listenLoopback(t)
	woke := make(chan error, 1)
	go func() { woke <- c.WaitRead() }()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo([]byte("one"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRead did not return for a queued datagram")
	}
	ms := []Message{{Buf: make([]byte, 64)}, {Buf: make([]byte, 64)}}
	if n, err := c.ReadBatch(ms); err != nil || n != 1 || string(ms[0].Buf[:ms[0].N]) != "one" {
		t.Fatalf("ReadBatch after WaitRead: %d %v", n, err)
	}
	go func() { woke <- c.WaitRead() }()
	c.Close()
	select {
	case err := <-woke:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WaitRead on a closed socket: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end WaitRead")
	}
}

// TestWaitReadBadChecksum: a UDP datagram with a bad checksum does not
// count as one to read (the kernel drops it at the peek), so a reader is
// not woken to take a batch for nothing; the next good one is read.
func TestWaitReadBadChecksum(t *testing.T) {
	ns := testenv.NewNetns(t, "wr")
	var c *sockConn
	var raw int
	err := ns.Do(func() error {
		var err error
		if c, err = newLoopback(); err != nil {
			return err
		}
		raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer unix.Close(raw)
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	udp := func(payload string, csum uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, 40000)
		b = binary.BigEndian.AppendUint16(b, port)
		b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
		b = binary.BigEndian.AppendUint16(b, csum)
		return append(b, payload...)
	}
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Sendto(raw, udp("bad", 0x1234), 0, to); err != nil {
		t.Fatal(err)
	}
	// Until the kernel counts the checksum error, the peek must never
	// report the datagram.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ready bool
		if err := c.rc.Control(func(fd uintptr) { ready = c.doPeek(fd) }); err != nil {
			t.Fatal(err)
		}
		if ready {
			t.Fatal("a datagram with a bad checksum was reported readable")
		}
		if n := udpCsumErrors(t, ns); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the kernel never counted the bad checksum")
		}
		runtime.Gosched()
	}
	// Checksum 0: none (RFC 768).
	if err := unix.Sendto(raw, udp("good", 0), 0, to); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRead(); err != nil {
		t.Fatal(err)
	}
	ms := []Message{{Buf: make([]byte, 64)}}
	if n, err := c.ReadBatch(ms); err != nil || n != 1 || string(ms[0].Buf[:ms[0].N]) != "good" {
		t.Fatalf("ReadBatch: %d %v %q", n, err, ms[0].Buf[:ms[0].N])
	}
}

func newLoopback() (*sockConn, error) {
	c, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	return c.(*sockConn), nil
}

func listenLoopback(t *testing.T) *sockConn {
	c, err := newLoopback()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpCsumErrors reads Udp InCsumErrors of the namespace ns.
func udpCsumErrors(t *testing.T, ns *testenv.Netns) int {
	var b []byte
	if err := ns.Do(func() (err error) { b, err = os.ReadFile("/proc/thread-self/net/snmp"); return err }); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "InCsumErrors" && i < len(f) {
				n, _ := strconv.Atoi(f[i])
				return n
			}
		}
	}
	t.Fatal("no Udp InCsumErrors in /proc/net/snmp")
	return 0
}
