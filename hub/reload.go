package hub

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mpsa-vpn/mpsa/configs"
	"github.com/mpsa-vpn/mpsa/ike"
)

// restartOnly are the configuration paths a running hub cannot change: a
// reload that changes them keeps the running values and says so.
// keepRunning puts them back.
var restartOnly = []string{"ike.", "identity", "credentials", "dataplane.", "state_dir", "metrics.", "status.",
	"bgp.asn", "bgp.router_id", "bgp.cluster_id", "bgp.grpc_listen", "key_export.", "log.format"}

// restartPaths returns the changed paths that need a restart.
func restartPaths(changed []string) []string {
	var keep []string
	for _, p := range changed {
		for _, r := range restartOnly {
			if p == strings.TrimSuffix(r, ".") || (strings.HasSuffix(r, ".") && strings.HasPrefix(p, r)) {
				keep = append(keep, p)
			}
		}
	}
	return keep
}

// keepRunning returns a copy of cfg with the running values (old's) of
// the restartOnly fields, so that the running configuration (Config, the
// status views, the next reload's diff) says what actually runs.
func keepRunning(old, cfg *configs.Hub) *configs.Hub {
	c := *cfg
	c.IKE, c.Identity, c.Credentials, c.Dataplane, c.StateDir = old.IKE, old.Identity, old.Credentials, old.Dataplane, old.StateDir
	c.Metrics, c.Status, c.KeyExport = old.Metrics, old.Status, old.KeyExport
	c.BGP.ASN, c.BGP.RouterID, c.BGP.ClusterID, c.BGP.GRPCListen = old.BGP.ASN, old.BGP.RouterID, old.BGP.ClusterID, old.BGP.GRPCListen
	c.Log.Format = old.Log.Format
	return &c
}

// Reload applies a new configuration (from configs.HubReloader.Reload,
// already checked) to the running hub and returns what changed:
//
//   - a CPE added: nothing happens until it connects;
//   - a CPE removed: its IKE SAs are deleted, its routes withdrawn, its
//     overlay lease released, and its group rekeyed so it cannot read the
//     group's traffic after the rollover (revocation);
//   - a CPE moved to another group: revoked in the old group, its IKE SA
//     deleted so that it reconnects into the new one;
//   - a CPE's credentials changed: its IKE SA is deleted (it must
//     authenticate again); its prefixes changed: the route reflector's policy;
//   - groups added, changed or removed: the key server, the pools and the
//     hub's overlay addresses follow.
//
// No other CPE sees a change. Fields that need a restart (listen addresses,
// identity and credentials, data plane, state directory, metrics and status
// addresses, the route reflector's ASN, router and cluster IDs and gRPC
// address, key export, log format) keep their running values, with a
// warning, and Config shows those. The log level is the caller's (it owns
// the logger).
func (h *Hub) Reload(cfg *configs.Hub) (configs.HubDiff, error) {
	old := h.prov.Load()
	diff := configs.DiffHub(old.cfg, cfg)
	if diff.Empty() {
		return diff, nil
	}
	if keep := restartPaths(diff.Changed); len(keep) > 0 {
		h.log.Warn("configuration changes that need a restart are not applied", "reason", strings.Join(keep, ", "))
		cfg = keepRunning(old.cfg, cfg)
	}
	prov, err := newProvisioning(cfg)
	if err != nil {
		return diff, err
	}
	// CPEs whose IKE SAs must go: removed, moved, or with new credentials.
	drop := map[string]string{}
	for _, c := range diff.CPEsRemoved {
		drop[cpeName(c.Identity)] = "removed from the configuration"
	}
	for _, ch := range diff.CPEsChanged {
		name := cpeName(ch.New.Identity)
		for _, f := range ch.Fields {
			switch {
			case f == "group":
				drop[name] = "moved to group " + ch.New.Group
			case f == "psk" || f == "psk_file" || f == "auth" || f == "identity":
				if drop[name] == "" {
					drop[name] = "credentials changed"
				}
			}
		}
	}

	h.prov.Store(prov)
	h.pools.sync(cfg, prov.cpes)
	if err := h.syncKeyServer(cfg, diff.GroupsRemoved); err != nil {
		return diff, err
	}
	h.metrics.groupsAdded(h.ks.Status())
	if err := h.tun.sync(h.pools.hubAddrs()); err != nil {
		h.log.Error("overlay addresses not updated", "err", err)
	}

	// IKE SAs that lost their CPE, group or overlay address.
	h.mu.Lock()
	var closing []*ike.SA
	reasons := map[*ike.SA]string{}
	for sa, c := range h.conns {
		why := drop[c.name]
		if why == "" {
			addrs := h.pools.addrs(c.name)
			for _, v := range c.vips {
				if !slices.Contains(addrs, v.Addr()) {
					why = "overlay address no longer in its pool"
				}
			}
		}
		if why != "" {
			closing = append(closing, sa)
			reasons[sa] = why
		}
	}
	h.mu.Unlock()
	for _, sa := range closing {
		h.closeSA(sa, reasons[sa])
	}

	h.syncReflector(cfg, diff)
	h.wipeLater(retiredSecrets(diff))
	h.log.Info("configuration reloaded", "reason", diff.String())
	h.notifyChanged()
	return diff, nil
}

// ErrReloadKept is wrapped by the error a failed reload reports: the
// running configuration stays.
var ErrReloadKept = errors.New("hub: configuration not reloaded, the running one is kept")

// ReloadFrom reloads through a configs.HubReloader (file, environment and
// flags again) and applies the result; a bad configuration is reported and
// the running one kept.
func (h *Hub) ReloadFrom(rl *configs.HubReloader) (configs.HubDiff, error) {
	_, warns, err := rl.Reload()
	for _, w := range warns {
		h.log.Warn("configuration warning", "reason", w.String())
	}
	if err != nil {
		h.log.Error("configuration not reloaded, keeping the running one", "err", err)
		return configs.HubDiff{}, fmt.Errorf("%w: %w", ErrReloadKept, err)
	}
	return h.Reload(rl.Current())
}

// retiredSecrets are the PSKs a reload retired: of removed CPEs and of CPEs
// whose PSK changed.
func retiredSecrets(diff configs.HubDiff) []configs.Secret {
	var out []configs.Secret
	for _, c := range diff.CPEsRemoved {
		if !c.PSK.IsZero() {
			out = append(out, c.PSK)
		}
	}
	for _, ch := range diff.CPEsChanged {
		if !ch.Old.PSK.IsZero() && !ch.Old.PSK.Equal(ch.New.PSK) {
			out = append(out, ch.Old.PSK)
		}
	}
	return out
}

// wipeLater zeroes retired PSKs once no IKE SA can be using them any more
// (an IKE_AUTH that looked one up before the reload ends within the
// half-open timeout), or when the hub closes.
func (h *Hub) wipeLater(secrets []configs.Secret) {
	if len(secrets) == 0 {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		for i := range secrets {
			secrets[i].Wipe()
		}
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		due := make(chan struct{})
		stop := h.clock.AfterFunc(ike.DefaultHalfOpenTimeout+5*time.Second, func() { close(due) })
		defer stop()
		select {
		case <-due:
		case <-h.ctx.Done():
		}
		for i := range secrets {
			secrets[i].Wipe()
		}
	}()
}
