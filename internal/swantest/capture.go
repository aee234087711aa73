package swantest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// Capture is tcpdump writing the first count packets matching a filter on
// one interface of a namespace to a pcap file.
type Capture struct {
	// Path is the pcap file.
	Path  string
	count int
	done  chan error
}

// StartCapture starts tcpdump on iface in ns and returns once it listens.
// tcpdump exits by itself after count packets; it is killed when the test
// ends.
func StartCapture(tb testing.TB, ns *testenv.Netns, iface string, count int, filter string) *Capture {
	tb.Helper()
	tcpdump := testenv.Binary(tb, "tcpdump", "apt-get install tcpdump")
	c := &Capture{Path: filepath.Join(tb.TempDir(), "capture.pcap"), count: count, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, tcpdump, "-i", iface, "-n", "-U", "-Z", "root", "-c", fmt.Sprint(count), "-w", c.Path, filter)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "listening on") {
				found = true
				listening <- true
			}
		}
		if !found {
			listening <- false
		}
		c.done <- cmd.Wait()
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case ok := <-listening:
		if !ok {
			tb.Fatalf("tcpdump on %s exited before listening", iface)
		}
	case <-time.After(Timeout):
		tb.Fatalf("tcpdump on %s not listening after %v", iface, Timeout)
	}
	return c
}

// Wait waits until tcpdump has seen its count packets and exited.
func (c *Capture) Wait(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup
		if err != nil {
			tb.Fatalf("tcpdump: %v", err)
		}
	case <-time.After(timeout):
		tb.Fatalf("tcpdump did not capture %d packets within %v", c.count, timeout)
	}
}

// Datagram is one captured UDP datagram.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// ReadPcap returns the UDP datagrams over IPv4 of a little-endian Ethernet
// pcap file, as tcpdump writes it (loopback included). Other frames are
// skipped; a truncated file is an error.
func ReadPcap(path string) ([]Datagram, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parsePcap(io.LimitReader(f, 64<<20))
}

var errPcap = errors.New("swantest: not a little-endian Ethernet pcap file")

func parsePcap(r io.Reader) ([]Datagram, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		return nil, errPcap
	}
	var out []Datagram
	for b = b[24:]; len(b) > 0; {
		if len(b) < 16 {
			return out, errors.New("swantest: truncated pcap record header")
		}
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if n > len(b)-16 {
			return out, errors.New("swantest: truncated pcap record")
		}
		frame := b[16 : 16+n]
		b = b[16+n:]
		if d, ok := udp4(frame); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// udp4 decodes an Ethernet frame carrying IPv4 and UDP.
func udp4(frame []byte) (Datagram, bool) {
	if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
		return Datagram{}, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 17 || len(ip) < ihl+8 {
		return Datagram{}, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < ihl+8 || total > len(ip) {
		return Datagram{}, false
	}
	udp := ip[ihl:total]
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(udp[0:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(udp[2:]))
	return Datagram{Src: src, Dst: dst, Payload: udp[8:]}, true
}
