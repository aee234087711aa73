// Package keylog writes IKE and ESP keys in the two Wireshark key tables
// (user access tables) so an operator can decrypt a capture:
// ikev2_decryption_table for IKE SAs and esp_sa for ESP SAs, in the formats
// tshark 4.0 accepts (the same files strongSwan's save-keys plugin writes,
// with its AES-GCM ESP quirk fixed).
//
// Export is opt-in: a nil *Writer writes nothing. Files are created with mode
// 0600 and refused if they exist with a wider mode. Feed them to tshark with
//
//	tshark -o 'uat:ikev2_decryption_table:"<file>"' ...
//
// or copy them to ~/.config/wireshark/ikev2_decryption_table and esp_sa.
//
// Transforms tshark 4.0 cannot decrypt (ChaCha20-Poly1305) are skipped with
// ErrNotExportable rather than written, because one line tshark cannot parse
// makes it refuse the whole table.
package keylog

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/ike/suite"
	"github.com/mpsa-vpn/mpsa/transform"
)

// ErrNotExportable means Wireshark has no name for an SA's transforms; the
// line was not written.
var ErrNotExportable = errors.New("keylog: transform not supported by Wireshark")

// Writer appends key lines to the two tables. It is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	ike *os.File // nil: IKE export off
	esp *os.File // nil: ESP export off
}

// Create opens (creating with mode 0600, appending) the IKE table at ikePath
// and the ESP table at espPath; an empty path turns that table off.
func Create(ikePath, espPath string) (*Writer, error) {
	w := &Writer{}
	var err error
	if ikePath != "" {
		if w.ike, err = openPrivate(ikePath); err != nil {
			return nil, err
		}
	}
	if espPath != "" {
		if w.esp, err = openPrivate(espPath); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

func openPrivate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keylog: %w", err)
	}
	st, err := f.Stat()
	if err == nil && (!st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0) {
		err = fmt.Errorf("%s must be a regular file of mode 0600 (is %v)", path, st.Mode())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("keylog: %w", err)
	}
	return f, nil
}

// Close closes the files. A nil Writer is fine.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, f := range []*os.File{w.ike, w.esp} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	w.ike, w.esp = nil, nil
	return errors.Join(errs...)
}

// IKESA writes one ikev2_decryption_table line for an IKE SA: its SPIs (SPIi
// of whoever initiated that SA, as on the wire) and keys.
func (w *Writer) IKESA(spiI, spiR uint64, k *suite.IKEKeys) error {
	if w == nil {
		return nil
	}
	line, err := AppendIKELine(nil, spiI, spiR, k)
	if err != nil {
		return err
	}
	defer clear(line)
	return w.write(&w.ike, line)
}

// ESPSA writes one esp_sa line for one direction of an ESP SA: src and dst
// are the outer addresses of its packets at the capture point; an invalid
// (zero) address writes "*", any address (use it behind NAT or with MOBIKE).
func (w *Writer) ESPSA(src, dst netip.Addr, k *esp.Keys) error {
	if w == nil {
		return nil
	}
	line, err := AppendESPLine(nil, src, dst, k)
	if err != nil {
		return err
	}
	defer clear(line)
	return w.write(&w.esp, line)
}

// ChildSA writes both directions of a CHILD_SA: initiator and responder are
// the outer addresses of the exchange's initiator and responder.
func (w *Writer) ChildSA(initiator, responder netip.Addr, c *suite.ChildSAKeys) error {
	if w == nil {
		return nil
	}
	return errors.Join(w.ESPSA(initiator, responder, &c.IToR), w.ESPSA(responder, initiator, &c.RToI))
}

func (w *Writer) write(f **os.File, line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *f == nil {
		return nil
	}
	if _, err := (*f).Write(line); err != nil {
		return fmt.Errorf("keylog: %w", err)
	}
	return nil
}

// ikeEncrName is Wireshark's name of an IKE encryption transform.
func ikeEncrName(e transform.Encr, bits uint16) (string, bool) {
	switch e {
	case transform.EncrAESCBC:
		return fmt.Sprintf("AES-CBC-%d [RFC3602]", bits), bits == 128 || bits == 256
	case transform.EncrAESGCM16:
		return fmt.Sprintf("AES-GCM-%d with 16 octet ICV [RFC5282]", bits), bits == 128 || bits == 256
	}
	return "", false
}

