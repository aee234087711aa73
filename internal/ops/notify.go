package ops

import (
	"github.com/mpsa-vpn/mpsa/ike/wire"
	"github.com/mpsa-vpn/mpsa/mpsa"
)

// MPSANotifies converts the IKE engine's notifies (Policy.Informational,
// SAInfo.PeerAuthNotifies) to package mpsa's. Data and SPI are shared, not
// copied: whoever owns the originals owns these.
func MPSANotifies(ns []*wire.Notify) []mpsa.Notify {
	out := make([]mpsa.Notify, 0, len(ns))
	for _, n := range ns {
		if n == nil {
			continue
		}
		out = append(out, mpsa.Notify{Protocol: uint8(n.Protocol), Type: uint16(n.NotifyType), SPI: n.SPI, Data: n.Data})
	}
	return out
}

// WireNotifies converts package mpsa's notifies to the IKE engine's
// (SA.SendInformational, Policy.AuthNotifies). Data and SPI are shared.
func WireNotifies(ns []mpsa.Notify) []*wire.Notify {
	out := make([]*wire.Notify, 0, len(ns))
	for _, n := range ns {
		out = append(out, &wire.Notify{Protocol: wire.ProtocolID(n.Protocol), SPI: n.SPI, NotifyType: wire.NotifyType(n.Type), Data: n.Data})
	}
	return out
}
