package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane/tuntest"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// TestPlainTUN checks the TUN opened without offloads: MTU and name as
// asked, one packet per read, packets written reach the kernel (which
// answers a ping through it) without allocating, Close ends a pending read; and it allocates
// a small fraction of what wireguard-go's TUN allocates for its
// coalescing tables (measured in the same run).
func TestPlainTUN(t *testing.T) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Root(t)
		testenv.Skip(t, "no /dev/net/tun")
	}
	ns := testenv.NewNetns(t, "pt")
	var plain, offl int64
	var dev *plainTUN
	err := ns.Do(func() error {
		alloc := func(f func() error) (int64, error) {
			var a, b runtime.MemStats
			runtime.ReadMemStats(&a)
			err := f()
			runtime.ReadMemStats(&b)
			return int64(b.TotalAlloc - a.TotalAlloc), err
		}
		var err error
		if offl, err = alloc(func() error {
			d, err := createTUN("wgtun0", 1300, true)
			if err == nil {
				d.Close()
			}
			return err
		}); err != nil {
			return err
		}
		plain, err = alloc(func() error {
			d, err := createTUN("plain0", 1300, false)
			if err == nil {
				dev = d.(*plainTUN)
			}
			return err
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	t.Logf("allocated by the TUN: %d octets with offloads (wireguard-go), %d without", offl, plain)
	if plain > 64<<10 || offl < 1<<20 {
		t.Errorf("TUN allocations: %d without offloads, %d with", plain, offl)
	}
	if name, _ := dev.Name(); name != "plain0" || dev.BatchSize() != 1 {
		t.Fatalf("name %q, batch %d", name, dev.BatchSize())
	}
	if mtu, err := dev.MTU(); err != nil || mtu != 1300 {
		t.Fatalf("MTU %d %v", mtu, err)
	}
	if out := ns.MustIP("link", "show", "plain0"); !strings.Contains(out, "mtu 1300") {
		t.Fatalf("link: %s", out)
	}
	ns.MustIP("addr", "add", "10.9.0.1/24", "dev", "plain0")
	ns.MustIP("link", "set", "plain0", "up")

	// A ping from the far side (10.9.0.2) written to the TUN is answered
	// by the kernel into the TUN.
	local, far := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	const off = 16
	ping := tuntest.Ping(local, far, 9, 1, []byte("plain"))
	buf := append(make([]byte, off), ping...)
	wbufs, bufs, sizes := [][]byte{buf}, [][]byte{make([]byte, 2048)}, []int{0}
	exchange := func() error {
		if n, err := dev.Write(wbufs, off); err != nil || n != len(ping) {
			return fmt.Errorf("Write: %d %v", n, err)
		}
		for {
			n, err := dev.Read(bufs, sizes, off)
			if err != nil || n != 1 {
				return fmt.Errorf("Read: %d %v", n, err)
			}
			pkt := bufs[0][off : off+sizes[0]]
			if src, dst, ok := tuntest.Addrs(pkt); ok && src == local && dst == far && len(pkt) > 20 && pkt[20] == 0 {
				return nil // the echo reply (IPv6 router solicitations and the like are skipped)
			}
		}
	}
	dev.f.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := exchange(); err != nil {
		t.Fatal(err)
	}
	// The packet path's reads and writes allocate nothing.
	var xerr error
	if n := testing.AllocsPerRun(20, func() {
		if err := exchange(); err != nil && xerr == nil {
			xerr = err
		}
	}); xerr != nil || n != 0 {
		t.Fatalf("%v allocations per write and read (%v)", n, xerr)
	}
	done := make(chan error, 1)
	go func() {
		dev.f.SetReadDeadline(time.Time{})
		_, err := dev.Read(bufs, sizes, off)
		done <- err
	}()
	dev.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a pending read")
	}
	if _, err := dev.Write([][]byte{buf}, off); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, err := net.InterfaceByName("plain0"); err == nil {
		t.Log("plain0 visible outside the namespace") // it must not be: created inside
		t.Fail()
	}
}
