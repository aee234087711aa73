// Package configs holds the typed configuration of mpsa-hub (Hub) and
// mpsa-cpe (CPE): plain data with documented fields and named default
// constants, validation that names the bad field's path and what was
// expected (`groups[1].lifetime: expected a duration ≥ 60s and ≤ 168h,
// got "5s"`), the file rules for secrets, a reload API with diffs, and a
// redacted rendering that is safe to log.
//
// This package does not import Viper, so the CPE binary can use it without
// paying for Viper (see docs/BENCHMARKS.md, "configs"). Loading lives in
// subpackages that produce a generic tree and call BuildHub/BuildCPE:
// configs/viperconf (Viper: YAML file, MPSA_* environment, flags) and
// configs/liteconf (the same rules on yaml.v3 and the standard library
// flag package, for the CPE's size budget).
//
// # Pipeline
//
// A loader turns file, environment and flags into a tree
// (map[string]any). BuildHub then
//
//  1. decodes the tree into a Hub (DecodeHub): wrong types are errors
//     naming the path, unknown keys are warnings naming the path (with a
//     suggestion when the key is a near miss of a known one);
//  2. fills unset fields with defaults (Hub.SetDefaults; zero means unset);
//  3. validates every field (Hub.Validate, pure, usable on structs built in
//     code);
//  4. applies the file rules and reads the files the configuration names
//     (Hub.Resolve): relative paths are taken relative to the config file's
//     directory and made absolute; PSK files are read into the PSK field;
//     certificates and keys are parsed and checked (key matches
//     certificate, certificate valid now and carrying the configured
//     identity) and kept for the daemon (CertFiles.Material).
//
// Precedence is flag > environment > file > default. Every scalar key (or
// list of scalars, comma-separated) outside the groups, cpes and bgp.peers
// lists can be overridden: bgp.router_id by MPSA_BGP_ROUTER_ID or
// --bgp.router_id (HubKeys, CPEKeys).
//
// # Secrets
//
// PSKs are Secrets: every fmt verb, slog and text marshalling prints
// "[redacted]"; Wipe zeroes them. Files holding secrets are refused when
// others can read them: PSK files and a configuration file holding inline
// PSKs must not be world-readable, private keys and key-export files must
// not be readable by group or others; no file read may be world-writable.
// Error messages never contain secret values.
//
// # Reload
//
// HubReloader and CPEReloader hold the running configuration. The daemon
// calls Reload on SIGHUP (or from a file watch); a configuration that fails
// anywhere in the pipeline is reported and the running one kept; a good one
// replaces it and Reload returns a HubDiff (CPEs added, removed and changed
// by identity; groups added, removed and changed by name; other changed
// fields by path) or a CPEDiff.
package configs
