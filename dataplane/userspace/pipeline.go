package userspace

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"

	"github.com/mpsa-vpn/mpsa/esp"
)

// batch is the unit that moves through the pipeline: read by one reader,
// processed by one worker, delivered in order by one writer.
type batch struct {
	bufs  [][]byte // full-capacity buffers
	sizes []int
	msgs  []Message
	send  []Message // outbound: the messages of one socket, in order
	meta  []meta
	out   [][]byte // inbound: what goes to the TUN
	n     int
	tx    bool
	lport uint16 // inbound: the local port of the socket read
	st    *saState
	done  chan struct{} // the worker signals here when the batch is processed
}

type meta struct {
	drop esp.Drop
	skip bool // not ESP (IKE, keepalive): handled by the reader
	out  *outSA
	in   *inSA
	seq  uint32
	dst  netip.AddrPort
	conn Conn
	n    int // outbound: inner length
	pkt  esp.Packet
}

const (
	// defaultBatches is the number of batches each way (Config).
	defaultBatches = 8
	// inlineMax is the largest batch a reader processes itself when
	// nothing is in flight: a ping or a lone ACK then skips two goroutine
	// hand-offs, and order is kept because the pipeline is empty.
	inlineMax = 4
	// defaultRxBatch is the number of datagrams one recvmmsg asks for.
	defaultRxBatch = 64
	// rxGROBufSize is the inbound buffer size when the TUN coalesces TCP
	// segments on write (GRO, wireguard-go's tun): the first segment of a
	// flow in a batch becomes the head and needs room for the ones merged
	// into it. 16 KiB lets ~11 segments merge; the pool stays at 8 MiB.
	rxGROBufSize = 16 << 10
)

// rxBufSize is the size of an inbound buffer: room for the TUN to
// coalesce segments into when it can (a batch size above 1 means offloads).
func (b *Backend) rxBufSize() int {
	if b.batch > 1 {
		return max(b.bufSize, rxGROBufSize)
	}
	return b.bufSize
}

func (b *Backend) newBatch(n int, tx bool) *batch {
	size := b.bufSize
	if !tx {
		size = b.rxBufSize()
	}
	bt := &batch{
		bufs:  make([][]byte, n),
		sizes: make([]int, n),
		msgs:  make([]Message, n),
		send:  make([]Message, n),
		meta:  make([]meta, n),
		out:   make([][]byte, 0, n),
		tx:    tx,
		done:  make(chan struct{}, 1),
	}
	for i := range bt.bufs {
		bt.bufs[i] = make([]byte, size)
	}
	return bt
}

func (b *Backend) start() {
	b.txPool = make(chan *batch, b.txBatches)
	for range b.txBatches {
		b.txPool <- b.newBatch(b.batch, true)
	}
	b.rxPool = make(chan *batch, b.rxBatches)
	for range b.rxBatches {
		b.rxPool <- b.newBatch(b.rxBatch, false)
	}
	b.cryptQ = make(chan *batch, b.txBatches+b.rxBatches)
	b.txQ = make(chan *batch, b.txBatches)
	b.rxQ = make(chan *batch, b.rxBatches)

	b.wg.Add(3 + b.workers + len(b.conns))
	go b.routineReadTUN()
	go b.routineWriteNetwork()
	go b.routineWriteTUN()
	for range b.workers {
		go b.routineCrypto()
	}
	for _, c := range b.conns {
		go b.routineReadNetwork(c)
	}
}

// get takes a batch from pool, or nil once the backend is closing.
func (b *Backend) get(pool chan *batch) *batch {
	select {
	case bt := <-pool:
		return bt
	case <-b.closed:
		return nil
	}
}

// dispatch hands bt to the workers and, in the same order, to its writer.
func (b *Backend) dispatch(bt *batch, q chan *batch) bool {
	select {
	case b.cryptQ <- bt:
	case <-b.closed:
		return false
	}
	select {
	case q <- bt:
		return true
	case <-b.closed:
		return false
	}
}

