package mpsa

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/mpsa-vpn/mpsa/transform"
)

// groupRecord is a group as stored: its live epochs and the highest epoch
// number ever generated.
//
// Encoding, version 1 (big-endian):
//
//	u8  version = 1
//	u8  len, name
//	u64 last epoch number
//	u8  epoch count (≤ maxStoredEpochs), then per epoch, oldest first:
//	    u64 number, u32 SPI,
//	    u16 ENCR, u16 key bits, u16 INTEG, u16 PRF, u8 Sender-ID bits,
//	    u16 len, Nonce; u8 len, SK_d,
//	    i64 created, expires, superseded, dies (Unix ns; 0 = unset),
//	    u32 Sender-IDs reserved (IDs below it may have been handed out)
type groupRecord struct {
	name      string
	lastEpoch uint64
	epochs    []epochRecord
}

type epochRecord struct {
	n           uint64
	spi         uint32
	params      keyParams
	nonce, skd  []byte
	created     time.Time
	expires     time.Time
	superseded  time.Time
	dies        time.Time
	reservedSID uint32
}

const (
	recordVersion   = 1
	maxStoredEpochs = 16
)

func (r *groupRecord) wipe() {
	for i := range r.epochs {
		clear(r.epochs[i].nonce)
		clear(r.epochs[i].skd)
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (r *groupRecord) encode() ([]byte, error) {
	if len(r.name) == 0 || len(r.name) > MaxGroupNameLen || len(r.epochs) > maxStoredEpochs {
		return nil, fmt.Errorf("mpsa: store: group %q with %d epochs cannot be stored", r.name, len(r.epochs))
	}
	n := 2 + len(r.name) + 8 + 1
	for _, e := range r.epochs {
		n += 8 + 4 + 9 + 2 + len(e.nonce) + 1 + len(e.skd) + 32 + 4
	}
	// A fixed builder over an exact-size buffer: no regrowth leaves stray
	// copies of SK_d behind.
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, n))
	b.AddUint8(recordVersion)
	b.AddUint8(uint8(len(r.name)))
	b.AddBytes([]byte(r.name))
	b.AddUint64(r.lastEpoch)
	b.AddUint8(uint8(len(r.epochs)))
	for _, e := range r.epochs {
		b.AddUint64(e.n)
		b.AddUint32(e.spi)
		b.AddUint16(uint16(e.params.suite.Encr))
		b.AddUint16(e.params.suite.KeyBits)
		b.AddUint16(uint16(e.params.suite.Integ))
		b.AddUint16(uint16(e.params.prf))
		b.AddUint8(e.params.senderIDBits)
		b.AddUint16(uint16(len(e.nonce)))
		b.AddBytes(e.nonce)
		b.AddUint8(uint8(len(e.skd)))
		b.AddBytes(e.skd)
		for _, t := range []time.Time{e.created, e.expires, e.superseded, e.dies} {
			b.AddUint64(uint64(unixNano(t)))
		}
		b.AddUint32(e.reservedSID)
	}
	v, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("mpsa: store: encoding group %s: %w", r.name, err)
	}
	return v, nil
}

var errRecord = errors.New("malformed group record")

// decodeGroupRecord parses a stored record and checks it as strictly as a
// received MPSA_PUT: a damaged store must not install bad keys. The result
// owns copies of the key material.
func decodeGroupRecord(v []byte) (*groupRecord, error) {
	s := cryptobyte.String(v)
	var version, count uint8
	var name []byte
	r := &groupRecord{}
	if !s.ReadUint8(&version) || version != recordVersion {
		return nil, fmt.Errorf("%w: version %d", errRecord, version)
	}
	if !s.ReadUint8LengthPrefixed((*cryptobyte.String)(&name)) || len(name) == 0 ||
		!s.ReadUint64(&r.lastEpoch) || !s.ReadUint8(&count) || count > maxStoredEpochs {
		return nil, fmt.Errorf("%w: header", errRecord)
	}
	r.name = string(name)
	r.epochs = make([]epochRecord, 0, count)
	var prev uint64
	for i := 0; i < int(count); i++ {
		var e epochRecord
		var encr, keyBits, integ, prf uint16
		var nonce, skd cryptobyte.String
		var times [4]uint64
		ok := s.ReadUint64(&e.n) && s.ReadUint32(&e.spi) &&
			s.ReadUint16(&encr) && s.ReadUint16(&keyBits) && s.ReadUint16(&integ) && s.ReadUint16(&prf) &&
			s.ReadUint8(&e.params.senderIDBits) &&
			s.ReadUint16LengthPrefixed(&nonce) && s.ReadUint8LengthPrefixed(&skd)
		for j := range times {
			ok = ok && s.ReadUint64(&times[j])
		}
		ok = ok && s.ReadUint32(&e.reservedSID)
		if !ok {
			r.wipe()
			return nil, fmt.Errorf("%w: epoch %d truncated", errRecord, i)
		}
		e.params.suite = transform.ESP{Encr: transform.Encr(encr), KeyBits: keyBits, Integ: transform.Integ(integ)}
		e.params.prf = transform.PRF(prf)
		e.created, e.expires, e.superseded, e.dies = fromUnixNano(int64(times[0])), fromUnixNano(int64(times[1])), fromUnixNano(int64(times[2])), fromUnixNano(int64(times[3]))
		e.nonce = append([]byte(nil), nonce...)
		e.skd = append([]byte(nil), skd...)
		r.epochs = append(r.epochs, e)
		if err := e.check(prev, r.lastEpoch); err != nil {
			r.wipe()
			return nil, fmt.Errorf("%w: epoch %d: %v", errRecord, e.n, err)
		}
		prev = e.n
	}
	if !s.Empty() {
		r.wipe()
		return nil, fmt.Errorf("%w: %d trailing octets", errRecord, len(s))
	}
	return r, nil
}

func (e *epochRecord) check(prev, last uint64) error {
	if e.n <= prev || e.n > last {
		return fmt.Errorf("number out of order (previous %d, last %d)", prev, last)
	}
	p := Put{SPI: e.spi, Suite: e.params.suite, PRF: e.params.prf, Nonce: e.nonce, SKd: e.skd, Life: time.Second}
	if e.params.senderIDBits != 0 {
		p.SenderIDBits, p.SenderID = e.params.senderIDBits, 1
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if e.created.IsZero() || !e.expires.After(e.created) {
		return errors.New("bad lifetime")
	}
	return nil
}
