package keylog

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/internal/swantest"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/transform"
)

// TestTsharkDecrypts proves the key tables work: it derives IKE and
// CHILD_SA keys with ike/suite for every suite tshark 4.0 can decrypt, sends
// real IKE messages (SK payloads sealed by suite.SKCipher, both directions)
// over UDP 500 and ESP-in-UDP packets over UDP 4500 on the loopback of a
// fresh network namespace, captures them with tcpdump, writes the keys with
// a Writer, and has tshark decrypt the capture with those files as its
// ikev2_decryption_table and esp_sa tables. Every inner payload must come
// out, and no integrity check may fail.
func TestTsharkDecrypts(t *testing.T) {
	tshark := testenv.Binary(t, "tshark", "apt-get install tshark")
	ns := testenv.NewNetns(t, "klog")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config", "wireshark")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := Create(filepath.Join(cfg, "ikev2_decryption_table"), filepath.Join(cfg, "esp_sa"))
	if err != nil {
		t.Fatal(err)
	}

	ikeSuites := []suite.Suite{
		{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196, PRF: transform.PRFHMACSHA1, DH: transform.DHMODP2048},
		{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128, PRF: transform.PRFHMACSHA2256, DH: transform.DHCurve25519},
		{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA384192, PRF: transform.PRFHMACSHA2384, DH: transform.DHECP384},
		{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA512256, PRF: transform.PRFHMACSHA2512, DH: transform.DHECP256},
		{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256},
		{Encr: transform.EncrAESGCM16, KeyBits: 256, PRF: transform.PRFHMACSHA2384, DH: transform.DHECP384},
	}
	espSuites := []transform.ESP{
		{Encr: transform.EncrAESGCM16, KeyBits: 128},
		{Encr: transform.EncrAESGCM16, KeyBits: 256},
		{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196},
		{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128},
	}
	hostI, hostR := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")

	type datagram struct {
		from, to string // "ike" or "esp" endpoints, i (initiator) / r (responder)
		data     []byte
	}
	var (
		pkts      []datagram
		wantIKE   = map[string]bool{} // Vendor ID payloads tshark must show decrypted
		wantInner = map[string]bool{} // inner UDP payloads of ESP packets
	)
	for n, s := range ikeSuites {
		shared := make([]byte, 32)
		rand.Read(shared)
		spiI, spiR := uint64(0x1000000000000000)|uint64(n), uint64(0x2000000000000000)|uint64(n)
		keys, err := suite.DeriveIKEKeys(s, shared, []byte("nonce-i-0123456789abcdef"), []byte("nonce-r-0123456789abcdef"), spiI, spiR)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.IKESA(spiI, spiR, keys); err != nil {
			t.Fatal(err)
		}
		iOut, rOut := mustCiphers(t, keys)
		req := fmt.Sprintf("keylog request %d %v", n, s)
		resp := fmt.Sprintf("keylog response %d %v", n, s)
		pkts = append(pkts,
			datagram{"i", "r", informational(t, iOut, spiI, spiR, 0x08, uint32(n), req)},
			datagram{"r", "i", informational(t, rOut, spiI, spiR, 0x20, uint32(n), resp)})
		wantIKE[req], wantIKE[resp] = true, true

		// CHILD_SAs of this IKE SA, with and without PFS.
		for m, es := range espSuites {
			var pfs []byte
			if m%2 == 1 {
				pfs = shared
			}
			ck, err := keys.DeriveChildKeys(es, pfs, []byte("child-ni"), []byte("child-nr"), uint32(0xc0000000|n<<8|m), uint32(0xd0000000|n<<8|m))
			if err != nil {
				t.Fatal(err)
			}
			if n%2 == 0 {
				err = w.ChildSA(hostI, hostR, &ck)
			} else { // "*" addresses, as behind NAT
				err = w.ESPSA(netip.Addr{}, hostR, &ck.IToR)
				if err == nil {
					err = w.ESPSA(hostR, netip.Addr{}, &ck.RToI)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			for dir, k := range map[string]*esp.Keys{"i": &ck.IToR, "r": &ck.RToI} {
				msg := fmt.Sprintf("keylog esp %d/%d from %s %v", n, m, dir, es)
				to := map[string]string{"i": "r", "r": "i"}[dir]
				pkts = append(pkts, datagram{dir + "esp", to + "esp", espPacket(t, k, uint32(1+m), msg)})
				wantInner[msg] = true
			}
		}
		keys.Wipe()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Capture on the namespace's loopback.
	capture := swantest.StartCapture(t, ns, "lo", len(pkts), "udp")
	capFile := capture.Path
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conns := map[string]*net.UDPConn{}
	err = ns.Do(func() error {
		for name, ap := range map[string]string{"i": "127.0.0.1:500", "r": "127.0.0.2:500", "iesp": "127.0.0.1:4500", "resp": "127.0.0.2:4500"} {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ap)))
			if err != nil {
				return err
			}
			conns[name] = c
		}
		return nil
	})
	for _, c := range conns {
		defer c.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if _, err := conns[p.from].WriteToUDP(p.data, conns[p.to].LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
	capture.Wait(t, 30*time.Second)

	// Decrypt with the key files as tshark's personal configuration.
	cmd := exec.CommandContext(ctx, tshark, "-r", capFile, "-n",
		"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;",
		"-e", "frame.number", "-e", "isakmp.vid_bytes", "-e", "isakmp.notify.msgtype", "-e", "esp.spi",
		"-e", "esp.icv_good", "-e", "data.data", "-e", "_ws.expert.message")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Dir(cfg), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	var frames int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 7 {
			continue
		}
		frames++
		if strings.Contains(strings.ToLower(f[6]), "incorrect") || strings.Contains(strings.ToLower(f[6]), "bad") {
			t.Errorf("frame %s: %s", f[0], f[6])
		}
		if f[1] != "" {
			v := unhexString(t, f[1])
			if !wantIKE[v] {
				t.Errorf("frame %s: unexpected Vendor ID %q", f[0], v)
			}
			delete(wantIKE, v)
			if f[2] != "16384" {
				t.Errorf("frame %s: notify %q, want INITIAL_CONTACT (16384)", f[0], f[2])
			}
		}
		if f[3] != "" {
			if f[4] != "1" && f[4] != "True" {
				t.Errorf("frame %s (SPI %s): ICV not reported good: %q", f[0], f[3], f[4])
			}
			v := unhexString(t, f[5])
			if !wantInner[v] {
				t.Errorf("frame %s: unexpected inner payload %q", f[0], v)
			}
			delete(wantInner, v)
		}
	}
	if frames != len(pkts) {
		t.Errorf("tshark printed %d frames, sent %d:\n%s", frames, len(pkts), out)
	}
	for v := range wantIKE {
		t.Errorf("IKE payload %q not decrypted", v)
	}
	for v := range wantInner {
		t.Errorf("ESP payload %q not decrypted", v)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("tshark output:\n%s", out)
	}

	// Controls: without the tables nothing decrypts; with wrong integrity
	// keys tshark flags every CBC message's checksum as incorrect. Both
	// show the results above come from the files Writer wrote.
	table, err := os.ReadFile(filepath.Join(cfg, "ikev2_decryption_table"))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	cbcLines := 0
	for _, line := range strings.Split(strings.TrimSpace(string(table)), "\n") {
		f := strings.Split(line, ",")
		if f[5] != "" { // CBC: flip the first nibble of SK_ai and SK_ar
			f[5], f[6] = flipNibble(f[5]), flipNibble(f[6])
			cbcLines++
		}
		bad = append(bad, strings.Join(f, ","))
	}
	badCfg := filepath.Join(dir, "bad", "wireshark")
	os.MkdirAll(badCfg, 0o700)
	os.WriteFile(filepath.Join(badCfg, "ikev2_decryption_table"), []byte(strings.Join(bad, "\n")+"\n"), 0o600)
	for _, tc := range []struct {
		name, cfgHome string
		check         func(out string)
	}{
		{"no tables", filepath.Join(dir, "empty"), func(out string) {
			if strings.Contains(out, "|16384|") || strings.Count(out, "|1|") > 0 {
				t.Errorf("decrypted without key tables:\n%s", out)
			}
		}},
		{"wrong integrity keys", filepath.Dir(badCfg), func(out string) {
			if n := strings.Count(out, "Integrity Checksum Data is incorrect"); n != 2*cbcLines {
				t.Errorf("%d checksum failures, want %d:\n%s", n, 2*cbcLines, out)
			}
		}},
	} {
		cmd := exec.CommandContext(ctx, tshark, "-r", capFile, "-n", "-o", "esp.enable_encryption_decode:TRUE",
			"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;",
			"-e", "frame.number", "-e", "isakmp.notify.msgtype", "-e", "esp.icv_good", "-e", "_ws.expert.message")
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+tc.cfgHome, "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: tshark: %v\n%s", tc.name, err, out)
		}
		tc.check(string(out))
	}
}

