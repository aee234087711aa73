package userspace

import (
	"net"
	"net/netip"
)

// Message is one datagram in a Conn batch call.
type Message struct {
	// Buf holds the datagram at Buf[Off:Off+N]. On read, the Conn fills Buf
	// from index 0 and sets Off and N (a raw IPv4 socket skips the IP
	// header through Off); on write it sends Buf[Off:Off+N].
	Buf  []byte
	Off  int
	N    int
	Addr netip.AddrPort // source on read, destination on write
	// Src is the outer source address on write (IP_PKTINFO); zero lets
	// the kernel choose. Reads leave it zero.
	Src netip.Addr
	// Dst is, on read, the local address the datagram was sent to, when
	// the socket tells (IP_PKTINFO / IPV6_PKTINFO on UDP sockets); zero
	// otherwise. Writes ignore it.
	Dst netip.Addr
}

// Conn is a batched datagram socket for the outer packets: a UDP socket on
// port 4500 (ESP-in-UDP and IKE, RFC 3948) or a raw IP protocol 50 socket
// (Raw reports true; Addr ports are 0). Implementations must allow one
// reader (WaitRead and ReadBatch, called by one goroutine at a time) and
// several WriteBatch calls at the same time, and must not allocate per
// packet. After Close, WaitRead, ReadBatch and WriteBatch return
// net.ErrClosed.
type Conn interface {
	// WaitRead blocks until a datagram is there to read, without taking
	// it: the reader's next ReadBatch returns at once. It lets the backend
	// take an inbound batch from its pool only when there is something to
	// put in it. A nil error does not promise a datagram if the Conn can
	// fail: ReadBatch then returns that error.
	WaitRead() error
	// ReadBatch blocks for at least one datagram and returns how many of ms
	// it filled.
	ReadBatch(ms []Message) (int, error)
	// WriteBatch sends ms in order and returns how many were sent.
	WriteBatch(ms []Message) (int, error)
	// Raw reports whether the socket carries ESP directly in IP.
	Raw() bool
	LocalAddr() net.Addr
	Close() error
}