func ikeIntegName(i transform.Integ) (string, bool) {
	switch i {
	case transform.IntegNone:
		return "NONE [RFC4306]", true
	case transform.IntegHMACSHA196:
		return "HMAC_SHA1_96 [RFC2404]", true
	case transform.IntegHMACSHA256128:
		return "HMAC_SHA2_256_128 [RFC4868]", true
	case transform.IntegHMACSHA384192:
		return "HMAC_SHA2_384_192 [RFC4868]", true
	case transform.IntegHMACSHA512256:
		return "HMAC_SHA2_512_256 [RFC4868]", true
	}
	return "", false
}

func espEncrName(e transform.Encr) (string, bool) {
	switch e {
	case transform.EncrAESCBC:
		return "AES-CBC [RFC3602]", true
	case transform.EncrAESGCM16:
		return "AES-GCM with 16 octet ICV [RFC4106]", true
	}
	return "", false
}

func espIntegName(i transform.Integ) (string, bool) {
	switch i {
	case transform.IntegNone:
		return "NULL", true
	case transform.IntegHMACSHA196:
		return "HMAC-SHA-1-96 [RFC2404]", true
	case transform.IntegHMACSHA256128:
		return "HMAC-SHA-256-128 [RFC4868]", true
	case transform.IntegHMACSHA384192:
		return "HMAC-SHA-384-192 [RFC4868]", true
	case transform.IntegHMACSHA512256:
		return "HMAC-SHA-512-256 [RFC4868]", true
	}
	return "", false
}

// AppendIKELine appends one ikev2_decryption_table record (with its newline):
//
//	SPIi,SPIr,SK_ei,SK_er,"ENCR",SK_ai,SK_ar,"INTEG"
//
// SPIs and keys in plain hex; AEAD keys include the salt and leave SK_a*
// empty with "NONE [RFC4306]".
func AppendIKELine(b []byte, spiI, spiR uint64, k *suite.IKEKeys) ([]byte, error) {
	en, ok1 := ikeEncrName(k.Suite.Encr, k.Suite.KeyBits)
	in, ok2 := ikeIntegName(k.Suite.Integ)
	if !ok1 || !ok2 {
		return b, fmt.Errorf("%w: IKE SA %016x_i %016x_r uses %v", ErrNotExportable, spiI, spiR, k.Suite)
	}
	b = fmt.Appendf(b, "%016x,%016x,%x,%x,%q,%x,%x,%q\n", spiI, spiR, k.SKei, k.SKer, en, k.SKai, k.SKar, in)
	return b, nil
}

// AppendESPLine appends one esp_sa record (with its newline):
//
//	"IPv4","SRC","DST","0xSPI","ENCR","0xKEY","AUTH","0xKEY"
//
// AES-GCM is written as "AES-GCM with 16 octet ICV [RFC4106]" with "NULL"
// authentication and key "0x", the form tshark 4.0 decrypts.
func AppendESPLine(b []byte, src, dst netip.Addr, k *esp.Keys) ([]byte, error) {
	en, ok1 := espEncrName(k.Suite.Encr)
	in, ok2 := espIntegName(k.Suite.Integ)
	if !ok1 || !ok2 {
		return b, fmt.Errorf("%w: ESP SA %08x uses %v", ErrNotExportable, k.SPI, k.Suite)
	}
	proto := "IPv4"
	if src.Is6() && !src.Is4In6() || dst.Is6() && !dst.Is4In6() {
		proto = "IPv6"
	}
	addr := func(a netip.Addr) string {
		if !a.IsValid() {
			return "*"
		}
		return a.Unmap().String()
	}
	b = fmt.Appendf(b, "%q,%q,%q,\"0x%08x\",%q,\"0x%x\",%q,\"0x%x\"\n",
		proto, addr(src), addr(dst), k.SPI, en, k.EncKey, in, k.IntegKey)
	return b, nil
}
