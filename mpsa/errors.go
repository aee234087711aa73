package mpsa

import (
	"errors"
	"fmt"
)

// FieldError says which field of an MPSA_PUT was refused and why. Field is
// one of the names the draft uses ("ENCR", "PRF", "INTEG", "NONCE", "SK_d",
// "LIFE", "ROLL1", "ROLL2"), "SENDER_ID", or a header field ("Protocol ID",
// "SPI", "Proposal Length", "Num Transforms", "transform 7", ...). It is what
// a CPE logs as the reason for refusing the SA.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return "mpsa: MPSA_PUT " + e.Field + ": " + e.Reason
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Field returns the refused field of err, or "" when err is not a
// FieldError.
func Field(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// Errors a KeyServer returns for conditions callers test.
var (
	// ErrNotCapable: the peer did not send the MPSA Vendor ID.
	ErrNotCapable = errors.New("mpsa: peer did not announce multi-point SA")
	// ErrNoSenderID: the CPE's group uses an AEAD cipher, which needs a
	// Sender-ID, and the CPE did not announce Sender-ID support.
	ErrNoSenderID = errors.New("mpsa: group uses an AEAD cipher and the CPE did not announce Sender-ID support")
	// ErrUnknownCPE: the CPE is not provisioned in any group.
	ErrUnknownCPE = errors.New("mpsa: CPE is not provisioned in any group")
	// ErrUnknownGroup: no group has this name.
	ErrUnknownGroup = errors.New("mpsa: unknown group")
	// ErrClosed: the KeyServer was closed.
	ErrClosed = errors.New("mpsa: key server closed")
)
