//go:build !mpsa_omit_xfrm

package cpe

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
)

func probeXFRM(netns string) error { return xfrm.Probe(netns) }

// xfrmPlane is the kernel data plane: one xfrm.Backend for the CPE's
// lifetime. When the CPE's ESP endpoints change (after MOBIKE) the backend
// moves its states and policies make-before-break (SetEndpoints).
type xfrmPlane struct {
	env DataplaneEnv
	b   *xfrm.Backend

	mu        sync.Mutex // guards endpoints; serialises SetEndpoints
	endpoints []netip.AddrPort
}

// newXFRM returns the kernel data plane. Overlay addresses go on the
// loopback device; IKE keeps its own port-4500 sockets, prepared for the
// kernel's ESP-in-UDP decapsulation.
func newXFRM(env DataplaneEnv) (*Dataplane, error) {
	p := &xfrmPlane{env: env}
	b, err := xfrm.New(xfrm.Config{
		Netns:  env.Netns,
		Routes: env.FIB,
		Logger: env.Logger,
		// The backend follows the FIB on its own goroutine: a policy
		// Ready waits for may come after the reconcile that asked.
		Applied: func(error) {
			if env.Changed != nil {
				env.Changed()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	p.b = b
	return &Dataplane{
		Backend:          b,
		Name:             "xfrm",
		PrepareIKESocket: xfrm.PrepareIKESocket,
		Interface:        "lo",
		RawESP:           true,
		SetEndpoints:     p.setEndpoints,
		Ready:            p.ready,
	}, nil
}

// setEndpoints hands the backend this node's new ESP endpoints; the same
// ones again cost nothing.
func (p *xfrmPlane) setEndpoints(eps []netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.endpoints != nil && slices.Equal(eps, p.endpoints) {
		return nil
	}
	if err := p.b.SetEndpoints(eps); err != nil {
		return err
	}
	p.endpoints = slices.Clone(eps)
	return nil
}

// ready reports whether the kernel has an outbound policy with templates
// (not a block policy) for the hub's overlay address.
func (p *xfrmPlane) ready(hub netip.Prefix) bool {
	fam := netlink.FAMILY_V4
	if hub.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	var found bool
	err := p.env.InNetns(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_XFRM)
		if err != nil {
			return err
		}
		defer h.Close()
		pols, err := h.XfrmPolicyList(fam)
		if err != nil {
			return err
		}
		for _, pol := range pols {
			if pol.Dir != netlink.XFRM_DIR_OUT || pol.Dst == nil || len(pol.Tmpls) == 0 || pol.Action != netlink.XFRM_POLICY_ALLOW {
				continue
			}
			ones, _ := pol.Dst.Mask.Size()
			a, ok := netip.AddrFromSlice(pol.Dst.IP)
			if ok && netip.PrefixFrom(a.Unmap(), ones) == hub {
				found = true
			}
		}
		return nil
	})
	return err == nil && found
}
