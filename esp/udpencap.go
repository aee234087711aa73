package esp

// UDP encapsulation of ESP (RFC 3948). ESP and IKE share UDP port 4500: an
// IKE message there starts with the 4-octet non-ESP marker (zero, where ESP
// has its never-zero SPI), and a NAT keepalive is the single octet 0xFF.

// UDPEncapPort is the port ESP-in-UDP and IKE after NAT detection share.
const UDPEncapPort = 4500

// Kind is what a UDP datagram received on port 4500 carries.
type Kind uint8

// Datagram kinds.
const (
	KindInvalid   Kind = iota // too short to be anything: drop
	KindESP                   // an ESP packet (non-zero SPI)
	KindIKE                   // IKE, after the 4-octet non-ESP marker
	KindKeepalive             // NAT keepalive (RFC 3948 §2.3): drop silently
)

// Classify tells the kinds of port-4500 datagrams apart (RFC 3948 §2.2).
func Classify(payload []byte) Kind {
	switch {
	case len(payload) == 1 && payload[0] == 0xFF:
		return KindKeepalive
	case len(payload) < HeaderLen:
		return KindInvalid
	case payload[0]|payload[1]|payload[2]|payload[3] == 0:
		return KindIKE
	}
	return KindESP
}

// NonESPMarker is the prefix of IKE messages on port 4500.
var NonESPMarker = [4]byte{}
