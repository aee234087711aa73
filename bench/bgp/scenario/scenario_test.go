package scenario

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

func TestPlan(t *testing.T) {
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 999, 4999, 65535} {
		for j := 0; j < 16; j++ {
			p := Prefix(i, j)
			ok := false
			for _, a := range Authorised(i) {
				if a.Contains(p.Addr()) && a.Bits() <= p.Bits() {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("%d %d %v not in %v", i, j, p, Authorised(i))
			}
			if seen[p.String()] {
				t.Fatal("dup", p)
			}
			seen[p.String()] = true
		}
		for _, a := range Authorised(i) {
			for _, k := range []int{i + 1} {
				if k < MaxCPEs {
					for j := 0; j < 16; j++ {
						if a.Contains(Prefix(k, j).Addr()) {
							t.Fatalf("overlap %v %v", a, Prefix(k, j))
						}
					}
				}
			}
		}
	}
	t.Log(CPEAddr(0), CPEAddr(999), Endpoint(0), Prefix(1, 0), Prefix(1, 1), Authorised(1))
}

// TestBirdConfig: BIRD 2 itself parses the reflector's configuration.
func TestBirdConfig(t *testing.T) {
	bin := testenv.Binary(t, "bird", "apt-get install bird2")
	conf := filepath.Join(t.TempDir(), "bird.conf")
	if err := os.WriteFile(conf, []byte(BirdConfig(1179)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-p", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("bird -p: %v\n%s", err, out)
	}
}
