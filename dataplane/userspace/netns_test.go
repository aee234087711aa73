//go:build linux

package userspace_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
	"github.com/mpsa-vpn/mpsa/transform"
)

// site is one CPE namespace with its LAN host namespace behind it.
type site struct {
	i          int
	cpe, lan   *testenv.Netns
	outer4     netip.Addr
	outer6     netip.Addr
	host4      netip.Addr
	host6      netip.Addr
	b          *userspace.Backend
	stopFollow func()
}

// threeSites builds the topology of the issue: three CPE namespaces on a
// bridge (in a "core" namespace), each with a LAN host namespace behind it.
//
//	lan1 -- cpe1 --\
//	lan2 -- cpe2 ---- br0 (core)
//	lan3 -- cpe3 --/
func threeSites(t *testing.T) (core *testenv.Netns, sites []*site) {
	core = testenv.NewNetns(t, "core")
	core.MustIP("link", "add", "br0", "type", "bridge")
	core.MustIP("link", "set", "br0", "up")
	for i := 1; i <= 3; i++ {
		s := &site{
			i:      i,
			cpe:    testenv.NewNetns(t, fmt.Sprintf("cpe%d", i)),
			lan:    testenv.NewNetns(t, fmt.Sprintf("lan%d", i)),
			outer4: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i)),
			outer6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i)),
			host4:  netip.MustParseAddr(fmt.Sprintf("10.%d.0.2", i)),
			host6:  netip.MustParseAddr(fmt.Sprintf("fd00:%d::2", i)),
		}
		br := fmt.Sprintf("c%d", i)
		testenv.Veth(t, core, br, s.cpe, "eth0")
		core.MustIP("link", "set", br, "master", "br0")
		if i == 1 {
			// A second underlay address that the kernel would not pick by
			// itself: site 1 sends from it (SA.Local). IPv4 prefers the
			// first address of the subnet, IPv6 the last one added.
			s.cpe.MustIP("addr", "add", altSrc6.String()+"/64", "dev", "eth0", "nodad")
		}
		s.cpe.MustIP("addr", "add", s.outer4.String()+"/24", "dev", "eth0")
		s.cpe.MustIP("addr", "add", s.outer6.String()+"/64", "dev", "eth0", "nodad")
		if i == 1 {
			s.cpe.MustIP("addr", "add", altSrc4.String()+"/24", "dev", "eth0")
		}
		testenv.Veth(t, s.cpe, "lan0", s.lan, "eth0")
		s.cpe.MustIP("addr", "add", fmt.Sprintf("10.%d.0.1/24", i), "dev", "lan0")
		s.cpe.MustIP("addr", "add", fmt.Sprintf("fd00:%d::1/64", i), "dev", "lan0", "nodad")
		s.lan.MustIP("addr", "add", s.host4.String()+"/24", "dev", "eth0")
		s.lan.MustIP("addr", "add", s.host6.String()+"/64", "dev", "eth0", "nodad")
		s.lan.MustIP("route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", i))
		s.lan.MustIP("-6", "route", "add", "default", "via", fmt.Sprintf("fd00:%d::1", i))
		for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
			if out, err := s.cpe.Run("sysctl", "-qw", kv); err != nil {
				t.Fatalf("sysctl %s: %v %s", kv, err, out)
			}
		}
		sites = append(sites, s)
	}
	return core, sites
}

