// Package userspace is the default data plane backend: ESP in Go between a
// TUN device and UDP port 4500 (RFC 3948) or raw IP protocol 50 sockets. It
// runs on kernels without ESP, like the one CI has.
//
// # Packet path
//
// Outbound, one goroutine reads batches from the TUN (with the kernel's
// TSO/GSO offloads when the TUN has them, wireguard-go's tun package splits
// super-packets), asks the FIB where each packet's destination goes
// (routing.NextHop: ESP endpoint and tunnel), picks the SA serving that
// tunnel and reserves its sequence numbers in order. Crypto workers, one
// per core, seal whole batches in parallel; one writer goroutine takes the
// batches in the order they were read, waits for each to be sealed and
// sends it with sendmmsg (UDP GSO for runs of equal-sized datagrams to one
// endpoint). A group SA's outer destination is the route's endpoint; a
// CHILD_SA's is its fixed Peer. Endpoint port 0 means raw ESP.
//
// Inbound mirrors it: one reader per socket (recvmmsg), SA by SPI, workers
// open in parallel, one writer moves the replay windows in arrival order
// (only for packets whose ICV verified), checks the inner addresses
// against the SA's selectors and writes the batch to the TUN. Ordering is
// per batch queue, so every SA's packets are delivered in order. A reader
// that finds the pipeline empty handles a small batch (a ping, a lone ACK)
// itself, which saves two goroutine hand-offs of latency and keeps the order.
//
// Buffers come from bounded pools of batches: when the network or the TUN
// is slower than the readers, the readers wait; nothing grows. A socket's
// reader waits for a datagram before it takes a batch (Conn.WaitRead), so
// an idle socket holds none and any pool size serves every socket. With an
// offloading TUN the default pools hold about 10 MiB (8 outbound batches of
// 128 MTU-sized buffers, 8 inbound batches of 64 16-KiB buffers, so the TUN
// can coalesce TCP segments on write). Config sets the number of batches
// and the inbound batch size, and NoOffloads opens the TUN without
// offloads (one packet per read, MTU-sized buffers: about 1 MiB with the
// default batches), for routers short of memory; BufferBytes tells what
// the pools take. The packet path neither allocates nor logs: every
// dropped packet is counted by reason in Stats.
//
// The outer source address is dataplane.SA.Local when set (IP_PKTINFO /
// IPV6_PKTINFO on each send), else the kernel's choice for the destination.
//
// # Sharing port 4500 with IKE
//
// The backend owns the UDP 4500 sockets. Datagrams that start with the
// non-ESP marker are IKE: they wait in a bounded queue for the IKE engine.
// NATT returns a conn with the IKE engine's method set (ike.Conn and
// ike.SourceAddrConn, without importing ike): ReadPacket yields each
// datagram (marker included) with its sender and the local address it was
// sent to (IP_PKTINFO / IPV6_PKTINFO, read without allocating per packet),
// WritePacket sends IKE datagrams (marker included) and NAT keepalives
// (RFC 3948 §2.3, sent by the IKE engine behind a NAT) from a chosen local
// address, and SourceAddr tells the kernel's choice of source for a peer.
// IKEConn is the same as a net.PacketConn. NAT keepalives received are
// dropped.
//
// # Kernel routes
//
// SetRoutes keeps the kernel's routes for the FIB's prefixes pointing at
// the TUN (through netlink), so the kernel hands the backend the packets to
// encrypt; FollowRoutes feeds it the routing change feed's changes as they
// come. The backend's mirror of those routes is one sorted table of 24
// octets a prefix (no pointers for the garbage collector to scan). It adds
// a route only where the kernel has none (a connected LAN stays) and
// removes only its own (protocol 252). A netlink watch puts back what the
// kernel or someone else takes away; a socket filter in the kernel lets
// through only deleted routes and the TUN's link changes and removed
// addresses, so the echo of every route the backend adds never reaches
// the process.
package userspace
