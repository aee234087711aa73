package suite_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/ike/auth"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/internal/swantest"
	"github.com/mpsa-vpn/mpsa/transform"
)

// sswCase is one IKE SA strongSwan negotiates in TestStrongSwanCrossCheck.
type sswCase struct {
	ike, esp string
	suite    suite.Suite
	espSuite transform.ESP
}

var sswCases = []sswCase{
	{"aes256-sha256-x25519", "aes256-sha256",
		suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128, PRF: transform.PRFHMACSHA2256, DH: transform.DHCurve25519},
		transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA256128}},
	{"aes128gcm16-prfsha256-ecp256", "aes128gcm16",
		suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 128, PRF: transform.PRFHMACSHA2256, DH: transform.DHECP256},
		transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 128}},
	{"aes256-sha384-modp2048", "aes128-sha1",
		suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA384192, PRF: transform.PRFHMACSHA2384, DH: transform.DHMODP2048},
		transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196}},
	{"chacha20poly1305-prfsha512-ecp384", "aes256gcm16",
		suite.Suite{Encr: transform.EncrChaCha20Poly1305, PRF: transform.PRFHMACSHA2512, DH: transform.DHECP384},
		transform.ESP{Encr: transform.EncrAESGCM16, KeyBits: 256}},
	{"aes128-sha1-ecp256", "chacha20poly1305",
		suite.Suite{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA196, PRF: transform.PRFHMACSHA1, DH: transform.DHECP256},
		transform.ESP{Encr: transform.EncrChaCha20Poly1305}},
	{"aes256gcm16-prfsha384-x25519", "aes256-sha512",
		suite.Suite{Encr: transform.EncrAESGCM16, KeyBits: 256, PRF: transform.PRFHMACSHA2384, DH: transform.DHCurve25519},
		transform.ESP{Encr: transform.EncrAESCBC, KeyBits: 256, Integ: transform.IntegHMACSHA512256}},
}

const sswPSK = "interop-psk-0123456789"

// TestStrongSwanCrossCheck lets two strongSwan charon daemons (in their own
// network namespaces, kernel-libipsec) establish one IKE SA with a CHILD_SA
// per suite of sswCases, captures the exchanges, and reads the keys charon
// logs at level 4. For every IKE SA it checks, against strongSwan:
//
//   - SKEYSEED's seven keys from DeriveIKEKeys (given charon's DH secret and
//     the captured nonces and SPIs);
//   - SKCipher.Open on the captured IKE_AUTH request and response;
//   - auth.SignedOctets and auth.PSKAuth against the AUTH payloads inside;
//   - DeriveChildKeys against the CHILD_SA keys charon logs.
//
// Every captured KE payload also passes DH public value validation.
func TestStrongSwanCrossCheck(t *testing.T) {
	swantest.Require(t)
	lab := swantest.NewLab(t, "sswr", "sswi")
	// kernel-libipsec routes each CHILD_SA's traffic with a source address
	// from the local traffic selector, so those addresses must exist (the
	// lab has 10.99.2.1).
	for i := 1; i < len(sswCases); i++ {
		lab.I.MustIP("addr", "add", fmt.Sprintf("10.99.2.%d/32", i+1), "dev", "lo")
	}

	var ikeProps, espProps []string
	for _, c := range sswCases {
		ikeProps = append(ikeProps, c.ike)
		espProps = append(espProps, c.esp)
	}
	respConf := fmt.Sprintf(`connections {
	rw {
		version = 2
		local_addrs = 192.0.2.1
		proposals = %s
		unique = never
		local { auth = psk
			id = hub.example.net }
		remote { auth = psk }
		children { net { local_ts = 10.99.1.0/24
			remote_ts = 10.99.2.0/24
			esp_proposals = %s } }
	}
}
secrets { ike-1 { secret = %q } }
`, strings.Join(ikeProps, ","), strings.Join(espProps, ","), sswPSK)
	var initConf strings.Builder
	initConf.WriteString("connections {\n")
	for i, c := range sswCases {
		fmt.Fprintf(&initConf, `	c%d {
		version = 2
		remote_addrs = 192.0.2.1
		proposals = %s
		local { auth = psk
			id = cpe%d.example.net }
		remote { auth = psk
			id = hub.example.net }
		children { c%d-net { local_ts = 10.99.2.%d/32
			remote_ts = 10.99.1.0/24
			esp_proposals = %s } }
	}
`, i, c.ike, i, i, i+1, c.esp)
	}
	fmt.Fprintf(&initConf, "}\nsecrets { ike-1 { secret = %q } }\n", sswPSK)

	// Level 4 of ike and chd: charon dumps its DH secret and keys.
	keyLog := map[string]int{"ike": 4, "chd": 4}
	swantest.Start(t, lab.R, swantest.Config{Name: "resp", Swanctl: respConf, Log: keyLog})
	initiator := swantest.Start(t, lab.I, swantest.Config{Name: "init", Swanctl: initConf.String(), Log: keyLog})

	// Capture IKE (port 500, and 4500 with the non-ESP marker) on the
	// initiator's link until it holds the 4 messages of every IKE SA
	// (retransmissions under load may come on top).
	capture := swantest.StartCapture(t, lab.I, "v-i", 0, "udp port 500 or (udp port 4500 and udp[8:4] = 0)")
	for i := range sswCases {
		initiator.MustSwanctl("--initiate", "--ike", fmt.Sprintf("c%d", i), "--child", fmt.Sprintf("c%d-net", i), "--timeout", "30")
	}
	msgs := ikeMessages(capture.WaitFor(t, 30*time.Second, func(ds []swantest.Datagram) bool {
		return completeExchanges(ikeMessages(ds)) >= len(sswCases)
	}))
	logs := parseCharonLog(t, initiator.LogPath())
	claimed := map[uint64]bool{}
	for i, c := range sswCases {
		t.Run(c.ike, func(t *testing.T) {
			checkStrongSwanSA(t, c, fmt.Sprintf("c%d", i), msgs, logs[fmt.Sprintf("c%d", i)], claimed)
		})
	}
}