func (b *Backend) routineReadTUN() {
	defer b.wg.Done()
	b.log.Debug("routine started: read TUN")
	defer b.log.Debug("routine stopped: read TUN")
	errs := 0
	for {
		bt := b.get(b.txPool)
		if bt == nil {
			return
		}
		n, err := b.tun.Read(bt.bufs, bt.sizes, esp.Headroom)
		if err != nil {
			if b.isClosing() || errors.Is(err, os.ErrClosed) {
				return
			}
			errs++
			if errs > 1000 {
				b.log.Error("TUN keeps failing, outbound path stopped", "err", err)
				return
			}
			if n == 0 {
				b.txPool <- bt
				continue
			}
		} else {
			errs = 0
		}
		bt.n = n
		bt.st = b.state.Load()
		for i := 0; i < n; i++ {
			b.classifyOutbound(bt, i)
		}
		if n <= inlineMax && b.txInflight.Load() == 0 {
			b.sealBatch(bt)
			b.sendBatch(bt)
			b.txPool <- bt
			continue
		}
		b.txInflight.Add(1)
		if !b.dispatch(bt, b.txQ) {
			return
		}
	}
}

// classifyOutbound finds route, SA, endpoint and sequence number for one
// packet read from the TUN.
func (b *Backend) classifyOutbound(bt *batch, i int) {
	m := &bt.meta[i]
	*m = meta{n: bt.sizes[i]}
	pkt := bt.bufs[i][esp.Headroom : esp.Headroom+m.n]
	var dst netip.Addr
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
	default:
		m.drop = esp.DropNotIP
		return
	}
	if esp.Headroom+m.n+esp.Tailroom > len(bt.bufs[i]) {
		m.drop = esp.DropTooBig
		return
	}
	nh, ok := b.fib.Lookup(dst)
	if !ok || nh.Local {
		m.drop = esp.DropNoRoute
		return
	}
	o := bt.st.out[nh.Tunnel]
	if o == nil {
		m.drop = esp.DropNoSA
		return
	}
	m.dst = o.peer
	if !m.dst.IsValid() {
		m.dst = nh.Endpoint
	}
	if o.local.IsValid() && o.local.Is4() != m.dst.Addr().Is4() {
		m.drop = esp.DropNoRoute // a source of the other family cannot be used
		return
	}
	if !m.dst.IsValid() {
		m.drop = esp.DropNoRoute
		return
	}
	raw, v6 := 0, 0
	if m.dst.Port() == 0 {
		raw = 1
	}
	if m.dst.Addr().Is6() {
		v6 = 1
	}
	if m.conn = b.out[raw][v6]; m.conn == nil {
		m.drop = esp.DropNoRoute
		return
	}
	seq, err := o.sa.NextSeq()
	if err != nil {
		m.drop = esp.DropSeqExhausted
		return
	}
	if seq >= esp.SoftSeqLimit && !o.signaled.Swap(true) && b.onRekeyDue != nil {
		go b.onRekeyDue(o.sa.SPI())
	}
	m.out, m.seq = o, seq
}

func (b *Backend) routineReadNetwork(c Conn) {
	defer b.wg.Done()
	b.log.Debug("routine started: read network", "local", c.LocalAddr().String())
	defer b.log.Debug("routine stopped: read network", "local", c.LocalAddr().String())
	var lport uint16
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		lport = uint16(ua.Port)
	}
	errs := 0
	failed := func(err error) (stop bool) {
		if b.isClosing() || errors.Is(err, net.ErrClosed) {
			return true
		}
		if errs++; errs > 1000 {
			b.log.Error("socket keeps failing, inbound path stopped", "err", err, "local", c.LocalAddr().String())
			return true
		}
		return false
	}
	for {
		// A batch is taken only once a datagram is there: a reader that
		// waited holding one would keep it from the other sockets'
		// readers, and with fewer batches than sockets some sockets
		// would never be read.
		if err := c.WaitRead(); err != nil {
			if failed(err) {
				return
			}
			continue
		}
		bt := b.get(b.rxPool)
		if bt == nil {
			return
		}
		for i := range bt.msgs {
			bt.msgs[i] = Message{Buf: bt.bufs[i]}
		}
		n, err := c.ReadBatch(bt.msgs)
		if err != nil {
			b.rxPool <- bt
			if failed(err) {
				return
			}
			continue
		}
		errs = 0
		bt.n = n
		bt.st = b.state.Load()
		bt.lport = lport
		raw := c.Raw()
		for i := 0; i < n; i++ {
			b.classifyInbound(bt, i, raw)
		}
		if n <= inlineMax && b.rxInflight.Load() == 0 {
			b.openBatch(bt)
			b.deliverBatch(bt)
			b.rxPool <- bt
			continue
		}
		b.rxInflight.Add(1)
		if !b.dispatch(bt, b.rxQ) {
			return
		}
	}
}

