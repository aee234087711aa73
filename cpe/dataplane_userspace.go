//go:build !mpsa_omit_userspace

package cpe

import (
	"context"

	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/ike"
)

// The backend's NAT-T conn tells the engine each datagram's local address
// and the source address towards a peer.
var _ ike.SourceAddrConn = (*userspace.NATTConn)(nil)

// newUserspace starts the userspace backend: a TUN device named and sized
// as configured, ESP-in-UDP on port 4500 (shared with IKE: each engine
// gets its own NATTConn) and, unless the
// configuration wants UDP only, raw ESP sockets. Without the privilege for
// raw sockets it falls back to UDP.
func newUserspace(env DataplaneEnv) (*Dataplane, error) {
	cfg := env.Config
	open := func(raw bool) (*userspace.Backend, error) {
		var b *userspace.Backend
		err := env.InNetns(func() error {
			var err error
			ucfg := userspace.Config{
				FIB:     env.FIB,
				TUNName: cfg.Dataplane.TUN.Name,
				MTU:     cfg.Dataplane.TUN.MTU,
				RawESP:  raw,
				Logger:  env.Logger,
			}
			env.Buffers.withDefaults().apply(&ucfg)
			b, err = userspace.New(ucfg)
			return err
		})
		return b, err
	}
	raw := rawESPFor(cfg)
	b, err := open(raw)
	if err != nil && raw {
		env.Logger.Warn("data plane: no raw ESP sockets, ESP goes in UDP", "err", err)
		raw = false
		b, err = open(false)
	}
	if err != nil {
		return nil, err
	}
	return &Dataplane{
		Backend:    b,
		Name:       "userspace",
		NATT:       func() (ike.Conn, error) { return b.NATT(), nil },
		Interface:  b.TUNName(),
		BindDevice: b.TUNName(),
		RawESP:     raw,
		Run: func(ctx context.Context) error {
			sub := env.FIB.Subscribe()
			defer sub.Close()
			return b.FollowRoutes(ctx, sub)
		},
	}, nil
}

// apply sets the pool sizes of c.
func (b UserspaceBuffers) apply(c *userspace.Config) {
	c.TxBatches, c.RxBatches, c.RxBatchSize, c.NoOffloads = b.TxBatches, b.RxBatches, b.RxBatchSize, b.NoOffloads
}
