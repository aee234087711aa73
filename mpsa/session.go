package mpsa

// Session is one CPE's IKE SA as the KeyServer needs it: a way to send
// notifies in an INFORMATIONAL request and learn whether the peer answered.
// The daemon implements it on top of the IKE engine.
type Session interface {
	// Inform sends the notifies in one INFORMATIONAL request on this IKE
	// SA (RFC 7296 §1.4) and calls done exactly once, from any goroutine:
	// with nil when the peer's response arrived (for MPSA_PUT the empty
	// SK{}, draft §3.1), with an error when the request failed
	// (retransmissions exhausted, IKE SA deleted or rekeyed away).
	// Retransmission of the request is the engine's business.
	//
	// Inform must not block on the network; done may run before Inform
	// returns. The session must not keep the notifies after calling done:
	// the key server wipes their Data, which holds SK_d.
	Inform(notifies []Notify, done func(error))
}

// BlockingSession adapts a blocking send, such as an IKE engine's
// SendInformational that returns when the peer responds, to a Session: each
// Inform runs send on a goroutine of its own, which ends when send returns.
// send must return once the IKE SA is gone.
func BlockingSession(send func(notifies []Notify) error) Session {
	return &blockingSession{send: send}
}

var _ Session = (*blockingSession)(nil)

type blockingSession struct {
	send func([]Notify) error
}

func (s *blockingSession) Inform(notifies []Notify, done func(error)) {
	go func() { done(s.send(notifies)) }()
}
