package mpsa

import (
	"slices"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/transform"
)

// GroupStatus is a snapshot of one group for status pages and metrics.
type GroupStatus struct {
	Name      string
	Suite     transform.ESP
	PRF       transform.PRF
	Epochs    []EpochStatus // live epochs, oldest first; the last is the one being sent
	CPEs      []CPEStatus   // provisioned CPEs, by name
	Connected int           // CPEs with an IKE SA
}

// EpochStatus is one generation of a group SA. It never holds keys.
type EpochStatus struct {
	Epoch      uint64
	SPI        uint32
	Created    time.Time
	Expires    time.Time
	Superseded time.Time // zero while it is the newest
	Dies       time.Time // when the hub forgets it: Expires, or the rollover's end
	Sent       int       // deliveries started (one per CPE and IKE SA)
	Acked      int       // deliveries acknowledged
	// AckMax and AckMean are the time from first sending MPSA_PUT to a CPE
	// to its acknowledgement, over Acked deliveries.
	AckMax, AckMean time.Duration
	SenderIDs       uint32 // Sender-IDs handed out
}

// CPEStatus is one provisioned CPE of a group.
type CPEStatus struct {
	Name       string
	Connected  bool
	AckedEpoch uint64        // newest epoch the CPE acknowledged over its current IKE SA; 0 none
	Pending    uint64        // epoch being sent and not acknowledged yet; 0 none
	SenderID   uint32        // its Sender-ID in the epoch last sent; 0 none
	Attempts   int           // sends of the pending epoch so far
	AckLatency time.Duration // of its last acknowledgement
	NextTry    time.Time     // when a failed send is retried; zero if none waits
}

// Status returns a snapshot of every group, sorted by name.
func (ks *KeyServer) Status() []GroupStatus {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := make([]GroupStatus, 0, len(ks.groups))
	for _, g := range ks.groups {
		gs := GroupStatus{Name: g.cfg.Name, Suite: g.cfg.Suite, PRF: g.cfg.PRF, Connected: g.connected}
		for _, e := range g.epochs {
			es := EpochStatus{
				Epoch: e.n, SPI: e.spi, Created: e.created, Expires: e.expires,
				Superseded: e.superseded, Dies: e.deadline(), Sent: e.sent, Acked: e.acked, AckMax: e.ackMax,
			}
			if e.acked > 0 {
				es.AckMean = e.ackSum / time.Duration(e.acked)
			}
			if e.nextSID > 0 {
				es.SenderIDs = e.nextSID - 1
			} else {
				es.SenderIDs = uint32(uint64(1)<<e.params.senderIDBits - 1)
			}
			gs.Epochs = append(gs.Epochs, es)
		}
		for c := range g.members {
			cs := CPEStatus{
				Name: c.name, Connected: c.sess != nil, AckedEpoch: c.ackedEpoch,
				SenderID: c.senderID, AckLatency: c.ackLatency, NextTry: c.nextTry,
			}
			if c.epoch != nil && !c.acked {
				cs.Pending, cs.Attempts = c.epoch.n, c.attempts
			}
			gs.CPEs = append(gs.CPEs, cs)
		}
		slices.SortFunc(gs.CPEs, func(a, b CPEStatus) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, gs)
	}
	slices.SortFunc(out, func(a, b GroupStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