func (b *Backend) classifyInbound(bt *batch, i int, raw bool) {
	m := &bt.meta[i]
	*m = meta{}
	msg := &bt.msgs[i]
	data := msg.Buf[msg.Off : msg.Off+msg.N]
	if !raw {
		switch esp.Classify(data) {
		case esp.KindKeepalive:
			m.skip = true
			return
		case esp.KindIKE:
			m.skip = true
			var dst netip.AddrPort
			if msg.Dst.IsValid() {
				dst = netip.AddrPortFrom(msg.Dst, bt.lport)
			}
			b.ikeq.deliver(data, msg.Addr, dst)
			return
		case esp.KindInvalid:
			m.drop = esp.DropMalformed
			return
		}
	} else if len(data) < esp.HeaderLen {
		m.drop = esp.DropMalformed
		return
	}
	spi := binary.BigEndian.Uint32(data)
	if m.in = bt.st.in[spi]; m.in == nil {
		m.drop = esp.DropUnknownSPI
	}
}

func (b *Backend) routineCrypto() {
	defer b.wg.Done()
	for {
		var bt *batch
		select {
		case bt = <-b.cryptQ:
		case <-b.closed:
			return
		}
		if bt.tx {
			b.sealBatch(bt)
		} else {
			b.openBatch(bt)
		}
		bt.done <- struct{}{}
	}
}

func (b *Backend) sealBatch(bt *batch) {
	for i := 0; i < bt.n; i++ {
		m := &bt.meta[i]
		if m.drop != esp.DropNone {
			continue
		}
		out, err := m.out.sa.Seal(bt.bufs[i], m.n, m.seq)
		if err != nil {
			m.drop = esp.DropNoSA
			continue
		}
		off := esp.Headroom - m.out.sa.HeaderLen()
		bt.msgs[i] = Message{Buf: bt.bufs[i], Off: off, N: len(out), Addr: m.dst, Src: m.out.local}
	}
}

func (b *Backend) openBatch(bt *batch) {
	for i := 0; i < bt.n; i++ {
		m := &bt.meta[i]
		if m.drop != esp.DropNone || m.skip {
			continue
		}
		msg := &bt.msgs[i]
		m.pkt, m.drop = m.in.sa.Open(msg.Buf[msg.Off : msg.Off+msg.N])
	}
}

// wait blocks until bt is processed; false when the backend is closing.
func (b *Backend) wait(bt *batch) bool {
	select {
	case <-bt.done:
		return true
	case <-b.closed:
		return false
	}
}

func (b *Backend) routineWriteNetwork() {
	defer b.wg.Done()
	for {
		var bt *batch
		select {
		case bt = <-b.txQ:
		case <-b.closed:
			return
		}
		if !b.wait(bt) {
			return
		}
		b.sendBatch(bt)
		b.txInflight.Add(-1)
		b.txPool <- bt
	}
}

