package routing

import (
	"testing"
	"time"
)

func TestTmpLoad(t *testing.T) {
	d := genBench()
	t.Logf("gen done")
	// d.routes = d.routes[:200000]
	st := time.Now()
	f := loadFIB(d)
	t.Logf("load %d: %v %+v", len(d.routes), time.Since(st), f.Stats())
}
