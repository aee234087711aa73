package wire

import (
	"errors"
	"fmt"
)

// NotifyError is a protocol error that a responder reports with an error
// notify (RFC 7296 §2.21). Data is the notification data to send, for
// example the payload type for UNSUPPORTED_CRITICAL_PAYLOAD.
type NotifyError struct {
	Type NotifyType
	Data []byte
	msg  string
}

func (e *NotifyError) Error() string {
	if e.msg == "" {
		return "ike/wire: " + e.Type.String()
	}
	return "ike/wire: " + e.Type.String() + ": " + e.msg
}

// Notify returns the Notify payload that reports e.
func (e *NotifyError) Notify() *Notify {
	return &Notify{NotifyType: e.Type, Data: e.Data}
}

// Errorf returns a *NotifyError of type t with a formatted explanation.
func Errorf(t NotifyType, format string, args ...any) *NotifyError {
	return &NotifyError{Type: t, msg: fmt.Sprintf(format, args...)}
}

func syntaxError(format string, args ...any) *NotifyError {
	return Errorf(NotifyInvalidSyntax, format, args...)
}

// AsNotifyError returns the *NotifyError in err's chain, if any.
func AsNotifyError(err error) (*NotifyError, bool) {
	var ne *NotifyError
	ok := errors.As(err, &ne)
	return ne, ok
}

// Sentinel errors for conditions callers test.
var (
	// ErrHeaderTooShort: fewer than 28 octets, not an IKE message at all.
	ErrHeaderTooShort = errors.New("ike/wire: shorter than the IKE header")
	// ErrLength: the header's Length disagrees with the datagram.
	ErrLength = errors.New("ike/wire: IKE header length does not match the datagram")
	// ErrTooLarge: an encoded payload or message does not fit its length field.
	ErrTooLarge = errors.New("ike/wire: payload or message too large")
)
