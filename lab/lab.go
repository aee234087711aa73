package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// DefaultDir is the parent of the labs' working directories.
const DefaultDir = "/run/mpsa-lab"

// Group timer defaults of a lab: short enough to watch a rollover, long
// enough not to rekey during a demonstration.
const (
	DefaultLifetime    = time.Hour
	DefaultRekeyMargin = 5 * time.Minute
	DefaultRoll1       = 5 * time.Second
	DefaultRoll2       = 15 * time.Second
)

// ErrExists is returned by New when a lab of that name is already up.
var ErrExists = errors.New("lab: a lab of this name is up")

// Config describes a lab. The zero value (plus the daemons' binaries) is a
// lab named "default" with no CPE on an IPv4 underlay.
type Config struct {
	// Name names the lab (lower-case letters and digits): its namespaces
	// are Prefix+Name+"-"+node. Default "default".
	Name string `json:"name"`
	// Dir is the working directory (configs, logs, sockets, lab.json);
	// default DefaultDir/Name. It is made with mode 0700.
	Dir string `json:"dir"`
	// CPEs is how many CPEs New makes and starts (at most MaxCPEs).
	CPEs int `json:"cpes"`
	// Underlay is the family of the underlay segment (default IPv4).
	Underlay Family `json:"underlay"`
	// IPv4Only gives the LANs IPv4 prefixes only (default: IPv4 and IPv6).
	IPv4Only bool `json:"ipv4_only"`
	// Certificates gives the hub a certificate from a lab CA, so CPEs can
	// authenticate with certificates (CPEOptions.Cert).
	Certificates bool `json:"certificates"`
	// HubBin and CPEBin are the daemons' binaries (see Locate and Build).
	HubBin string `json:"hub_bin"`
	CPEBin string `json:"cpe_bin"`
	// Backend is every daemon's dataplane.backend (default auto).
	Backend string `json:"backend"`
	// ESP is the group SA's transform (default: the hub's default).
	ESP string `json:"esp,omitempty"`
	// Group SA timers (defaults DefaultLifetime, ...).
	Lifetime    time.Duration `json:"lifetime"`
	RekeyMargin time.Duration `json:"rekey_margin"`
	Roll1       time.Duration `json:"roll1"`
	Roll2       time.Duration `json:"roll2"`
	// LogLevel of the daemons (default info).
	LogLevel string `json:"log_level"`
	// Progress receives a line per step; nil discards them.
	Progress io.Writer `json:"-"`
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(DefaultDir, c.Name)
	}
	if c.Underlay == 0 {
		c.Underlay = IPv4
	}
	if c.Backend == "" {
		c.Backend = "auto"
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.RekeyMargin == 0 {
		c.RekeyMargin = DefaultRekeyMargin
	}
	if c.Roll1 == 0 {
		c.Roll1 = DefaultRoll1
	}
	if c.Roll2 == 0 {
		c.Roll2 = DefaultRoll2
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
}

func (c *Config) validate() error {
	switch {
	case !validName(c.Name):
		return fmt.Errorf("lab: name %q: expected 1 to %d lower-case letters and digits", c.Name, MaxNameLen)
	case c.CPEs < 0 || c.CPEs > MaxCPEs:
		return fmt.Errorf("lab: %d CPEs: expected 0 to %d", c.CPEs, MaxCPEs)
	case c.Underlay != IPv4 && c.Underlay != IPv6:
		return fmt.Errorf("lab: underlay %v: expected IPv4 or IPv6", c.Underlay)
	case c.HubBin == "" || c.CPEBin == "":
		return errors.New("lab: the paths of mpsa-hub and mpsa-cpe are not set (Locate or Build)")
	case len(filepath.Join(c.Dir, "cpe00.sock")) > 100:
		return fmt.Errorf("lab: directory %s is too long for Unix socket paths", c.Dir)
	}
	for _, b := range []string{c.HubBin, c.CPEBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("lab: %s is not an executable file", b)
		}
	}
	return nil
}

