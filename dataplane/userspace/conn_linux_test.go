//go:build linux

package userspace

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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
