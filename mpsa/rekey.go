package mpsa

import "fmt"

// Rekey rolls a group over to a new SA now, the way a lifetime rekey does:
// the next epoch is generated, stored and sent to every connected CPE of the
// group, and the current one stays accepted until ROLL2 (draft §3.3.1). It
// is the operator's rekey (a compromised key suspected, a test of the
// rollover); reason is logged. It returns the new epoch, without keys.
func (ks *KeyServer) Rekey(group, reason string) (EpochStatus, error) {
	ks.mu.Lock()
	if ks.closed {
		ks.mu.Unlock()
		return EpochStatus{}, ErrClosed
	}
	g, ok := ks.groups[group]
	if !ok {
		ks.mu.Unlock()
		return EpochStatus{}, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	sends, err := ks.rekeyLocked(g, ks.now(), reason)
	var st EpochStatus
	if e := g.newest(); err == nil && e != nil {
		st = EpochStatus{Epoch: e.n, SPI: e.spi, Created: e.created, Expires: e.expires, Dies: e.deadline()}
	}
	ks.mu.Unlock()
	ks.dispatch(sends)
	return st, err
}
