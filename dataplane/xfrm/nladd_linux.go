package xfrm

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Adding a state goes through a request of our own: netlink.Handle's
// XfrmStateAdd cannot set XFRM_STATE_AF_UNSPEC, without which the kernel
// gives a state with no selector the selector family of its outer
// addresses (xfrm_user.c, copy_from_user_state), so a tunnel-mode state
// would carry one inner family only. The group SA carries IPv4 and IPv6
// inside the same outer family, so its states need the flag.

// xfrmSocket is a NETLINK_XFRM socket in a namespace.
type xfrmSocket struct{ sh *nl.SocketHandle }

func openXfrmSocket(ns netns.NsHandle) (*xfrmSocket, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_XFRM)
	if err != nil {
		return nil, err
	}
	return &xfrmSocket{sh: &nl.SocketHandle{Socket: s}}, nil
}

func (s *xfrmSocket) Close() { s.sh.Close() }

// addState sends XFRM_MSG_NEWSA for x, with XFRM_STATE_AF_UNSPEC when x
// has no selector. It supports the fields netlinkState fills.
func (s *xfrmSocket) addState(x *netlink.XfrmState) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(nl.XFRM_MSG_NEWSA),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_XFRM: s.sh},
	}
	msg := &nl.XfrmUsersaInfo{}
	msg.Family = uint16(nl.GetIPFamily(x.Dst))
	msg.Id.Daddr.FromIP(x.Dst)
	msg.Id.Proto = uint8(x.Proto)
	msg.Id.Spi = nl.Swap32(uint32(x.Spi))
	msg.Saddr.FromIP(x.Src)
	msg.Mode = uint8(x.Mode)
	msg.Reqid = uint32(x.Reqid)
	msg.ReplayWindow = uint8(x.ReplayWindow)
	msg.Lft.SoftByteLimit, msg.Lft.HardByteLimit = nl.XFRM_INF, nl.XFRM_INF
	msg.Lft.SoftPacketLimit, msg.Lft.HardPacketLimit = nl.XFRM_INF, nl.XFRM_INF
	if sel := x.Selector; sel != nil {
		msg.Sel.Family = uint16(nl.GetIPFamily(sel.Dst.IP))
		msg.Sel.Daddr.FromIP(sel.Dst.IP)
		msg.Sel.Saddr.FromIP(sel.Src.IP)
		d, _ := sel.Dst.Mask.Size()
		s, _ := sel.Src.Mask.Size()
		msg.Sel.PrefixlenD, msg.Sel.PrefixlenS = uint8(d), uint8(s)
	} else {
		msg.Flags |= nl.XFRM_STATE_AF_UNSPEC
	}
	req.AddData(msg)
	// The serialised algorithms hold key material: zero them once sent.
	// (The request's own wire buffer is the netlink package's.)
	var secrets [][]byte
	defer func() {
		for _, b := range secrets {
			clear(b)
		}
	}()
	attr := func(typ int, b []byte) {
		secrets = append(secrets, b)
		req.AddData(nl.NewRtAttr(typ, b))
	}
	name := func(n string) (b [64]byte) {
		copy(b[:], n)
		return b
	}
	if a := x.Aead; a != nil {
		algo := nl.XfrmAlgoAEAD{AlgName: name(a.Name), AlgKeyLen: uint32(len(a.Key) * 8), AlgICVLen: uint32(a.ICVLen), AlgKey: a.Key}
		attr(nl.XFRMA_ALG_AEAD, algo.Serialize())
	}
	if a := x.Crypt; a != nil {
		algo := nl.XfrmAlgo{AlgName: name(a.Name), AlgKeyLen: uint32(len(a.Key) * 8), AlgKey: a.Key}
		attr(nl.XFRMA_ALG_CRYPT, algo.Serialize())
	}
	if a := x.Auth; a != nil {
		algo := nl.XfrmAlgoAuth{AlgName: name(a.Name), AlgKeyLen: uint32(len(a.Key) * 8), AlgTruncLen: uint32(a.TruncateLen), AlgKey: a.Key}
		attr(nl.XFRMA_ALG_AUTH_TRUNC, algo.Serialize())
	}
	if e := x.Encap; e != nil {
		t := nl.XfrmEncapTmpl{EncapType: uint16(e.Type), EncapSport: nl.Swap16(uint16(e.SrcPort)), EncapDport: nl.Swap16(uint16(e.DstPort))}
		req.AddData(nl.NewRtAttr(nl.XFRMA_ENCAP, t.Serialize()))
	}
	if x.Mark != nil || x.OutputMark != nil || x.ESN || x.Ifid != 0 || x.Replay != nil || x.Limits != (netlink.XfrmStateLimits{}) {
		return fmt.Errorf("xfrm: addState: unsupported state field")
	}
	_, err := req.Execute(unix.NETLINK_XFRM, 0)
	return err
}