func flipNibble(h string) string {
	if h == "" {
		return h
	}
	c := "0"
	if h[0] == '0' {
		c = "1"
	}
	return c + h[1:]
}

func mustCiphers(t *testing.T, k *suite.IKEKeys) (iOut, rOut *suite.SKCipher) {
	t.Helper()
	iOut, _, err := k.SKCiphers(true, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rOut, _, err = k.SKCiphers(false, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return iOut, rOut
}

// informational builds an INFORMATIONAL message (RFC 7296 §1.4) whose SK
// payload carries N(INITIAL_CONTACT) and a Vendor ID holding text.
func informational(t *testing.T, c *suite.SKCipher, spiI, spiR uint64, flags byte, msgID uint32, text string) []byte {
	t.Helper()
	const (
		payloadSK     = 46
		payloadNotify = 41
		payloadVendor = 43
	)
	var inner []byte
	inner = append(inner, payloadVendor, 0, 0, 8, 0, 0, 0x40, 0x00) // N: proto 0, no SPI, type 16384
	inner = append(inner, 0, 0)
	inner = binary.BigEndian.AppendUint16(inner, uint16(4+len(text)))
	inner = append(inner, text...)

	body := c.SealedLen(len(inner))
	msg := binary.BigEndian.AppendUint64(nil, spiI)
	msg = binary.BigEndian.AppendUint64(msg, spiR)
	msg = append(msg, payloadSK, 0x20, 37, flags)
	msg = binary.BigEndian.AppendUint32(msg, msgID)
	msg = binary.BigEndian.AppendUint32(msg, uint32(28+4+body))
	msg = append(msg, payloadNotify, 0)
	msg = binary.BigEndian.AppendUint16(msg, uint16(4+body))
	msg, err := c.Seal(msg, inner)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// espPacket builds one ESP packet (RFC 4303; RFC 4106 for AES-GCM) in
// tunnel mode carrying an IPv4/UDP datagram with payload text.
func espPacket(t *testing.T, k *esp.Keys, seq uint32, text string) []byte {
	t.Helper()
	ip := make([]byte, 28, 28+len(text))
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(text)))
	copy(ip[12:], []byte{10, 99, 2, 1})
	copy(ip[16:], []byte{10, 99, 1, 1})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[20:], 5000)
	binary.BigEndian.PutUint16(ip[22:], 5001)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(text)))
	ip = append(ip, text...)

	align := 4
	if k.Suite.Encr == transform.EncrAESCBC {
		align = aes.BlockSize
	}
	pt := append([]byte(nil), ip...)
	for i := byte(1); (len(pt)+2)%align != 0; i++ {
		pt = append(pt, i)
	}
	pt = append(pt, byte(len(pt)-len(ip)), 4) // Pad Length, Next Header = IPv4

	hdr := binary.BigEndian.AppendUint32(nil, k.SPI)
	hdr = binary.BigEndian.AppendUint32(hdr, seq)
	switch k.Suite.Encr {
	case transform.EncrAESGCM16:
		key, salt := k.EncKey[:len(k.EncKey)-4], k.EncKey[len(k.EncKey)-4:]
		blk, _ := aes.NewCipher(key)
		g, _ := cipher.NewGCM(blk)
		iv := make([]byte, 8)
		rand.Read(iv)
		out := append(hdr, iv...)
		return g.Seal(out, append(append([]byte(nil), salt...), iv...), pt, hdr)
	default:
		blk, _ := aes.NewCipher(k.EncKey)
		iv := make([]byte, 16)
		rand.Read(iv)
		ct := make([]byte, len(pt))
		cipher.NewCBCEncrypter(blk, iv).CryptBlocks(ct, pt)
		out := append(append(hdr, iv...), ct...)
		var h func() hash.Hash
		n := 12
		switch k.Suite.Integ {
		case transform.IntegHMACSHA196:
			h = sha1.New
		case transform.IntegHMACSHA256128:
			h, n = sha256.New, 16
		default:
			t.Fatalf("test ESP integrity %v", k.Suite.Integ)
		}
		m := hmac.New(h, k.IntegKey)
		m.Write(out)
		return append(out, m.Sum(nil)[:n]...)
	}
}

func unhexString(t *testing.T, s string) string {
	t.Helper()
	s = strings.ReplaceAll(s, ":", "")
	b := make([]byte, len(s)/2)
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil && len(s) > 0 {
		t.Fatalf("tshark field %q: %v", s, err)
	}
	return string(b)
}