// ikeMsg is one captured IKE message (non-ESP marker removed).
type ikeMsg []byte

func (m ikeMsg) spiI() uint64      { return binary.BigEndian.Uint64(m[0:8]) }
func (m ikeMsg) spiR() uint64      { return binary.BigEndian.Uint64(m[8:16]) }
func (m ikeMsg) exchange() byte    { return m[18] }
func (m ikeMsg) isResponse() bool  { return m[19]&0x20 != 0 }
func (m ikeMsg) firstPayload() int { return int(m[16]) }

// payloads walks a payload chain starting with type first.
func payloads(t *testing.T, first int, b []byte) map[int][]byte {
	t.Helper()
	out := map[int][]byte{}
	for next := first; next != 0; {
		if len(b) < 4 {
			t.Fatalf("truncated payload chain")
		}
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if l < 4 || l > len(b) {
			t.Fatalf("bad payload length %d", l)
		}
		out[next] = b[4:l]
		next, b = int(b[0]), b[l:]
	}
	return out
}

func checkStrongSwanSA(t *testing.T, c sswCase, conn string, msgs []ikeMsg, log map[string][][]byte, claimed map[uint64]bool) {
	if log == nil {
		t.Fatalf("no level-4 key log for %s", conn)
	}
	// The first IKE_SA_INIT request whose SPIi is not yet taken belongs to
	// this connection: initiations ran one after another.
	var initReq, initResp, authReq, authResp ikeMsg
	spiI := uint64(0)
	for _, m := range msgs {
		if m.exchange() == 34 && !m.isResponse() && spiI == 0 && !claimed[m.spiI()] {
			spiI, initReq = m.spiI(), m
			claimed[spiI] = true
		}
	}
	for _, m := range msgs {
		if m.spiI() != spiI || spiI == 0 {
			continue
		}
		switch {
		case m.exchange() == 34 && m.isResponse():
			initResp = m
		case m.exchange() == 35 && !m.isResponse():
			authReq = m
		case m.exchange() == 35 && m.isResponse():
			authResp = m
		}
	}
	if initReq == nil || initResp == nil || authReq == nil || authResp == nil {
		var seen []string
		for _, m := range msgs {
			seen = append(seen, fmt.Sprintf("%016x/%d/resp=%v", m.spiI(), m.exchange(), m.isResponse()))
		}
		t.Fatalf("exchange of %s not fully captured; captured %v", conn, seen)
	}
	reqP := payloads(t, initReq.firstPayload(), initReq[28:])
	respP := payloads(t, initResp.firstPayload(), initResp[28:])
	ni, nr := reqP[40], respP[40]
	for _, ke := range [][]byte{reqP[34], respP[34]} { // group (2) + reserved (2) + data
		d, err := suite.GenerateDH(c.suite.DH, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.SharedSecret(ke[4:]); err != nil {
			t.Errorf("strongSwan's %v public value rejected: %v", c.suite.DH, err)
		}
	}

	shared := one(t, log, "shared Diffie Hellman secret")
	k, err := suite.DeriveIKEKeys(c.suite, shared, ni, nr, spiI, initResp.spiR())
	if err != nil {
		t.Fatal(err)
	}
	for label, got := range map[string][]byte{
		"Sk_d secret": k.SKd, "Sk_ai secret": k.SKai, "Sk_ar secret": k.SKar, "Sk_ei secret": k.SKei,
		"Sk_er secret": k.SKer, "Sk_pi secret": k.SKpi, "Sk_pr secret": k.SKpr,
	} {
		if len(got) == 0 && log[label] == nil { // AEAD: strongSwan logs no SK_a*
			continue
		}
		if wantV := one(t, log, label); !bytes.Equal(got, wantV) {
			t.Errorf("%s = %x, strongSwan %x", label, got, wantV)
		}
	}

	// Open both IKE_AUTH messages and check the AUTH payloads in them.
	_, iIn, err := k.SKCiphers(true, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, rIn, err := k.SKCiphers(false, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		name           string
		msg            ikeMsg
		in             *suite.SKCipher
		skp            []byte
		realMsg, nonce []byte
		idType         int
	}{
		{"initiator", authReq, rIn, k.SKpi, initReq, nr, 35},
		{"responder", authResp, iIn, k.SKpr, initResp, ni, 36},
	} {
		if side.msg.firstPayload() != 46 {
			t.Fatalf("%s IKE_AUTH starts with payload %d, not SK", side.name, side.msg.firstPayload())
		}
		inner, err := side.in.Open(nil, side.msg, 32)
		if err != nil {
			t.Fatalf("%s IKE_AUTH: %v", side.name, err)
		}
		p := payloads(t, int(side.msg[28]), inner)
		idp, authp := p[side.idType], p[39]
		if idp == nil || authp == nil {
			t.Fatalf("%s IKE_AUTH lacks ID or AUTH: payloads %v", side.name, keys(p))
		}
		id, err := auth.NewID(auth.IDType(idp[0]), idp[4:])
		if err != nil {
			t.Fatal(err)
		}
		octets := auth.SignedOctets(k.PRF, side.skp, side.realMsg, side.nonce, id)
		if auth.Method(authp[0]) != auth.MethodPSK {
			t.Fatalf("%s AUTH method %d", side.name, authp[0])
		}
		if err := auth.VerifyPSK(k.PRF, []byte(sswPSK), octets, authp[4:]); err != nil {
			t.Errorf("%s (%v) AUTH: %v", side.name, id, err)
		}
	}

	ck, err := k.DeriveChildKeys(c.espSuite, nil, ni, nr, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for label, got := range map[string][]byte{
		"encryption initiator key": ck.IToR.EncKey, "encryption responder key": ck.RToI.EncKey,
		"integrity initiator key": ck.IToR.IntegKey, "integrity responder key": ck.RToI.IntegKey,
	} {
		wantV := log[label]
		if len(got) == 0 && len(wantV) == 0 { // AEAD: strongSwan logs no integrity keys
			continue
		}
		if len(wantV) != 1 || !bytes.Equal(got, wantV[0]) {
			t.Errorf("CHILD_SA %s = %x, strongSwan %x", label, got, wantV)
		}
	}
}

func keys(m map[int][]byte) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

func one(t *testing.T, log map[string][][]byte, label string) []byte {
	t.Helper()
	v := log[label]
	if len(v) != 1 {
		t.Fatalf("strongSwan logged %q %d times", label, len(v))
	}
	return v[0]
}

// ikeMessages returns the IKE messages of captured datagrams, removing the
// non-ESP marker on port 4500.
func ikeMessages(ds []swantest.Datagram) []ikeMsg {
	var out []ikeMsg
	for _, d := range ds {
		payload := d.Payload
		if d.Src.Port() == 4500 || d.Dst.Port() == 4500 {
			if len(payload) < 4 {
				continue
			}
			payload = payload[4:]
		}
		if len(payload) >= 28 {
			out = append(out, ikeMsg(payload))
		}
	}
	return out
}

// completeExchanges counts the IKE SAs (by SPIi) of which msgs hold the
// IKE_SA_INIT and IKE_AUTH requests and responses.
func completeExchanges(msgs []ikeMsg) int {
	seen := map[uint64]int{} // SPIi -> bit set of the four messages
	for _, m := range msgs {
		bit := 0
		switch m.exchange() {
		case 34:
		case 35:
			bit = 2
		default:
			continue
		}
		if m.isResponse() {
			bit++
		}
		seen[m.spiI()] |= 1 << bit
	}
	n := 0
	for _, b := range seen {
		if b == 0xf {
			n++
		}
	}
	return n
}

var (
	logStart = regexp.MustCompile(`\[(?:IKE|CHD)\] <([^|>]+)\|\d+> (.+?) => (\d+) bytes @`)
	logHex   = regexp.MustCompile(`\[(?:IKE|CHD)\] <([^|>]+)\|\d+> +\d+: (.*)$`)
)

// parseCharonLog collects the hex dumps charon logs at level 4 ("label => N
// bytes @ addr" and dump lines), per connection name and label.
func parseCharonLog(t *testing.T, path string) map[string]map[string][][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][][]byte{}
	var (
		conn, label string
		want        int
		buf         []byte
	)
	flush := func() {
		if label != "" && len(buf) == want {
			if out[conn] == nil {
				out[conn] = map[string][][]byte{}
			}
			out[conn][label] = append(out[conn][label], buf)
		}
		label, buf = "", nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := logHex.FindStringSubmatch(line); m != nil && label != "" && m[1] == conn {
			hexPart := m[2]
			if len(hexPart) > 48 {
				hexPart = hexPart[:48]
			}
			for _, tok := range strings.Fields(hexPart) {
				v, err := hex.DecodeString(tok)
				if err != nil || len(v) != 1 {
					break
				}
				buf = append(buf, v[0])
			}
			continue
		}
		flush()
		if m := logStart.FindStringSubmatch(line); m != nil {
			conn, label = m[1], m[2]
			fmt.Sscan(m[3], &want)
		}
	}
	flush()
	return out
}
