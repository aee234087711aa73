//go:build !linux

package xfrm

import (
	"errors"
	"syscall"

	"github.com/mpsa-vpn/mpsa/transform"
)

// ErrNoKernelESP is returned by Probe: only Linux has XFRM.
var ErrNoKernelESP = errors.New("xfrm: the kernel cannot install ESP SAs")

// Probe reports that this platform has no XFRM.
func Probe(netnsName string, suites ...transform.ESP) error {
	return errors.Join(ErrNoKernelESP, errors.ErrUnsupported)
}

// PrepareIKESocket reports that this platform has no XFRM.
func PrepareIKESocket(conn syscall.Conn) error { return errors.ErrUnsupported }
