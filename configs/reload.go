package configs

import (
	"sync"
	"sync/atomic"
)

// HubLoader loads and checks a hub configuration from wherever it lives
// (configs/viperconf.HubLoader reads the file, environment and flags).
type HubLoader func() (*Hub, []Warning, error)

// CPELoader loads and checks a CPE configuration.
type CPELoader func() (*CPE, []Warning, error)

// reloader holds the running configuration and swaps it only for one that
// loaded and validated completely.
type reloader[C any] struct {
	load func() (*C, []Warning, error)

	cur atomic.Pointer[C]

	// mu serialises Reload, so diffs are taken against the configuration
	// they replace.
	mu sync.Mutex
}

func (r *reloader[C]) reload() (old, new *C, warns []Warning, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, warns, err := r.load()
	if err != nil {
		return nil, nil, warns, err
	}
	return r.cur.Swap(c), c, warns, nil
}

// HubReloader holds the hub's running configuration. The daemon calls
// Reload on SIGHUP (or when a file watch fires); a configuration that fails
// to load or validate is reported and the running one is kept.
type HubReloader struct {
	r reloader[Hub]
}

// NewHubReloader loads the initial configuration.
func NewHubReloader(load HubLoader) (*HubReloader, []Warning, error) {
	h, warns, err := load()
	if err != nil {
		return nil, warns, err
	}
	r := &HubReloader{r: reloader[Hub]{load: load}}
	r.r.cur.Store(h)
	return r, warns, nil
}

// Current returns the running configuration. Callers must not modify it.
func (r *HubReloader) Current() *Hub { return r.r.cur.Load() }

// Reload loads the configuration again. On success it becomes Current and
// Reload returns what changed; on failure Current is unchanged and the
// error names every bad field. The replaced configuration is not wiped: the
// daemon calls Wipe on it once nothing uses it.
func (r *HubReloader) Reload() (HubDiff, []Warning, error) {
	old, new, warns, err := r.r.reload()
	if err != nil {
		return HubDiff{}, warns, err
	}
	return DiffHub(old, new), warns, nil
}

// CPEReloader is HubReloader for the CPE.
type CPEReloader struct {
	r reloader[CPE]
}

// NewCPEReloader loads the initial configuration.
func NewCPEReloader(load CPELoader) (*CPEReloader, []Warning, error) {
	c, warns, err := load()
	if err != nil {
		return nil, warns, err
	}
	r := &CPEReloader{r: reloader[CPE]{load: load}}
	r.r.cur.Store(c)
	return r, warns, nil
}

// Current returns the running configuration. Callers must not modify it.
func (r *CPEReloader) Current() *CPE { return r.r.cur.Load() }

// Reload loads the configuration again, as HubReloader.Reload does.
func (r *CPEReloader) Reload() (CPEDiff, []Warning, error) {
	old, new, warns, err := r.r.reload()
	if err != nil {
		return CPEDiff{}, warns, err
	}
	return DiffCPE(old, new), warns, nil
}
