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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// Capture is tcpdump capturing the packets matching a filter on one
// interface of a namespace into a pcap file: the first count packets
// (StartCapture with count > 0, then Wait), or, with count 0, what it sees
// until WaitFor finds what the test needs.
type Capture struct {
	// Path is the pcap file.
	Path  string
	count int
	done  chan error // tcpdump's exit, once
	stop  func()     // ends tcpdump (SIGKILL)

	mu      sync.Mutex // guards the fields below
	got     []Datagram // count 0: what the stream held so far
	changed chan struct{}
	ended   bool  // the stream ended (tcpdump exited)
	err     error // why the stream ended, if not cleanly
}

// captureLimit bounds a streamed capture: a test that needs more is
// waiting for something that does not come.
const captureLimit = 64 << 20

// StartCapture starts tcpdump on iface in ns and returns once it listens.
// With count > 0, tcpdump exits by itself after count packets (Wait); with
// count 0 it runs until WaitFor has what it waits for. It is killed when
// the test ends.
func StartCapture(tb testing.TB, ns *testenv.Netns, iface string, count int, filter string) *Capture {
	tb.Helper()
	tcpdump := testenv.Binary(tb, "tcpdump", "apt-get install tcpdump")
	c := &Capture{Path: filepath.Join(tb.TempDir(), "capture.pcap"), count: count, done: make(chan error, 1),
		changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	// -U: every packet is written (and flushed) as it is seen.
	args := []string{"-i", iface, "-n", "-U", "-Z", "root"}
	if count > 0 {
		args = append(args, "-c", fmt.Sprint(count), "-w", c.Path, filter)
	} else {
		args = append(args, "-w", "-", filter)
	}
	cmd := ns.Command(ctx, tcpdump, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	var stdout io.ReadCloser
	var file *os.File
	if count == 0 {
		if stdout, err = cmd.StdoutPipe(); err == nil {
			file, err = os.OpenFile(c.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		}
		if err != nil {
			cancel()
			tb.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		cancel()
		if file != nil {
			file.Close()
		}
		tb.Fatal(err)
	}
	streamed := make(chan struct{})
	if count == 0 {
		go func() {
			defer close(streamed)
			defer file.Close()
			c.follow(io.TeeReader(io.LimitReader(stdout, captureLimit), file))
		}()
	} else {
		close(streamed)
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
		<-streamed // os/exec: read the pipes before Wait
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

// follow reads tcpdump's pcap stream, keeping every UDP datagram and
// waking WaitFor after each packet, until the stream ends.
func (c *Capture) follow(r io.Reader) {
	err := readPcap(r, func(d Datagram) {
		c.mu.Lock()
		c.got = append(c.got, d)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	})
	c.mu.Lock()
	c.ended, c.err = true, err
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	io.Copy(io.Discard, r) // let tcpdump finish writing
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

// WaitFor waits, on a capture started with count 0, until the datagrams
// captured so far satisfy enough (called after each new packet, in the
// order captured), then stops tcpdump and returns them. The pcap file at
// Path holds at least these datagrams. It fails the test when timeout
// passes or tcpdump ends first, showing what was captured.
func (c *Capture) WaitFor(tb testing.TB, timeout time.Duration, enough func([]Datagram) bool) []Datagram {
	tb.Helper()
	if c.count != 0 {
		tb.Fatal("swantest: WaitFor on a capture of a fixed count (use Wait)")
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		got, ended, err, changed := slices.Clone(c.got), c.ended, c.err, c.changed
		c.mu.Unlock()
		if enough(got) {
			c.stop()
			return got
		}
		if ended {
			tb.Fatalf("tcpdump stopped (%v) before the capture held what the test needs: %d datagrams %s", err, len(got), summary(got))
		}
		select {
		case <-changed:
		case <-timer.C:
			tb.Fatalf("capture incomplete after %v: %d datagrams %s", timeout, len(got), summary(got))
		}
	}
}

func summary(ds []Datagram) string {
	var b strings.Builder
	for i, d := range ds {
		if i == 64 {
			b.WriteString(" ...")
			break
		}
		fmt.Fprintf(&b, " %v>%v/%d", d.Src, d.Dst, len(d.Payload))
	}
	return b.String()
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
	return parsePcap(io.LimitReader(f, captureLimit))
}

var errPcap = errors.New("swantest: not a little-endian Ethernet pcap file")

func parsePcap(r io.Reader) ([]Datagram, error) {
	var out []Datagram
	err := readPcap(r, func(d Datagram) { out = append(out, d) })
	return out, err
}

// maxRecord bounds one pcap record (tcpdump's default snap length).
const maxRecord = 262144

// readPcap reads a pcap stream record by record and calls each for every
// UDP datagram over IPv4 in it, as it arrives. It returns nil at the end
// of the stream after a whole record, an error for a truncated one.
func readPcap(r io.Reader, each func(Datagram)) error {
	br := bufio.NewReader(r)
	var hdr [24]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return errPcap
	}
	if binary.LittleEndian.Uint32(hdr[:]) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(hdr[20:]) != 1 {
		return errPcap
	}
	var rec [16]byte
	for {
		if _, err := io.ReadFull(br, rec[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return errors.New("swantest: truncated pcap record header")
		}
		n := binary.LittleEndian.Uint32(rec[8:])
		if n > maxRecord {
			return fmt.Errorf("swantest: pcap record of %d octets", n)
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(br, frame); err != nil {
			return errors.New("swantest: truncated pcap record")
		}
		if d, ok := udp4(frame); ok {
			each(d)
		}
	}
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
