package store

import (
	"bytes"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpsa-vpn/mpsa/mpsa"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mpsa.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != FileMode {
		t.Fatalf("new store: mode %v, %v; want %v", fi.Mode().Perm(), err, FileMode)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q", s.Path())
	}
	if _, err := Open(path); err == nil {
		t.Error("a second open of a held store succeeded")
	}

	rec := []byte("not really a record, the key server checks those")
	if err := s.SaveGroup("acme", rec); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveGroup("", rec); err == nil {
		t.Error("SaveGroup accepted an empty name")
	}
	got, err := s.LoadGroup("acme")
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("LoadGroup = %q, %v", got, err)
	}
	clear(got) // the caller owns (and wipes) what it gets
	if again, _ := s.LoadGroup("acme"); !bytes.Equal(again, rec) {
		t.Errorf("wiping a loaded record changed the stored one: %q", again)
	}
	if none, err := s.LoadGroup("other"); none != nil || err != nil {
		t.Errorf("missing group: %q, %v", none, err)
	}
	if err := s.UpdateMembers(map[string]string{"c1": "acme", "c2": "acme"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateMembers(map[string]string{"c3": "beta"}, []string{"c1", "never"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"c2": "acme", "c3": "beta"}
	if m, err := s.LoadMembers(); err != nil || !maps.Equal(m, want) {
		t.Errorf("members %v, %v; want %v", m, err, want)
	}
	if err := s.DeleteGroup("acme"); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.LoadGroup("acme"); g != nil {
		t.Error("deleted group still stored")
	}
	if err := s.SaveGroup("beta", rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened after someone loosened the mode: 0600 again, contents kept.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != FileMode {
		t.Errorf("reopened store: mode %v", fi.Mode().Perm())
	}
	if g, _ := s.LoadGroup("beta"); !bytes.Equal(g, rec) {
		t.Errorf("after reopening: beta = %q", g)
	}
	if m, _ := s.LoadMembers(); !maps.Equal(m, want) {
		t.Errorf("after reopening: members %v", m)
	}
}

func TestOpenFails(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "mpsa.db")); err == nil || !strings.HasPrefix(err.Error(), "store: ") {
		t.Errorf("Open in a missing directory: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("x"), 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(bad); err == nil {
		s.Close()
		t.Error("Open accepted a file that is not a bbolt database")
	}
}

// TestRestartFromFile: a key server's groups and provisioning come back
// from the file after the hub restarts: same epoch, SPI and expiry, no new
// SA.
func TestRestartFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mpsa.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Store: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	provision := map[string]string{"a1": "acme", "b1": "beta"}
	if err := ks.Sync(nil, provision); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"acme", "beta"} {
		if err := ks.AddGroup(mpsa.GroupConfig{Name: g}); err != nil {
			t.Fatal(err)
		}
	}
	before := ks.Status()
	ks.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ks, err = mpsa.NewKeyServer(mpsa.KeyServerConfig{Store: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if got := ks.Provisioned(); !maps.Equal(got, provision) {
		t.Errorf("provisioning after restart %v, want %v", got, provision)
	}
	for _, g := range []string{"acme", "beta"} {
		if err := ks.AddGroup(mpsa.GroupConfig{Name: g}); err != nil {
			t.Fatal(err)
		}
	}
	after := ks.Status()
	if len(after) != len(before) {
		t.Fatalf("%d groups before, %d after", len(before), len(after))
	}
	for i := range before {
		a, b := before[i], after[i]
		if len(a.Epochs) != 1 || len(b.Epochs) != 1 {
			t.Fatalf("%s: %d epochs before, %d after", a.Name, len(a.Epochs), len(b.Epochs))
		}
		ea, eb := a.Epochs[0], b.Epochs[0]
		if a.Name != b.Name || ea.Epoch != eb.Epoch || ea.SPI != eb.SPI || !ea.Expires.Equal(eb.Expires) {
			t.Errorf("%s: epoch before %d %08x %v, after %s %d %08x %v", a.Name, ea.Epoch, ea.SPI, ea.Expires, b.Name, eb.Epoch, eb.SPI, eb.Expires)
		}
	}
}

// TestDamage: a damaged record or provisioning is refused by the key
// server, never installed.
func TestDamage(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "mpsa.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ks, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Store: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.AddGroup(mpsa.GroupConfig{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	ks.Close()
	good, err := s.LoadGroup("acme")
	if err != nil || good == nil {
		t.Fatalf("acme's record: %v", err)
	}

	bad := bytes.Clone(good)
	bad[0] = 9 // record version
	cases := map[string]func() error{
		"bad version":   func() error { return s.SaveGroup("acme", bad) },
		"truncated":     func() error { return s.SaveGroup("acme", good[:len(good)-1]) },
		"another group": func() error { return s.SaveGroup("beta", good) }, // acme's record under beta
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			if err := damage(); err != nil {
				t.Fatal(err)
			}
			ks, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Store: s, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer ks.Close()
			g := "acme"
			if name == "another group" {
				g = "beta"
			}
			if err := ks.AddGroup(mpsa.GroupConfig{Name: g}); err == nil {
				t.Errorf("AddGroup(%s) accepted a damaged record", g)
			}
		})
	}

	if err := s.UpdateMembers(map[string]string{"c1": strings.Repeat("g", mpsa.MaxGroupNameLen+1)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mpsa.NewKeyServer(mpsa.KeyServerConfig{Store: s, Logger: quiet()}); err == nil {
		t.Error("NewKeyServer accepted an over-long group name in the provisioning")
	}
}
