package userspace

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// nlMsg builds one netlink message as the kernel lays it out.
func nlMsg(typ uint16, body []byte) []byte {
	ne := binary.NativeEndian
	b := ne.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = ne.AppendUint16(b, typ)
	b = append(b, make([]byte, 10)...) // flags, seq, pid
	b = append(b, body...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func rtAttr(typ uint16, v []byte) []byte {
	ne := binary.NativeEndian
	b := ne.AppendUint16(nil, uint16(unix.SizeofRtAttr+len(v)))
	b = ne.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// delRoute builds an RTM_DELROUTE body for p through oif.
func delRoute(p netip.Prefix, oif int32, proto uint8, table uint8) []byte {
	fam := byte(unix.AF_INET)
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	b := []byte{fam, byte(p.Bits()), 0, 0, table, proto, unix.RT_SCOPE_LINK, unix.RTN_UNICAST, 0, 0, 0, 0}
	b = append(b, rtAttr(unix.RTA_TABLE, binary.NativeEndian.AppendUint32(nil, uint32(table)))...)
	b = append(b, rtAttr(unix.RTA_DST, p.Addr().AsSlice())...)
	return append(b, rtAttr(unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(oif)))...)
}

func ifMsg(index int32, size int) []byte {
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return b
}

func TestParseWatch(t *testing.T) {
	const idx = 7
	p4, p6 := netip.MustParsePrefix("10.3.0.0/24"), netip.MustParsePrefix("fd00:3::/64")
	for _, c := range []struct {
		name string
		b    []byte
		want []watchEvent
	}{
		{"our link", nlMsg(unix.RTM_NEWLINK, ifMsg(idx, ifinfomsgLen)), []watchEvent{{verify: true}}},
		{"our link deleted", nlMsg(unix.RTM_DELLINK, ifMsg(idx, ifinfomsgLen)), []watchEvent{{verify: true}}},
		{"another link", nlMsg(unix.RTM_NEWLINK, ifMsg(8, ifinfomsgLen)), nil},
		{"our address removed", nlMsg(unix.RTM_DELADDR, ifMsg(idx, ifaddrmsgLen)), []watchEvent{{verify: true}}},
		{"an address added", nlMsg(unix.RTM_NEWADDR, ifMsg(idx, ifaddrmsgLen)), nil},
		{"short link message", nlMsg(unix.RTM_NEWLINK, ifMsg(idx, 8)), nil},
		{"IPv4 route deleted", nlMsg(unix.RTM_DELROUTE, delRoute(p4, idx, 252, unix.RT_TABLE_MAIN)),
			[]watchEvent{{gone: true, prefix: p4, oif: idx, protocol: 252}}},
		{"IPv6 route deleted", nlMsg(unix.RTM_DELROUTE, delRoute(p6, 3, 2, unix.RT_TABLE_MAIN)),
			[]watchEvent{{gone: true, prefix: p6, oif: 3, protocol: 2}}},
		{"route of another table", nlMsg(unix.RTM_DELROUTE, delRoute(p4, idx, 252, unix.RT_TABLE_LOCAL)), nil},
		{"route added", nlMsg(unix.RTM_NEWROUTE, delRoute(p4, idx, 252, unix.RT_TABLE_MAIN)), nil},
		{"two messages", append(nlMsg(unix.RTM_NEWADDR, ifMsg(idx, ifaddrmsgLen)), nlMsg(unix.RTM_DELROUTE, delRoute(p4, idx, 252, unix.RT_TABLE_MAIN))...),
			[]watchEvent{{gone: true, prefix: p4, oif: idx, protocol: 252}}},
		{"truncated", nlMsg(unix.RTM_DELROUTE, delRoute(p4, idx, 252, unix.RT_TABLE_MAIN))[:30], nil},
		{"bad attribute length", nlMsg(unix.RTM_DELROUTE, append(delRoute(p4, idx, 252, unix.RT_TABLE_MAIN), 0xff, 0, 1, 0)), nil},
		{"IPv6 address in an IPv4 route", nlMsg(unix.RTM_DELROUTE, append([]byte{unix.AF_INET, 64, 0, 0, unix.RT_TABLE_MAIN, 252, 0, unix.RTN_UNICAST, 0, 0, 0, 0},
			rtAttr(unix.RTA_DST, p6.Addr().AsSlice())...)), nil},
		{"prefix too long", nlMsg(unix.RTM_DELROUTE, append([]byte{unix.AF_INET, 33, 0, 0, unix.RT_TABLE_MAIN, 252, 0, unix.RTN_UNICAST, 0, 0, 0, 0},
			rtAttr(unix.RTA_DST, []byte{10, 0, 0, 0})...)), nil},
		{"empty", nil, nil},
	} {
		var got []watchEvent
		parseWatch(c.b, idx, func(ev watchEvent) { got = append(got, ev) })
		if len(got) != len(c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %+v, want %+v", c.name, got[i], c.want[i])
			}
		}
	}
	b := nlMsg(unix.RTM_DELROUTE, delRoute(p6, idx, 252, unix.RT_TABLE_MAIN))
	if n := testing.AllocsPerRun(100, func() { parseWatch(b, idx, func(watchEvent) {}) }); n != 0 {
		t.Errorf("%v allocations per message", n)
	}
}

// FuzzParseWatch: any datagram parses without panicking; a deleted route
// comes with a valid, masked prefix.
func FuzzParseWatch(f *testing.F) {
	f.Add(nlMsg(unix.RTM_DELROUTE, delRoute(netip.MustParsePrefix("10.3.0.0/24"), 7, 252, unix.RT_TABLE_MAIN)))
	f.Add(nlMsg(unix.RTM_DELROUTE, delRoute(netip.MustParsePrefix("fd00:3::/64"), 7, 252, unix.RT_TABLE_MAIN)))
	f.Add(nlMsg(unix.RTM_NEWLINK, ifMsg(7, ifinfomsgLen)))
	f.Add(nlMsg(unix.RTM_DELADDR, ifMsg(7, ifaddrmsgLen)))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseWatch(b, 7, func(ev watchEvent) {
			if ev.gone && (!ev.prefix.IsValid() || ev.prefix != ev.prefix.Masked()) {
				t.Fatalf("bad prefix %v", ev.prefix)
			}
		})
	})
}

