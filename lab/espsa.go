package lab

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/keylog"
	"github.com/mpsa-vpn/mpsa/transform"
)

// Limits of ParseESPSA.
const (
	MaxESPSAFile    = 1 << 20
	MaxESPSAEntries = 4096
)

// ESPSAEntry is one line of a Wireshark esp_sa table (ike/keylog writes
// them): one direction of one ESP SA. Keys holds secrets: Wipe it.
type ESPSAEntry struct {
	Proto    string // IPv4 or IPv6
	Src, Dst string // outer addresses, "*" for any
	Keys     esp.Keys
}

// ParseESPSA reads an esp_sa table (CSV, quoted fields):
//
//	"IPv4","SRC","DST","0xSPI","ENCR","0xKEY","AUTH","0xKEY"
//
// with the names ike/keylog writes. Unknown algorithms, bad hex and key
// lengths that do not fit the algorithm are errors naming the line.
func ParseESPSA(r io.Reader) ([]ESPSAEntry, error) {
	cr := csv.NewReader(io.LimitReader(r, MaxESPSAFile))
	cr.FieldsPerRecord = 8
	cr.ReuseRecord = true
	var out []ESPSAEntry
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			WipeESPSA(out)
			return nil, fmt.Errorf("lab: esp_sa: %w", err)
		}
		if len(out) == MaxESPSAEntries {
			WipeESPSA(out)
			return nil, fmt.Errorf("lab: esp_sa: more than %d entries", MaxESPSAEntries)
		}
		e, err := parseESPSALine(rec)
		if err != nil {
			WipeESPSA(out)
			return nil, fmt.Errorf("lab: esp_sa line %d: %w", line, err)
		}
		out = append(out, e)
	}
}

func parseESPSALine(rec []string) (ESPSAEntry, error) {
	e := ESPSAEntry{Proto: rec[0], Src: rec[1], Dst: rec[2]}
	if e.Proto != "IPv4" && e.Proto != "IPv6" {
		return e, fmt.Errorf("protocol %q", e.Proto)
	}
	spi, err := strconv.ParseUint(strings.TrimPrefix(rec[3], "0x"), 16, 32)
	if err != nil || !strings.HasPrefix(rec[3], "0x") {
		return e, fmt.Errorf("SPI %q", rec[3])
	}
	enc, err := hexKey(rec[5])
	if err != nil {
		return e, fmt.Errorf("encryption key: %w", err)
	}
	integ, err := hexKey(rec[7])
	if err != nil {
		clear(enc)
		return e, fmt.Errorf("authentication key: %w", err)
	}
	e.Keys = esp.Keys{SPI: uint32(spi), EncKey: enc, IntegKey: integ}
	switch rec[4] {
	case "AES-CBC [RFC3602]":
		e.Keys.Suite.Encr, e.Keys.Suite.KeyBits = transform.EncrAESCBC, uint16(len(enc)*8)
	case "AES-GCM with 16 octet ICV [RFC4106]":
		e.Keys.Suite.Encr, e.Keys.Suite.KeyBits = transform.EncrAESGCM16, uint16(max(len(enc)-4, 0)*8)
	default:
		e.Keys.Wipe()
		return e, fmt.Errorf("encryption algorithm %q", rec[4])
	}
	switch rec[6] {
	case "NULL":
		e.Keys.Suite.Integ = transform.IntegNone
	case "HMAC-SHA-1-96 [RFC2404]":
		e.Keys.Suite.Integ = transform.IntegHMACSHA196
	case "HMAC-SHA-256-128 [RFC4868]":
		e.Keys.Suite.Integ = transform.IntegHMACSHA256128
	case "HMAC-SHA-384-192 [RFC4868]":
		e.Keys.Suite.Integ = transform.IntegHMACSHA384192
	case "HMAC-SHA-512-256 [RFC4868]":
		e.Keys.Suite.Integ = transform.IntegHMACSHA512256
	default:
		e.Keys.Wipe()
		return e, fmt.Errorf("authentication algorithm %q", rec[6])
	}
	if err := e.Keys.Suite.Validate(); err != nil {
		e.Keys.Wipe()
		return e, err
	}
	if err := e.Keys.Validate(); err != nil {
		e.Keys.Wipe()
		return e, err
	}
	return e, nil
}

func hexKey(s string) ([]byte, error) {
	if !strings.HasPrefix(s, "0x") {
		return nil, errors.New("expected 0x and hex digits")
	}
	return hex.DecodeString(s[2:])
}

// WipeESPSA wipes the keys of entries.
func WipeESPSA(entries []ESPSAEntry) {
	for i := range entries {
		entries[i].Keys.Wipe()
	}
}

// Decrypted is what opening captured ESP packets with some keys gave.
type Decrypted struct {
	Opened int            // authenticated and decrypted
	Drops  map[string]int // packets refused, by esp.Drop reason
	Inner  [][]byte       // the inner packets of those opened
}

// Decrypt opens every ESP packet of pkts whose SPI is spi with keys, as a
// receiver holding them would (keys.SPI is taken to be spi, so keys of
// another SA are tried on these packets too); the packets are not
// modified.
func Decrypt(pkts []Packet, spi uint32, keys esp.Keys, senderIDBits uint8) (*Decrypted, error) {
	k := keys.Clone()
	k.SPI = spi
	defer k.Wipe()
	sa, err := esp.NewSA(esp.Config{Keys: k, SenderIDBits: senderIDBits})
	if err != nil {
		return nil, err
	}
	defer sa.Wipe()
	d := &Decrypted{Drops: map[string]int{}}
	for _, p := range pkts {
		if p.Info.Kind != KindESP || p.Info.SPI != spi {
			continue
		}
		buf := append([]byte(nil), p.Info.ESP...)
		pkt, drop := sa.Open(buf)
		if drop != esp.DropNone {
			d.Drops[drop.String()]++
			continue
		}
		d.Opened++
		d.Inner = append(d.Inner, append([]byte(nil), pkt.Inner...))
	}
	return d, nil
}

// TsharkCount runs tshark on a capture with esp_sa entries for keys (any
// addresses) as its configuration, ESP decryption and authentication
// checks on, and counts the frames matching the display filter (such as
// "icmp": only decrypted inner packets match). dir receives tshark's
// configuration directory.
func TsharkCount(ctx context.Context, tshark, pcap, dir, filter string, keys ...esp.Keys) (int, error) {
	cfg := filepath.Join(dir, "wireshark")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	var table []byte
	defer func() { clear(table) }()
	for i := range keys {
		var err error
		if table, err = keylog.AppendESPLine(table, netip.Addr{}, netip.Addr{}, &keys[i]); err != nil {
			return 0, err
		}
	}
	if err := writePrivate(filepath.Join(cfg, "esp_sa"), table); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, tshark, "-r", pcap, "-n", "-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE", "-Y", filter, "-T", "fields", "-e", "frame.number")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, fmt.Errorf("lab: tshark: %v: %s", err, ee.Stderr)
		}
		return 0, fmt.Errorf("lab: tshark: %w", err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n, nil
}
