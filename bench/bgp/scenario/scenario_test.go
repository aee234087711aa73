package scenario

import "testing"

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