// TestRouteWatchFilter runs the watch's socket filter in the kernel: of
// route and address changes in a namespace, only deleted routes and the
// link and removed addresses of the watched interface reach the socket.
// Everything filtered out happens before each change that passes, so a
// leak would be read first.
func TestRouteWatchFilter(t *testing.T) {
	ns := testenv.NewNetns(t, "rw")
	for _, l := range []string{"d0", "d1"} {
		ns.MustIP("link", "add", l, "type", "veth", "peer", "name", l+"p")
		ns.MustIP("link", "set", l+"p", "up")
		ns.MustIP("link", "set", l, "up")
	}
	var w *routeWatch
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName("d0")
		if err != nil {
			return err
		}
		w, err = newRouteWatch(ifi.Index)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	next := func(what string) []watchEvent {
		t.Helper()
		w.f.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, _, err := w.read(true)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		ne := binary.NativeEndian
		if typ := ne.Uint16(msg[4:6]); typ != unix.RTM_DELROUTE && typ != unix.RTM_NEWLINK && typ != unix.RTM_DELLINK && typ != unix.RTM_DELADDR {
			t.Fatalf("waiting for %s: message type %d passed the filter", what, typ)
		}
		var evs []watchEvent
		parseWatch(msg, w.index, func(ev watchEvent) { evs = append(evs, ev) })
		return evs
	}
	// Routes added (many), addresses added, another link's change: none
	// passes. Then a route deleted does.
	for i := range 100 {
		ns.MustIP("route", "add", "10.9."+strconv.Itoa(i)+".0/24", "dev", "d0", "proto", "252")
	}
	ns.MustIP("-6", "route", "add", "fd00:9::/64", "dev", "d0", "proto", "252")
	ns.MustIP("addr", "add", "192.0.2.1/24", "dev", "d1")
	ns.MustIP("link", "set", "d1", "mtu", "1400")
	ns.MustIP("addr", "add", "198.51.100.1/24", "dev", "d0")
	ns.MustIP("route", "del", "10.9.5.0/24", "dev", "d0")
	evs := next("the deleted route")
	if len(evs) != 1 || !evs[0].gone || evs[0].prefix != netip.MustParsePrefix("10.9.5.0/24") || evs[0].oif != w.index || evs[0].protocol != 252 {
		t.Fatalf("deleted route: %+v", evs)
	}
	ns.MustIP("-6", "route", "del", "fd00:9::/64", "dev", "d0")
	if evs := next("the deleted IPv6 route"); len(evs) != 1 || evs[0].prefix != netip.MustParsePrefix("fd00:9::/64") {
		t.Fatalf("deleted IPv6 route: %+v", evs)
	}
	// The watched link's MTU changes: RTM_NEWLINK of d0.
	ns.MustIP("link", "set", "d0", "mtu", "1400")
	if evs := next("d0's link change"); len(evs) != 1 || !evs[0].verify {
		t.Fatalf("link change: %+v", evs)
	}
	// d0 loses its address: RTM_DELADDR of d0 (with the deletions of its
	// connected and local routes, in the kernel's order).
	ns.MustIP("addr", "del", "198.51.100.1/24", "dev", "d0")
	for {
		evs := next("d0's removed address")
		if len(evs) == 1 && evs[0].verify {
			break
		}
		if len(evs) == 1 && evs[0].gone && evs[0].prefix == netip.MustParsePrefix("198.51.100.0/24") {
			continue // the connected route
		}
		if len(evs) == 0 {
			continue // a local-table route: passes the filter, parsed away
		}
		t.Fatalf("removed address: %+v", evs)
	}
}