// Hub is the lab's hub node.
type Hub struct {
	NS       string     `json:"ns"`
	WAN      netip.Addr `json:"wan"`
	Config   string     `json:"config"`
	Socket   string     `json:"socket"`
	Log      string     `json:"log"`
	StateDir string     `json:"state_dir"`
	KeyFile  string     `json:"esp_keys"` // key_export.esp (Wireshark esp_sa table)
	CertFile string     `json:"cert,omitempty"`
	KeyPath  string     `json:"key,omitempty"`
}

// CPE is one CPE of the lab with its LAN host.
type CPE struct {
	Index    int            `json:"index"`
	Name     string         `json:"name"` // cpeN: also its process's name
	Identity string         `json:"identity"`
	NS       string         `json:"ns"`      // the CPE router
	HostNS   string         `json:"host_ns"` // its LAN host
	WAN      netip.Addr     `json:"wan"`     // current underlay address
	Prefixes []netip.Prefix `json:"prefixes"`
	Hosts    []netip.Addr   `json:"hosts"`    // the LAN host's address in each prefix
	Gateways []netip.Addr   `json:"gateways"` // the CPE's address in each prefix
	Config   string         `json:"config"`
	Socket   string         `json:"socket"`
	Log      string         `json:"log"`
	KeyFile  string         `json:"esp_keys"` // key_export.esp (Wireshark esp_sa table)

	// Provisioned: listed in the hub's configuration. Removed: taken out by
	// RemoveCPE (its daemon stopped).
	Provisioned bool `json:"provisioned"`
	Removed     bool `json:"removed,omitempty"`

	// Credentials: the PSK the CPE uses and the one the hub holds for it
	// (different for a wrong-PSK CPE), or a certificate.
	PSK      string    `json:"psk,omitempty"`
	HubPSK   string    `json:"hub_psk,omitempty"`
	Cert     bool      `json:"cert,omitempty"`
	CertFile string    `json:"cert_file,omitempty"`
	KeyPath  string    `json:"key_file,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// Host returns the LAN host's address of family f (invalid if none).
func (c *CPE) Host(f Family) netip.Addr {
	for _, h := range c.Hosts {
		if FamilyOf(h) == f {
			return h
		}
	}
	return netip.Addr{}
}

// credentialsOK reports whether the CPE should pass authentication now.
func (c *CPE) credentialsOK(now time.Time) bool {
	if c.Cert {
		return now.Before(c.NotAfter)
	}
	return c.PSK == c.HubPSK
}

// state is what lab.json holds.
type state struct {
	Config Config         `json:"config"`
	Switch string         `json:"switch_ns"`
	Hub    Hub            `json:"hub"`
	CPEs   []*CPE         `json:"cpes"`
	CA     bool           `json:"ca"`
	PIDs   map[string]int `json:"pids"`
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	mu    sync.Mutex // guards the following
	st    state
	ca    *labCA
	procs map[string]*proc
}

// stateFile is lab.json in the lab directory.
func stateFile(dir string) string { return filepath.Join(dir, "lab.json") }

// New builds a lab: the namespaces, links and addresses, the daemons'
// configurations, and starts the hub and cfg.CPEs CPEs. It does not wait
// for them to converge (WaitConverged). If anything fails, what was made is
// removed again.
func New(ctx context.Context, cfg Config) (_ *Lab, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := Check(); err != nil {
		return nil, err
	}
	if ns := listNS(nsName(cfg.Name, "")); len(ns) > 0 {
		return nil, fmt.Errorf("%w: %s has namespaces %v (mpsa-lab down -name %s)", ErrExists, cfg.Name, ns, cfg.Name)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{procs: map[string]*proc{}}
	l.st = state{Config: cfg, Switch: nsName(cfg.Name, "sw"), PIDs: map[string]int{}}
	defer func() {
		if err != nil {
			l.Down(context.WithoutCancel(ctx))
		}
	}()
	l.progress("lab %s: %d CPEs, %v underlay, in %s", cfg.Name, cfg.CPEs, cfg.Underlay, cfg.Dir)
	if err := l.buildCore(cfg); err != nil {
		return nil, err
	}
	for range cfg.CPEs {
		if _, err := l.addCPE(ctx, CPEOptions{NoStart: true}, false); err != nil {
			return nil, err
		}
	}
	if err := l.writeHubConfig(); err != nil {
		return nil, err
	}
	if err := l.Start(ctx, "hub"); err != nil {
		return nil, err
	}
	for _, c := range l.CPEs() {
		if err := l.Start(ctx, c.Name); err != nil {
			return nil, err
		}
	}
	return l, l.save()
}

// Up is New followed by WaitConverged.
func Up(ctx context.Context, cfg Config) (*Lab, *Snapshot, error) {
	l, err := New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	snap, err := l.WaitConverged(ctx)
	if err != nil {
		return l, snap, err
	}
	return l, snap, nil
}

// buildCore makes the switch and the hub.
func (l *Lab) buildCore(cfg Config) error {
	sw := l.st.Switch
	if err := createNS(sw); err != nil {
		return err
	}
	if err := addBridge(sw, "br0"); err != nil {
		return err
	}
	h := Hub{
		NS: nsName(cfg.Name, "hub"), WAN: hubWAN(cfg.Underlay),
		Config: filepath.Join(cfg.Dir, "hub.yaml"), Socket: filepath.Join(cfg.Dir, "hub.sock"),
		Log: filepath.Join(cfg.Dir, "hub.log"), StateDir: filepath.Join(cfg.Dir, "hub-state"),
		KeyFile: filepath.Join(cfg.Dir, "hub.esp_sa"),
	}
	l.st.Hub = h
	if err := createNS(h.NS); err != nil {
		return err
	}
	if err := veth(sw, "hub", h.NS, "eth0", "br0"); err != nil {
		return err
	}
	if err := addrAdd(h.NS, "eth0", netip.PrefixFrom(h.WAN, underlayPrefix(cfg.Underlay).Bits())); err != nil {
		return err
	}
	if cfg.Certificates {
		ca, err := newCA()
		if err != nil {
			return err
		}
		if err := ca.save(l.caCertPath(), l.caKeyPath()); err != nil {
			return err
		}
		l.ca, l.st.CA = ca, true
		l.st.Hub.CertFile, l.st.Hub.KeyPath = filepath.Join(cfg.Dir, "hub.crt"), filepath.Join(cfg.Dir, "hub.key")
		now := time.Now()
		if err := ca.issue("hub.lab", now.Add(-time.Hour), now.Add(30*24*time.Hour), l.st.Hub.CertFile, l.st.Hub.KeyPath); err != nil {
			return err
		}
	}
	l.progress("hub %s at %v", h.NS, h.WAN)
	return nil
}

// CPEOptions changes how AddCPE makes a CPE.
type CPEOptions struct {
	// Unprovisioned leaves it out of the hub's configuration: an unknown
	// identity to the hub.
	Unprovisioned bool
	// WrongPSK gives the hub a PSK for it that differs from the CPE's.
	WrongPSK bool
	// Cert makes it authenticate with a certificate from the lab CA
	// (Config.Certificates) valid until NotAfter (zero: 30 days from now).
	Cert     bool
	NotAfter time.Time
	// NoStart writes everything but does not start its daemon (Start).
	NoStart bool
}

// AddCPE adds a CPE with the next free index: its namespaces and links, its
// configuration, the hub's provisioning (reloaded with SIGHUP unless
// Unprovisioned), and starts it unless NoStart. It does not wait for it to
// join.
func (l *Lab) AddCPE(ctx context.Context, opts CPEOptions) (CPE, error) {
	c, err := l.addCPE(ctx, opts, true)
	if err != nil {
		return CPE{}, err
	}
	return c, l.save()
}

func (l *Lab) addCPE(ctx context.Context, opts CPEOptions, reload bool) (CPE, error) {
	l.mu.Lock()
	cfg := l.st.Config
	idx := 1
	for _, c := range l.st.CPEs {
		idx = max(idx, c.Index+1)
	}
	l.mu.Unlock()
	if idx > MaxCPEs {
		return CPE{}, fmt.Errorf("lab: at most %d CPEs", MaxCPEs)
	}
	if opts.Cert && !cfg.Certificates {
		return CPE{}, errors.New("lab: a CPE with a certificate needs Config.Certificates")
	}
	name := fmt.Sprintf("cpe%d", idx)
	c := &CPE{
		Index: idx, Name: name, Identity: fmt.Sprintf("fqdn:%s.lab", name),
		NS: nsName(cfg.Name, name), HostNS: nsName(cfg.Name, fmt.Sprintf("lan%d", idx)),
		WAN:     cpeWAN(cfg.Underlay, idx, false),
		Config:  filepath.Join(cfg.Dir, name+".yaml"),
		Socket:  filepath.Join(cfg.Dir, name+".sock"),
		Log:     filepath.Join(cfg.Dir, name+".log"),
		KeyFile: filepath.Join(cfg.Dir, name+".esp_sa"),
	}
	c.Provisioned = !opts.Unprovisioned
	fams := []Family{IPv4, IPv6}
	if cfg.IPv4Only {
		fams = fams[:1]
	}
	for _, f := range fams {
		p := lanPrefix(f, idx)
		c.Prefixes = append(c.Prefixes, p)
		c.Gateways = append(c.Gateways, nthAddr(p, 1))
		c.Hosts = append(c.Hosts, nthAddr(p, 2))
	}
	if opts.Cert {
		c.Cert = true
		c.CertFile, c.KeyPath = filepath.Join(cfg.Dir, name+".crt"), filepath.Join(cfg.Dir, name+".key")
		c.NotAfter = opts.NotAfter
		if c.NotAfter.IsZero() {
			c.NotAfter = time.Now().Add(30 * 24 * time.Hour)
		}
		l.mu.Lock()
		ca := l.ca
		l.mu.Unlock()
		if err := ca.issue(name+".lab", time.Now().Add(-time.Hour), c.NotAfter, c.CertFile, c.KeyPath); err != nil {
			return CPE{}, err
		}
	} else {
		var err error
		if c.PSK, err = newPSK(); err != nil {
			return CPE{}, err
		}
		c.HubPSK = c.PSK
		if opts.WrongPSK {
			if c.HubPSK, err = newPSK(); err != nil {
				return CPE{}, err
			}
		}
	}

	// Register it first, so that Down removes its namespaces whatever fails
	// below.
	l.mu.Lock()
	l.st.CPEs = append(l.st.CPEs, c)
	l.mu.Unlock()
	if err := l.buildCPE(c); err != nil {
		return CPE{}, err
	}
	if err := writeYAML(c.Config, "mpsa-cpe configuration written by mpsa-lab for "+c.Identity, l.cpeConfig(c)); err != nil {
		return CPE{}, err
	}
	l.progress("%s %s at %v, LAN %v", name, c.Identity, c.WAN, c.Prefixes)
	if reload && c.Provisioned {
		if err := l.ReloadHub(ctx); err != nil {
			return CPE{}, err
		}
	}
	if !opts.NoStart {
		if err := l.Start(ctx, name); err != nil {
			return CPE{}, err
		}
	}
	return *c, nil
}

// buildCPE makes a CPE's and its LAN host's namespaces and links.
func (l *Lab) buildCPE(c *CPE) error {
	l.mu.Lock()
	sw, fam := l.st.Switch, l.st.Config.Underlay
	l.mu.Unlock()
	for _, ns := range []string{c.NS, c.HostNS} {
		if err := createNS(ns); err != nil {
			return err
		}
	}
	// A WAN address change adds the new address before removing the old
	// one: the new one must survive as the primary (Linux removes the
	// secondaries with their primary unless told otherwise).
	for _, key := range []string{"net.ipv4.conf.all.promote_secondaries", "net.ipv4.conf.default.promote_secondaries"} {
		if err := sysctl(c.NS, key, "1"); err != nil {
			return err
		}
	}
	if err := veth(sw, c.Name, c.NS, "eth0", "br0"); err != nil {
		return err
	}
	if err := addrAdd(c.NS, "eth0", netip.PrefixFrom(c.WAN, underlayPrefix(fam).Bits())); err != nil {
		return err
	}
	if err := veth(c.NS, "lan0", c.HostNS, "eth0", ""); err != nil {
		return err
	}
	for i, p := range c.Prefixes {
		if err := addrAdd(c.NS, "lan0", netip.PrefixFrom(c.Gateways[i], p.Bits())); err != nil {
			return err
		}
		if err := addrAdd(c.HostNS, "eth0", netip.PrefixFrom(c.Hosts[i], p.Bits())); err != nil {
			return err
		}
		if err := defaultRoute(c.HostNS, c.Gateways[i]); err != nil {
			return err
		}
	}
	return nil
}

// Provision adds the CPE to the hub's configuration or takes it out, and
// reloads the hub.
func (l *Lab) Provision(ctx context.Context, name string, on bool) error {
	l.mu.Lock()
	c := l.cpeLocked(name)
	if c == nil {
		l.mu.Unlock()
		return fmt.Errorf("lab: no CPE %s", name)
	}
	c.Provisioned = on
	l.mu.Unlock()
	if err := l.ReloadHub(ctx); err != nil {
		return err
	}
	return l.save()
}

// RemoveCPE takes the CPE out of the hub's configuration (reloading the
// hub, which revokes it and rekeys the group) and then stops its daemon.
// Its namespaces stay until Down; its key table stays in its file.
func (l *Lab) RemoveCPE(ctx context.Context, name string) error {
	l.mu.Lock()
	c := l.cpeLocked(name)
	if c == nil {
		l.mu.Unlock()
		return fmt.Errorf("lab: no CPE %s", name)
	}
	c.Provisioned, c.Removed = false, true
	l.mu.Unlock()
	if err := l.ReloadHub(ctx); err != nil {
		return err
	}
	if err := l.Stop(ctx, name); err != nil {
		return err
	}
	return l.save()
}

// SetWAN moves CPE name to its alternate underlay address (alt true) or back,
// the way a DHCP renewal with a new lease does: the new address is added,
// then the old one removed. It returns the new address.
func (l *Lab) SetWAN(name string, alt bool) (netip.Addr, error) {
	l.mu.Lock()
	c := l.cpeLocked(name)
	if c == nil {
		l.mu.Unlock()
		return netip.Addr{}, fmt.Errorf("lab: no CPE %s", name)
	}
	fam := l.st.Config.Underlay
	old, next := c.WAN, cpeWAN(fam, c.Index, alt)
	ns := c.NS
	l.mu.Unlock()
	if old == next {
		return next, nil
	}
	bits := underlayPrefix(fam).Bits()
	if err := addrAdd(ns, "eth0", netip.PrefixFrom(next, bits)); err != nil {
		return netip.Addr{}, err
	}
	if err := addrDel(ns, "eth0", netip.PrefixFrom(old, bits)); err != nil {
		return netip.Addr{}, err
	}
	l.mu.Lock()
	c.WAN = next
	l.mu.Unlock()
	return next, l.save()
}

// writeHubConfig writes hub.yaml for the current provisioning.
func (l *Lab) writeHubConfig() error {
	l.mu.Lock()
	tree, path := l.hubConfig(), l.st.Hub.Config
	l.mu.Unlock()
	return writeYAML(path, "mpsa-hub configuration written by mpsa-lab", tree)
}

// ReloadHub rewrites the hub's configuration, sends it SIGHUP and waits
// until it logs that the configuration was reloaded (or refused, an error).
func (l *Lab) ReloadHub(ctx context.Context) error {
	if err := l.writeHubConfig(); err != nil {
		return err
	}
	l.mu.Lock()
	p := l.procs["hub"]
	logPath := l.st.Hub.Log
	l.mu.Unlock()
	if p == nil || !p.alive() {
		return nil // it reads the file when it starts
	}
	from := fileSize(logPath)
	if err := p.signal(syscall.SIGHUP); err != nil {
		return err
	}
	rec, err := WaitLog(ctx, logPath, from, func(r LogRecord) bool {
		return r.Msg == "configuration reloaded" || r.Msg == "configuration not reloaded, keeping the running one"
	})
	if err != nil {
		return fmt.Errorf("lab: hub reload: %w", err)
	}
	if rec.Msg != "configuration reloaded" {
		return fmt.Errorf("lab: the hub refused its new configuration: %s", rec.Raw)
	}
	l.progress("hub reloaded: %s", rec.Str("reason"))
	return nil
}

// Start starts the named daemon ("hub" or a CPE's name).
func (l *Lab) Start(ctx context.Context, name string) error {
	l.mu.Lock()
	if p := l.procs[name]; p != nil && p.alive() {
		l.mu.Unlock()
		return fmt.Errorf("lab: %s is already running (pid %d)", name, p.pid)
	}
	var ns, bin, cfgPath, logPath, sock string
	if name == "hub" {
		h := l.st.Hub
		ns, bin, cfgPath, logPath, sock = h.NS, l.st.Config.HubBin, h.Config, h.Log, h.Socket
	} else if c := l.cpeLocked(name); c != nil {
		ns, bin, cfgPath, logPath, sock = c.NS, l.st.Config.CPEBin, c.Config, c.Log, c.Socket
	} else {
		l.mu.Unlock()
		return fmt.Errorf("lab: no node %s", name)
	}
	l.mu.Unlock()
	p, err := startProc(ctx, name, ns, bin, cfgPath, logPath)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.procs[name] = p
	l.st.PIDs[name] = p.pid
	l.mu.Unlock()
	l.progress("started %s (pid %d)", name, p.pid)
	if err := waitSocket(ctx, sock, p); err != nil {
		return fmt.Errorf("lab: %s: %w (see %s)", name, err, logPath)
	}
	return l.save()
}

// Stop stops the named daemon: SIGTERM, then SIGKILL after StopTimeout.
func (l *Lab) Stop(ctx context.Context, name string) error {
	p := l.proc(name)
	if p == nil {
		return nil
	}
	killed, err := p.stop(ctx, StopTimeout)
	if killed {
		l.progress("%s did not stop within %v of SIGTERM: killed", name, StopTimeout)
	}
	return err
}

// Kill sends SIGKILL to the named daemon and waits until it is gone.
func (l *Lab) Kill(ctx context.Context, name string) error {
	p := l.proc(name)
	if p == nil {
		return fmt.Errorf("lab: %s was never started", name)
	}
	return p.kill(ctx)
}

// Signal sends sig to the named daemon.
func (l *Lab) Signal(name string, sig syscall.Signal) error {
	p := l.proc(name)
	if p == nil {
		return fmt.Errorf("lab: %s was never started", name)
	}
	return p.signal(sig)
}

// proc returns the named daemon's process (nil if it was never started).
func (l *Lab) proc(name string) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[name]
}

// Command returns a command that runs inside namespace ns (`ip netns exec`),
// for tools such as iperf3 and tshark.
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Running reports whether the named daemon runs.
func (l *Lab) Running(name string) bool {
	p := l.proc(name)
	return p != nil && p.alive()
}

// Config returns the lab's configuration (with defaults filled in).
func (l *Lab) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Config
}

// Hub returns the hub node.
func (l *Lab) Hub() Hub {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Hub
}

// CPEs returns the CPEs (removed ones too), by index.
func (l *Lab) CPEs() []CPE {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]CPE, len(l.st.CPEs))
	for i, c := range l.st.CPEs {
		out[i] = *c
	}
	return out
}

// Daemons returns the names of the lab's daemons: "hub", then the CPEs
// (removed ones too), by index.
func (l *Lab) Daemons() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{"hub"}
	for _, c := range l.st.CPEs {
		out = append(out, c.Name)
	}
	return out
}

// CPE returns the CPE of that name.
func (l *Lab) CPE(name string) (CPE, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.cpeLocked(name); c != nil {
		return *c, true
	}
	return CPE{}, false
}

func (l *Lab) cpeLocked(name string) *CPE {
	for _, c := range l.st.CPEs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Namespaces returns the lab's namespaces that exist.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return listNS(nsName(l.st.Config.Name, ""))
}

// Down stops every daemon, removes every namespace of the lab (with all
// processes in them) and the lab directory. It carries on past errors and
// returns them all.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	procs := make([]*proc, 0, len(l.procs))
	for _, p := range l.procs {
		procs = append(procs, p)
	}
	cfg := l.st.Config
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _, _ = p.stop(ctx, StopTimeout) })
	}
	wg.Wait()
	return Sweep(cfg.Name, cfg.Dir)
}

// Sweep removes what a lab left behind, without its lab.json: every
// namespace named Prefix+name+"-*" (killing what runs inside) and the
// directory dir (if it holds a lab.json or nothing). An empty name sweeps
// every lab's namespaces.
func Sweep(name, dir string) error {
	prefix := Prefix
	if name != "" {
		prefix = nsName(name, "")
	}
	var errs []error
	for _, ns := range listNS(prefix) {
		errs = append(errs, deleteNS(ns))
	}
	if dir != "" {
		if _, err := os.Stat(stateFile(dir)); err == nil || isEmptyDir(dir) {
			errs = append(errs, os.RemoveAll(dir))
		}
	}
	return errors.Join(errs...)
}

func isEmptyDir(dir string) bool {
	ents, err := os.ReadDir(dir)
	return err == nil && len(ents) == 0
}

// Load opens the lab recorded in dir/lab.json (made by another process):
// the daemons it started are adopted if they still run.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(stateFile(dir))
	if err != nil {
		return nil, fmt.Errorf("lab: no lab in %s: %w", dir, err)
	}
	l := &Lab{procs: map[string]*proc{}}
	if err := json.Unmarshal(b, &l.st); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", stateFile(dir), err)
	}
	if l.st.PIDs == nil {
		l.st.PIDs = map[string]int{}
	}
	for name, pid := range l.st.PIDs {
		bin := l.st.Config.CPEBin
		if name == "hub" {
			bin = l.st.Config.HubBin
		}
		if p := adopt(name, pid, bin); p != nil {
			l.procs[name] = p
		}
	}
	if l.st.CA {
		if l.ca, err = loadCA(l.caCertPath(), l.caKeyPath()); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// save writes lab.json (mode 0600: it holds the lab's PSKs).
func (l *Lab) save() error {
	l.mu.Lock()
	b, err := json.MarshalIndent(&l.st, "", "  ")
	dir := l.st.Config.Dir
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return writePrivate(stateFile(dir), append(b, '\n'))
}

func (l *Lab) progress(format string, args ...any) {
	l.mu.Lock()
	w := l.st.Config.Progress
	l.mu.Unlock()
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// runningCPEs returns the CPEs whose daemons run.
func (l *Lab) runningCPEs() []CPE {
	var out []CPE
	for _, c := range l.CPEs() {
		if l.Running(c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// joining returns the CPEs that should be in the group now: running,
// provisioned and with credentials the hub accepts.
func (l *Lab) joining() []CPE {
	now := time.Now()
	return slices.DeleteFunc(l.runningCPEs(), func(c CPE) bool { return !c.Provisioned || !c.credentialsOK(now) })
}