// start runs a backend in every CPE namespace with the group SA and FIB
// routes to the other sites' LANs through their endpoints.
func start(t *testing.T, sites []*site, outer6, raw bool, suite transform.ESP, noOffloads bool) {
	t.Helper()
	for _, s := range sites {
		fib := routing.New()
		for _, o := range sites {
			if o == s {
				continue
			}
			ep := o.outer4
			if outer6 {
				ep = o.outer6
			}
			port := uint16(4500)
			if raw {
				port = 0
			}
			for _, p := range []netip.Prefix{
				netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", o.i)),
				netip.MustParsePrefix(fmt.Sprintf("fd00:%d::/64", o.i)),
			} {
				addRoute(t, fib, p, routing.NextHop{Endpoint: netip.AddrPortFrom(ep, port), Tunnel: 1})
			}
		}
		err := s.cpe.Do(func() error {
			var err error
			s.b, err = userspace.New(userspace.Config{FIB: fib, RawESP: raw, NoOffloads: noOffloads, Logger: quiet})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A group SA: with Sender-IDs (AEAD) each sender gets its own replay
		// window; without them replay checking is off (see package esp).
		var bits uint8
		window := 0
		if suite.Encr.IsAEAD() {
			bits, window = 4, 1024
		}
		st := &dataplane.State{SAs: []dataplane.SA{{
			Keys: groupKeys(t, suite, 0xc0ffee01), Dir: dataplane.Both, Tunnel: 1,
			ReplayWindow: window, SenderIDBits: bits, SenderID: uint32(s.i) * uint32(bits/4),
		}}}
		if s.i == 1 {
			st.SAs[0].Local = altSrc4
			if outer6 {
				st.SAs[0].Local = altSrc6
			}
		}
		if err := s.b.Set(st); err != nil {
			t.Fatal(err)
		}
		// Kernel routes follow the FIB through its change feed.
		sub := fib.Subscribe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func(b *userspace.Backend) { done <- b.FollowRoutes(ctx, sub) }(s.b)
		s.stopFollow = func() {
			cancel()
			sub.Close()
			if err := <-done; err != nil {
				t.Errorf("FollowRoutes: %v", err)
			}
		}
		waitFor(t, "kernel routes", func() bool { return len(s.b.Routes()) == 4 })
	}
}

func stop(sites []*site) {
	for _, s := range sites {
		if s.stopFollow != nil {
			s.stopFollow()
			s.stopFollow = nil
		}
		if s.b != nil {
			s.b.Close()
			s.b = nil
		}
	}
}

// capture runs tcpdump on br0 in the core namespace until the returned
// function is called, which returns the pcap file.
func capture(t *testing.T, core *testenv.Netns) func() string {
	t.Helper()
	bin := testenv.Binary(t, "tcpdump", "apt-get install tcpdump")
	file := filepath.Join(t.TempDir(), "br0.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := core.Command(ctx, bin, "-i", "br0", "-n", "-U", "-s", "0", "-w", file)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var stopped bool
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				ready <- nil
				io.Copy(io.Discard, stderr)
				return
			}
		}
		ready <- fmt.Errorf("tcpdump ended before listening")
	}()
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("tcpdump did not start")
	}
	stopFn := func() string {
		if stopped {
			return file
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
		return file
	}
	t.Cleanup(func() { stopFn() })
	return stopFn
}

// Site 1's SA names these as its outer source (dataplane.SA.Local).
var (
	altSrc4 = netip.MustParseAddr("192.0.2.101")
	altSrc6 = netip.MustParseAddr("2001:db8::101")
)

// marker is the ping payload pattern that must never appear on the wire.
const marker = "5ec2e7c0ffee5a1ad0d0cafef00d1234"

func ping(t *testing.T, from *site, dst netip.Addr, size ...int) {
	t.Helper()
	args := []string{"-c", "3", "-i", "0.2", "-W", "3", "-p", marker}
	if len(size) > 0 {
		args = append(args, "-s", fmt.Sprint(size[0]))
	}
	out, err := from.lan.Run("ping", append(args, dst.String())...)
	if err != nil {
		t.Fatalf("ping %v from lan%d: %v\n%s", dst, from.i, err, out)
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Fatalf("ping %v from lan%d lost packets:\n%s", dst, from.i, out)
	}
}

