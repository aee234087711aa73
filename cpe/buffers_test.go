//go:build !mpsa_omit_userspace

package cpe

import (
	"log/slog"
	"net/netip"
	"os"
	"testing"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/dataplane/userspace"
	"github.com/mpsa-vpn/mpsa/internal/testenv"
	"github.com/mpsa-vpn/mpsa/routing"
)

// TestUserspaceBuffers: the CPE's userspace data plane gets the CPE's
// buffer pools (DefaultUserspaceBuffers, about 1 MiB), or what
// WithUserspaceBuffers asks for, with zero fields defaulted.
func TestUserspaceBuffers(t *testing.T) {
	if got := (UserspaceBuffers{RxBatchSize: 32}).withDefaults(); got != (UserspaceBuffers{TxBatches: DefaultUserspaceBuffers.TxBatches,
		RxBatches: DefaultUserspaceBuffers.RxBatches, RxBatchSize: 32}) {
		t.Errorf("defaults filled in: %+v", got)
	}
	testenv.Root(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun")
	}
	ns := testenv.NewNetns(t, "cbuf")
	open := func(c userspace.Config) int {
		t.Helper()
		var b *userspace.Backend
		if err := ns.Do(func() error {
			var err error
			c.FIB, c.TUNName, c.Logger = routing.New(), "bufref0", slog.New(slog.DiscardHandler)
			b, err = userspace.New(c)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		return b.BufferBytes()
	}
	for _, tc := range []struct {
		name string
		opts []Option
		want userspace.Config
	}{
		{"defaults", nil, userspace.Config{TxBatches: 2, RxBatches: 6, RxBatchSize: 8, RawESP: true}},
		{"asked for", []Option{WithUserspaceBuffers(UserspaceBuffers{TxBatches: 4, RxBatchSize: 32})},
			userspace.Config{TxBatches: 4, RxBatches: 6, RxBatchSize: 32, RawESP: true}},
		{"no offloads", []Option{WithUserspaceBuffers(UserspaceBuffers{NoOffloads: true})},
			userspace.Config{TxBatches: 2, RxBatches: 6, RxBatchSize: 8, NoOffloads: true, RawESP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cpeConfig(t, "fqdn:cpe1.example.net", []netip.AddrPort{netip.MustParseAddrPort("192.0.2.254:500")}, "10.1.0.0/24")
			cfg.Dataplane.Backend = configs.BackendUserspace
			c, err := New(cfg, slog.New(slog.DiscardHandler), append([]Option{WithNetns(ns.Name)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			dp, err := c.buildDataplane(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := dp.Backend.(*userspace.Backend).BufferBytes()
			dp.Backend.Close()
			if want := open(tc.want); got != want {
				t.Errorf("the CPE's backend has %d octets of buffers, one made with %+v %d", got, tc.want, want)
			}
			if tc.name == "defaults" && got > 3<<19 {
				t.Errorf("default buffers take %d octets, more than 1.5 MiB", got)
			}
		})
	}
}
