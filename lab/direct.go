package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Directness is what captures on the hub's link and on every member CPE's
// link saw while traffic ran between the CPEs' LANs.
type Directness struct {
	GroupSPIs []uint32 // the group's SAs (every live epoch)
	// HubESP counts ESP packets on the hub's link to or from the hub (its
	// CHILD_SAs: BGP); HubCPEToCPE those between two other addresses or
	// with a group SPI: CPE-to-CPE traffic that went through the hub. It
	// must be zero.
	HubESP, HubCPEToCPE int
	// HubFrames counts every frame the capture on the hub's link saw, of
	// which HubIKE were IKE; the rest is neighbour discovery, ARP and the
	// like, flooded by the bridge.
	HubFrames, HubIKE int
	// HubRx and HubTx are the hub link's packet counters over the run.
	HubRx, HubTx uint64
	// Direct counts, per CPE, group-SA ESP packets on its link that went
	// straight between it and another CPE.
	Direct map[string]int
	// Dropped counts frames the captures could not keep.
	Dropped int
}

// OK reports whether no CPE-to-CPE packet crossed the hub's link while
// every CPE exchanged group-SA packets directly.
func (d *Directness) OK() bool {
	if d.HubCPEToCPE != 0 || len(d.Direct) == 0 || d.Dropped != 0 {
		return false
	}
	for _, n := range d.Direct {
		if n == 0 {
			return false
		}
	}
	return true
}

func (d *Directness) String() string {
	var cpes []string
	for _, name := range sortedNames(d.Direct) {
		cpes = append(cpes, fmt.Sprintf("%s %d", name, d.Direct[name]))
	}
	return fmt.Sprintf("the hub's link carried %d CPE-to-CPE ESP packets (of %d frames: %d ESP of its own CHILD_SAs, %d IKE, "+
		"the rest ARP/ND; eth0 counters +%d rx +%d tx); group-SA packets straight between CPEs on their links: %s",
		d.HubCPEToCPE, d.HubFrames, d.HubESP, d.HubIKE, d.HubRx, d.HubTx, strings.Join(cpes, ", "))
}

// CheckDirect captures on the hub's link and every member CPE's link while
// traffic runs, and accounts for the ESP packets seen.
func (l *Lab) CheckDirect(ctx context.Context, traffic func(context.Context) error) (*Directness, error) {
	h := l.Hub()
	members := l.joining()
	hubCap, err := StartCapture(h.NS, "eth0")
	if err != nil {
		return nil, err
	}
	caps := map[string]*Capture{}
	defer func() {
		for _, c := range caps {
			c.Stop()
		}
	}()
	for _, c := range members {
		cp, err := StartCapture(c.NS, "eth0")
		if err != nil {
			hubCap.Stop()
			return nil, err
		}
		caps[c.Name] = cp
	}
	rx0, tx0, _ := linkStats(h.NS, "eth0")
	terr := traffic(ctx)
	rx1, tx1, _ := linkStats(h.NS, "eth0")
	hubPkts := hubCap.Stop()
	d := &Directness{HubRx: rx1 - rx0, HubTx: tx1 - tx0, Direct: map[string]int{}, Dropped: hubCap.Dropped()}
	snap := l.Snapshot(ctx)
	if g := snap.Group(); g != nil {
		for _, e := range g.Epochs {
			if v, err := strconv.ParseUint(e.SPI, 16, 32); err == nil {
				d.GroupSPIs = append(d.GroupSPIs, uint32(v))
			}
		}
	}
	if len(d.GroupSPIs) == 0 {
		return d, errors.Join(terr, errors.New("lab: the hub reports no group SA"))
	}
	wans := map[netip.Addr]string{}
	for _, c := range l.CPEs() {
		wans[c.WAN] = c.Name
	}
	d.HubFrames = len(hubPkts)
	for _, p := range hubPkts {
		if p.Info.Kind == KindIKE {
			d.HubIKE++
		}
		if p.Info.Kind != KindESP {
			continue
		}
		if p.Info.Involves(h.WAN) && !slices.Contains(d.GroupSPIs, p.Info.SPI) {
			d.HubESP++
		} else {
			d.HubCPEToCPE++
		}
	}
	for _, c := range members {
		cp := caps[c.Name]
		delete(caps, c.Name)
		pkts := cp.Stop()
		d.Dropped += cp.Dropped()
		n := 0
		for _, p := range pkts {
			pi := &p.Info
			if pi.Kind != KindESP || !slices.Contains(d.GroupSPIs, pi.SPI) || !pi.Involves(c.WAN) {
				continue
			}
			other := pi.Dst
			if pi.Dst == c.WAN {
				other = pi.Src
			}
			if name, ok := wans[other]; ok && name != c.Name {
				n++
			}
		}
		d.Direct[c.Name] = n
	}
	return d, terr
}
