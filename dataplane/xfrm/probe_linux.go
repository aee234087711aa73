package xfrm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mpsa-vpn/mpsa/esp"
	"github.com/mpsa-vpn/mpsa/transform"
)

// ErrNoKernelESP wraps every reason Probe gives for a kernel that cannot
// do ESP: no XFRM netlink, no ESP protocol, a missing algorithm.
var ErrNoKernelESP = errors.New("xfrm: the kernel cannot install ESP SAs")

// ProbeSuites are the suites Probe tries when given none: the group SA's
// default and the common CHILD_SA one.
var ProbeSuites = []transform.ESP{
	{Encr: transform.EncrAESCBC, KeyBits: 128, Integ: transform.IntegHMACSHA256128},
	{Encr: transform.EncrAESGCM16, KeyBits: 128},
}

// Probe reports whether the kernel of the network namespace netnsName ("" for
// the caller's) can install tunnel-mode ESP states with the given suites
// (ProbeSuites if none), raw and UDP-encapsulated: it adds and at once
// deletes a throwaway state per case, on loopback addresses no traffic
// uses. A kernel that cannot returns an error wrapping ErrNoKernelESP that
// says why; any other error (no permission) means Probe could not tell.
func Probe(netnsName string, suites ...transform.ESP) error {
	if len(suites) == 0 {
		suites = ProbeSuites
	}
	ns, err := openNetns(netnsName)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_XFRM)
	if err != nil {
		if errors.Is(err, syscall.EPROTONOSUPPORT) {
			return fmt.Errorf("%w: no XFRM netlink (CONFIG_XFRM_USER, module xfrm_user): %v", ErrNoKernelESP, err)
		}
		return fmt.Errorf("xfrm: probe: %w", err)
	}
	defer h.Close()
	xs, err := openXfrmSocket(ns)
	if err != nil {
		return fmt.Errorf("xfrm: probe: %w", err)
	}
	defer xs.Close()
	for i, suite := range suites {
		if err := probeOne(h, xs, suite, i == 0); err != nil {
			return err
		}
	}
	return nil
}

func probeOne(h *netlink.Handle, xs *xfrmSocket, suite transform.ESP, withEncap bool) error {
	el, il, err := suite.KeyLens()
	if err != nil {
		return err
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return err
	}
	keys := esp.Keys{Suite: suite, EncKey: make([]byte, el), IntegKey: make([]byte, il),
		SPI: 0xfe000000 | binary.BigEndian.Uint32(r[:])&0x00ffffff}
	defer keys.Wipe()
	if _, err := rand.Read(keys.EncKey); err != nil {
		return err
	}
	if _, err := rand.Read(keys.IntegKey); err != nil {
		return err
	}
	cases := []encap{{}}
	if withEncap {
		cases = append(cases, encap{sport: DefaultEncapPort, dport: DefaultEncapPort})
	}
	for _, e := range cases {
		s := &kstate{
			stateID: stateID{netip.MustParseAddr("127.255.255.254"), keys.SPI},
			src:     netip.MustParseAddr("127.255.255.253"),
			encap:   e,
			keys:    &keys,
		}
		x, err := netlinkState(s)
		if err != nil {
			return err
		}
		how := "raw"
		if e != (encap{}) {
			how = "in UDP"
		}
		if err := xs.addState(x); err != nil {
			switch {
			case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
				return fmt.Errorf("xfrm: probe needs CAP_NET_ADMIN: %w", err)
			case errors.Is(err, syscall.ENOENT):
				return fmt.Errorf("%w: no kernel algorithm for %v (crypto modules): %v", ErrNoKernelESP, suite, err)
			case errors.Is(err, syscall.EPROTONOSUPPORT):
				return fmt.Errorf("%w: no ESP protocol (CONFIG_INET_ESP, module esp4): %v", ErrNoKernelESP, err)
			}
			return fmt.Errorf("%w: ESP state (%v, %s) refused: %v", ErrNoKernelESP, suite, how, err)
		}
		if err := h.XfrmStateDel(netlinkStateID(s.stateID)); err != nil {
			return fmt.Errorf("xfrm: probe: removing the throwaway state: %w", err)
		}
	}
	return nil
}
