//go:build !mpsa_omit_xfrm

package cpe

import (
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/dataplane"
	"github.com/mpsa-vpn/mpsa/dataplane/xfrm"
)

func probeXFRM(netns string) error { return xfrm.Probe(netns) }

// xfrmPlane is the kernel data plane. xfrm.Config.Endpoints (where group
// SAs are received) is fixed when a backend is made, so the plane makes a
// new backend whenever the CPE's ESP endpoints change (after MOBIKE); the
// CPE sets its State again right after.
type xfrmPlane struct {
	env DataplaneEnv

	mu        sync.Mutex // guards the following
	b         *xfrm.Backend
	endpoints []netip.AddrPort
	closed    bool
}

var _ dataplane.Backend = (*xfrmPlane)(nil)

// newXFRM returns the kernel data plane. Overlay addresses go on the
// loopback device; IKE keeps its own port-4500 sockets, prepared for the
// kernel's ESP-in-UDP decapsulation.
func newXFRM(env DataplaneEnv) (*Dataplane, error) {
	p := &xfrmPlane{env: env}
	if err := p.reopen(nil); err != nil {
		return nil, err
	}
	return &Dataplane{
		Backend:          p,
		Name:             "xfrm",
		PrepareIKESocket: xfrm.PrepareIKESocket,
		Interface:        "lo",
		RawESP:           true,
		SetEndpoints:     p.setEndpoints,
		Ready:            p.ready,
	}, nil
}

func (p *xfrmPlane) reopen(eps []netip.AddrPort) error {
	b, err := xfrm.New(xfrm.Config{
		Netns:     p.env.Netns,
		Routes:    p.env.FIB,
		Endpoints: eps,
		Logger:    p.env.Logger,
	})
	if err != nil {
		return err
	}
	if p.b != nil {
		p.b.Close()
	}
	p.b, p.endpoints = b, slices.Clone(eps)
	return nil
}

func (p *xfrmPlane) setEndpoints(eps []netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || slices.Equal(eps, p.endpoints) {
		return nil
	}
	// Close first: the new backend removes what is left in its bands.
	p.b.Close()
	p.b = nil
	return p.reopen(eps)
}

func (p *xfrmPlane) Set(st *dataplane.State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.b == nil {
		return net.ErrClosed
	}
	return p.b.Set(st)
}

func (p *xfrmPlane) Stats() dataplane.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b == nil {
		return dataplane.Stats{}
	}
	return p.b.Stats()
}

func (p *xfrmPlane) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.b == nil {
		return nil
	}
	err := p.b.Close()
	p.b = nil
	return err
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
