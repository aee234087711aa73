package wire

import "fmt"

// ExchangeType is the Exchange Type field of the IKE header (RFC 7296 §3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKESAInit     ExchangeType = 34
	IKEAuth       ExchangeType = 35
	CreateChildSA ExchangeType = 36
	Informational ExchangeType = 37
)

func (e ExchangeType) String() string {
	switch e {
	case IKESAInit:
		return "IKE_SA_INIT"
	case IKEAuth:
		return "IKE_AUTH"
	case CreateChildSA:
		return "CREATE_CHILD_SA"
	case Informational:
		return "INFORMATIONAL"
	}
	return fmt.Sprintf("EXCHANGE(%d)", uint8(e))
}

// Flags are the header flags (RFC 7296 §3.1).
type Flags uint8

// Header flags. The other bits are sent as zero and ignored on receipt.
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // sender could speak a higher major version
	FlagResponse  Flags = 0x20 // this message is a response
)

// PayloadType is a Next Payload value (RFC 7296 §3.2; RFC 7383 for SKF).
type PayloadType uint8

// Payload types.
const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadN       PayloadType = 41
	PayloadD       PayloadType = 42
	PayloadV       PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadSKF     PayloadType = 53
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "No",
	PayloadN: "N", PayloadD: "D", PayloadV: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadSKF: "SKF",
}

func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return fmt.Sprintf("PAYLOAD(%d)", uint8(t))
}

// ProtocolID names the protocol of a proposal, notify or delete (RFC 7296 §3.3.1).
type ProtocolID uint8

// Protocol IDs.
const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

func (p ProtocolID) String() string {
	switch p {
	case ProtoNone:
		return "NONE"
	case ProtoIKE:
		return "IKE"
	case ProtoAH:
		return "AH"
	case ProtoESP:
		return "ESP"
	}
	return fmt.Sprintf("PROTO(%d)", uint8(p))
}

// IDType is the ID Type of an IDi/IDr payload (RFC 7296 §3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4      IDType = 1
	IDFQDN      IDType = 2
	IDRFC822    IDType = 3
	IDIPv6      IDType = 5
	IDDERASN1DN IDType = 9
	IDDERASN1GN IDType = 10
	IDKeyID     IDType = 11
)

func (t IDType) String() string {
	switch t {
	case IDIPv4:
		return "ID_IPV4_ADDR"
	case IDFQDN:
		return "ID_FQDN"
	case IDRFC822:
		return "ID_RFC822_ADDR"
	case IDIPv6:
		return "ID_IPV6_ADDR"
	case IDDERASN1DN:
		return "ID_DER_ASN1_DN"
	case IDDERASN1GN:
		return "ID_DER_ASN1_GN"
	case IDKeyID:
		return "ID_KEY_ID"
	}
	return fmt.Sprintf("ID(%d)", uint8(t))
}

// AuthMethod is the Auth Method of an AUTH payload (RFC 7296 §3.8, RFC 7427).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1
	AuthPSK              AuthMethod = 2
	AuthDSS              AuthMethod = 3
	AuthECDSA256         AuthMethod = 9
	AuthECDSA384         AuthMethod = 10
	AuthECDSA521         AuthMethod = 11
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

func (m AuthMethod) String() string {
	switch m {
	case AuthRSASig:
		return "RSA_SIG"
	case AuthPSK:
		return "PSK"
	case AuthDSS:
		return "DSS"
	case AuthECDSA256:
		return "ECDSA_256"
	case AuthECDSA384:
		return "ECDSA_384"
	case AuthECDSA521:
		return "ECDSA_521"
	case AuthNull:
		return "NULL"
	case AuthDigitalSignature:
		return "DIGITAL_SIGNATURE"
	}
	return fmt.Sprintf("AUTH(%d)", uint8(m))
}

// CertEncoding is the Cert Encoding of CERT and CERTREQ (RFC 7296 §3.6).
type CertEncoding uint8

// Certificate encodings this product uses.
const (
	CertX509Signature CertEncoding = 4  // DER X.509 certificate; CERTREQ: SHA-1 hashes of CA keys
	CertX509CRL       CertEncoding = 7  // DER CRL
	CertHashURLX509   CertEncoding = 12 // Hash and URL of X.509 certificate
	CertHashURLBundle CertEncoding = 13 // Hash and URL of X.509 bundle
)

// TSType is a traffic selector type (RFC 7296 §3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4Range TSType = 7
	TSIPv6Range TSType = 8
)

// CfgType is the CFG Type of a Configuration payload (RFC 7296 §3.15).
type CfgType uint8

// Configuration payload types.
const (
	CfgRequest CfgType = 1
	CfgReply   CfgType = 2
	CfgSet     CfgType = 3
	CfgAck     CfgType = 4
)

// CfgAttrType is a configuration attribute type (RFC 7296 §3.15.1).
type CfgAttrType uint16

// Configuration attributes.
const (
	AttrInternalIP4Address CfgAttrType = 1
	AttrInternalIP4Netmask CfgAttrType = 2
	AttrInternalIP4DNS     CfgAttrType = 3
	AttrInternalIP4NBNS    CfgAttrType = 4
	AttrInternalIP4DHCP    CfgAttrType = 6
	AttrApplicationVersion CfgAttrType = 7
	AttrInternalIP6Address CfgAttrType = 8
	AttrInternalIP6DNS     CfgAttrType = 10
	AttrInternalIP6DHCP    CfgAttrType = 12
	AttrInternalIP4Subnet  CfgAttrType = 13
	AttrSupportedAttrs     CfgAttrType = 14
	AttrInternalIP6Subnet  CfgAttrType = 15
)
