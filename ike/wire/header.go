package wire

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the IKE header in octets.
const HeaderLen = 28

// Version is the only version this codec speaks: major 2, minor 0.
const Version uint8 = 0x20

// Header is the fixed IKE header (RFC 7296 §3.1):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Initiator's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Responder's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          Message ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                            Length                             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// SPIs are kept as the big-endian integer of their eight octets, so they
// compare and print (%016x) as they appear on the wire. Length counts the
// whole message including these 28 octets.
type Header struct {
	SPIi, SPIr  uint64
	NextPayload PayloadType
	Version     uint8 // major<<4 | minor
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	Length      uint32
}

// IsResponse reports whether the Response flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set (the sender is the
// original initiator of the IKE SA).
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// MajorVersion is the high nibble of Version.
func (h *Header) MajorVersion() uint8 { return h.Version >> 4 }

func (h *Header) String() string {
	dir := "request"
	if h.IsResponse() {
		dir = "response"
	}
	return fmt.Sprintf("%v %s %d [%016x_i %016x_r]", h.Exchange, dir, h.MessageID, h.SPIi, h.SPIr)
}

// DecodeHeader reads the header at the start of b. It does not check
// Length against len(b); Decode does.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrHeaderTooShort
	}
	return Header{
		SPIi:        binary.BigEndian.Uint64(b[0:8]),
		SPIr:        binary.BigEndian.Uint64(b[8:16]),
		NextPayload: PayloadType(b[16]),
		Version:     b[17],
		Exchange:    ExchangeType(b[18]),
		Flags:       Flags(b[19]),
		MessageID:   binary.BigEndian.Uint32(b[20:24]),
		Length:      binary.BigEndian.Uint32(b[24:28]),
	}, nil
}

// appendHeader appends h with the given Next Payload and Length.
func (h *Header) append(b []byte, next PayloadType, length int) []byte {
	b = binary.BigEndian.AppendUint64(b, h.SPIi)
	b = binary.BigEndian.AppendUint64(b, h.SPIr)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = append(b, byte(next), v, byte(h.Exchange), byte(h.Flags))
	b = binary.BigEndian.AppendUint32(b, h.MessageID)
	return binary.BigEndian.AppendUint32(b, uint32(length))
}