// tcpTransfer sends 4 MiB from one LAN host to another over TCP and
// checks what arrived.
func tcpTransfer(t *testing.T, from, to *site, dst netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := to.lan.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(dst.String(), "5001"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()
	data := make([]byte, 4<<20)
	rand.Read(data)
	var conn net.Conn
	if err := from.lan.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(dst.String(), "5001"), 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := conn.Write(data); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case sum := <-got:
		if sum != sha256.Sum256(data) {
			t.Fatalf("TCP lan%d -> %v: data differs", from.i, dst)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("TCP transfer did not finish")
	}
}

func TestNetnsThreeCPEs(t *testing.T) {
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	testenv.Binary(t, "ping", "apt-get install iputils-ping")
	tshark := testenv.Binary(t, "tshark", "apt-get install tshark")
	core, sites := threeSites(t)
	for _, c := range []struct {
		name   string
		outer6 bool
		raw    bool
		suite  transform.ESP
		mtu    int // underlay MTU; 0 keeps 1500
		// noOffloads: TUNs without the virtio-net header (one packet per
		// read, no coalescing, small buffers)
		noOffloads bool
	}{
		{"outer4-udp-cbc", false, false, transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128}, 0, false},
		{"outer4-raw-gcm", false, true, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, 0, false},
		{"outer6-udp-gcm", true, false, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}, 0, false},
		{"outer6-raw-cbc", true, true, transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256}, 0, false},
		{"outer6-udp-gcm-nooffloads", true, false, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, 0, true},
		// ESP packets bigger than the underlay MTU: UDP GSO refuses the
		// segments, the backend falls back to plain sends, the kernel
		// fragments the outer packets.
		{"outer4-udp-gcm-mtu1280", false, false, transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}, 1280, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.mtu != 0 {
				for _, s := range sites {
					s.cpe.MustIP("link", "set", "eth0", "mtu", fmt.Sprint(c.mtu))
					core.MustIP("link", "set", fmt.Sprintf("c%d", s.i), "mtu", fmt.Sprint(c.mtu))
				}
			}
			start(t, sites, c.outer6, c.raw, c.suite, c.noOffloads)
			defer stop(sites)
			if c.noOffloads {
				// One packet per TUN read: one MTU-sized buffer per
				// outbound batch, no 16-KiB inbound buffers.
				for _, s := range sites {
					if got, limit := s.b.BufferBytes(), 8*(1+64)*2048; got > limit {
						t.Fatalf("cpe%d: %d octets of buffers without offloads, want at most %d", s.i, got, limit)
					}
				}
			}
			defer func() {
				if t.Failed() {
					for _, s := range sites {
						t.Logf("cpe%d: %+v", s.i, s.b.Stats())
					}
				}
			}()
			done := capture(t, core)
			// Every pair of sites, both inner families.
			for _, from := range sites {
				for _, to := range sites {
					if from != to {
						ping(t, from, to.host4)
						ping(t, from, to.host6)
					}
				}
			}
			// Every counter, exactly: each site sent and received 12
			// echo requests and 12 replies, half of them IPv4 (84
			// octets), half IPv6 (104). The kernel TUN reports octets
			// from Write; they must not be taken for packets.
			for _, s := range sites {
				waitFor(t, fmt.Sprintf("cpe%d's counters", s.i), func() bool {
					st := s.b.Stats()
					return st.RxPackets >= 24 && st.TxPackets >= 24
				})
				st := s.b.Stats()
				if st.RxPackets != 24 || st.TxPackets != 24 || st.RxBytes != 12*84+12*104 || st.TxBytes != 12*84+12*104 {
					t.Fatalf("cpe%d stats %+v, want 24 packets of 2256 octets each way", s.i, st)
				}
			}
			// Inner packets of the TUN's full MTU.
			ping(t, sites[0], sites[1].host4, 1400-28)
			ping(t, sites[0], sites[1].host6, 1400-48)
			tcpTransfer(t, sites[0], sites[1], sites[1].host4)
			tcpTransfer(t, sites[2], sites[0], sites[0].host6)
			file := done()
			if keep := os.Getenv("MPSA_KEEP_PCAP"); keep != "" {
				data, _ := os.ReadFile(file)
				os.WriteFile(filepath.Join(keep, c.name+".pcap"), data, 0o600)
			}

			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			pattern, _ := hex.DecodeString(marker)
			if bytes.Contains(raw, pattern) {
				t.Fatal("plaintext ping payload seen on the bridge")
			}
			out, err := exec.Command(tshark, "-r", file, "-Y", "esp", "-T", "fields", "-e", "esp.spi").Output()
			if err != nil {
				t.Fatal(err)
			}
			spis := strings.Fields(string(out))
			if len(spis) < 36 {
				t.Fatalf("tshark saw %d ESP packets, want at least the 36 pings", len(spis))
			}
			for _, spi := range spis {
				if spi != "0xc0ffee01" {
					t.Fatalf("unexpected SPI %s on the wire", spi)
				}
			}
			ipf := "ip.src"
			src1, alt := sites[0].outer4, altSrc4
			if c.outer6 {
				ipf, src1, alt = "ipv6.src", sites[0].outer6, altSrc6
			}
			count := func(filter string) int {
				out, _ := exec.Command(tshark, "-r", file, "-Y", filter).Output()
				return len(strings.Fields(strings.TrimSpace(string(out)))) // > 0 iff any line
			}
			if count("esp && "+ipf+" == "+src1.String()) != 0 || count("esp && "+ipf+" == "+alt.String()) == 0 {
				t.Fatalf("site 1 did not send its ESP from SA.Local %v", alt)
			}
			plain, _ := exec.Command(tshark, "-r", file, "-Y", "icmp || icmpv6.type == 128 || tcp.port == 5001").Output()
			if n := len(strings.TrimSpace(string(plain))); n != 0 {
				t.Fatalf("plaintext inner packets on the wire:\n%s", plain)
			}
			if c.raw {
				udp, _ := exec.Command(tshark, "-r", file, "-Y", "udp.port == 4500").Output()
				if len(strings.TrimSpace(string(udp))) != 0 {
					t.Fatal("raw ESP mode sent ESP-in-UDP")
				}
			}
			for _, s := range sites {
				st := s.b.Stats()
				if st.RxPackets == 0 || st.TxPackets == 0 {
					t.Fatalf("cpe%d stats %+v", s.i, st)
				}
				for reason, n := range st.Drops {
					if reason != "no_route" && reason != "not_ip" {
						t.Errorf("cpe%d dropped %d packets: %s", s.i, n, reason)
					}
				}
			}
		})
	}
}
