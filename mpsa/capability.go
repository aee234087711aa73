package mpsa

import "bytes"

// VendorID is the Vendor ID payload data that announces MPSA support in
// IKE_SA_INIT (draft §3.2.1): the 14 ASCII octets "multi-point SA", no
// terminator. Both sides send it; a peer that does not is a plain IKEv2 peer
// and never gets MPSA_PUT.
const VendorID = "multi-point SA"

// Notify Message Types (RFC 7296 §3.10.1; 40960–65535 is the private-use
// status range).
const (
	// NotifyPut is MPSA_PUT (draft §3.2.2), sent by the hub in an
	// INFORMATIONAL request with protocol ESP and a 4-octet SPI.
	NotifyPut uint16 = 40960

	// NotifySenderIDSupported is this product's private status notify a CPE
	// adds to its IKE_AUTH request to say it can use a Sender-ID (RFC 6054)
	// on a group SA. Protocol ID 0, SPI size 0, no data; receivers ignore
	// any data. It means nothing without the MPSA Vendor ID.
	NotifySenderIDSupported uint16 = 40961
)

// ProtocolESP is the IKEv2 Protocol ID of ESP (RFC 7296 §3.3.1).
const ProtocolESP uint8 = 3

// Notify is the part of an IKEv2 Notify payload (RFC 7296 §3.10) MPSA reads
// and writes. The IKE engine owns the payload itself (generic header,
// critical bit, encryption); the daemon converts between its notify type and
// this one.
//
// Data of an MPSA_PUT holds SK_d and the Nonce: whoever holds it wipes it
// (clear) once it is no longer needed, and never logs it.
type Notify struct {
	Protocol uint8  // Protocol ID: ProtocolESP for MPSA_PUT, 0 otherwise
	Type     uint16 // Notify Message Type
	SPI      []byte // empty, or 4 octets for ESP
	Data     []byte // Notification Data
}

// Capabilities is what a peer announced during IKE_SA_INIT and IKE_AUTH.
// The zero value is a plain IKEv2 peer.
type Capabilities struct {
	MPSA     bool // sent the "multi-point SA" Vendor ID
	SenderID bool // MPSA and N(NotifySenderIDSupported) in IKE_AUTH
}

// PeerCapabilities reads a peer's capabilities from the Vendor ID payload
// data it sent in IKE_SA_INIT and the notifies of its IKE_AUTH message.
// Sender-ID support counts only together with the MPSA Vendor ID, since
// 40961 is a private-use number another vendor may give another meaning.
func PeerCapabilities(vendorIDs [][]byte, authNotifies []Notify) Capabilities {
	var c Capabilities
	for _, v := range vendorIDs {
		if bytes.Equal(v, []byte(VendorID)) {
			c.MPSA = true
		}
	}
	if !c.MPSA {
		return c
	}
	for _, n := range authNotifies {
		if n.Type == NotifySenderIDSupported && n.Protocol == 0 && len(n.SPI) == 0 {
			c.SenderID = true
		}
	}
	return c
}

// VendorIDs returns the Vendor ID payload data both sides add to
// IKE_SA_INIT.
func VendorIDs() [][]byte { return [][]byte{[]byte(VendorID)} }

// CPEAuthNotifies returns the notifies a CPE adds to its IKE_AUTH request:
// this implementation always supports Sender-IDs.
func CPEAuthNotifies() []Notify {
	return []Notify{{Type: NotifySenderIDSupported}}
}