// sendBatch writes the sealed packets of bt, one WriteBatch per socket,
// keeping their order. What a socket did not take counts as no_route.
func (b *Backend) sendBatch(bt *batch) {
	for _, c := range b.conns {
		k := 0
		var bytes uint64
		for i := 0; i < bt.n; i++ {
			m := &bt.meta[i]
			if m.drop != esp.DropNone || m.conn != c {
				continue
			}
			bt.send[k] = bt.msgs[i]
			bytes += uint64(m.n)
			k++
		}
		if k == 0 {
			continue
		}
		sent, err := c.WriteBatch(bt.send[:k])
		if err != nil && b.isClosing() {
			return
		}
		b.txPackets.Add(uint64(sent))
		if sent < k {
			// The socket took the first sent packets; the rest are
			// dropped and their inner bytes not counted.
			j := 0
			for i := 0; i < bt.n; i++ {
				m := &bt.meta[i]
				if m.drop != esp.DropNone || m.conn != c {
					continue
				}
				if j >= sent {
					bytes -= uint64(m.n)
					m.drop = esp.DropNoRoute
				}
				j++
			}
		}
		b.txBytes.Add(bytes)
	}
	for i := 0; i < bt.n; i++ {
		b.drops.Add(bt.meta[i].drop)
	}
}

func (b *Backend) routineWriteTUN() {
	defer b.wg.Done()
	for {
		var bt *batch
		select {
		case bt = <-b.rxQ:
		case <-b.closed:
			return
		}
		if !b.wait(bt) {
			return
		}
		b.deliverBatch(bt)
		b.rxInflight.Add(-1)
		b.rxPool <- bt
	}
}

// deliverBatch moves the replay windows, checks selectors and writes the
// inner packets of bt to the TUN.
func (b *Backend) deliverBatch(bt *batch) {
	bytes := b.prepareDelivery(bt)
	if len(bt.out) == 0 {
		return
	}
	// The count tun.Device.Write returns is bytes for wireguard-go's
	// kernel TUN (packets, its documentation says): only the error tells
	// what went in. The kernel TUN writes every packet and joins the
	// errors of those it refused.
	_, err := b.tun.Write(bt.out, tunOff)
	n := uint64(len(bt.out))
	if err != nil {
		failed := min(n, uint64(countErrors(err)))
		if b.isClosing() {
			return
		}
		b.drops.AddN(esp.DropTUNWrite, failed)
		if failed == n {
			return
		}
		// Which ones failed is unknown: prorate the bytes.
		bytes = bytes * (n - failed) / n
		n -= failed
	}
	b.rxPackets.Add(n)
	b.rxBytes.Add(bytes)
}

// countErrors counts the errors err joins (errors.Join, nested or not);
// a plain error counts one.
func countErrors(err error) int {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return 1
	}
	n := 0
	for _, e := range j.Unwrap() {
		if e != nil {
			n += countErrors(e)
		}
	}
	return max(n, 1)
}

// prepareDelivery does the in-order part of receiving: it moves the
// replay windows (the ICV verified in the worker), checks selectors, counts
// drops and lines the inner packets up at tunOff in bt.out.
func (b *Backend) prepareDelivery(bt *batch) (bytes uint64) {
	bt.out = bt.out[:0]
	for i := 0; i < bt.n; i++ {
		m := &bt.meta[i]
		if m.skip {
			continue
		}
		if m.drop == esp.DropNone && !m.in.sa.Accept(&m.pkt) {
			m.drop = esp.DropReplay
		}
		if m.drop == esp.DropNone && !selectorsMatch(m.in, m.pkt.Inner) {
			m.drop = esp.DropSelector
		}
		if m.drop != esp.DropNone {
			b.drops.Add(m.drop)
			continue
		}
		buf := bt.bufs[i]
		inner := m.pkt.Inner
		start := cap(buf) - cap(inner)
		if start != tunOff {
			copy(buf[tunOff:], inner)
		}
		bt.out = append(bt.out, buf[:tunOff+len(inner)])
		bytes += uint64(len(inner))
	}
	return bytes
}

// selectorsMatch checks the inner source against the remote selectors and
// the inner destination against the local ones (RFC 4301 §5.2).
func selectorsMatch(in *inSA, pkt []byte) bool {
	if len(in.remote) == 0 && len(in.local) == 0 {
		return true
	}
	var src, dst netip.Addr
	if pkt[0]>>4 == 4 {
		src, dst = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	}
	return inAny(in.remote, src) && inAny(in.local, dst)
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (b *Backend) isClosing() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}
