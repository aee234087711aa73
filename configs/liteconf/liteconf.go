// Package liteconf loads mpsa configurations without Viper, for the CPE
// binary's size budget: a YAML file (go.yaml.in/yaml/v3, the parser Viper
// itself uses), MPSA_* environment variables and standard library flags,
// with the same precedence (flag > environment > file > default), the same
// keys and the same checks (configs.BuildHub / configs.BuildCPE) as
// configs/viperconf. A test loads the same inputs through both and compares
// the results.
//
// On linux/mipsle it costs about 0.4 MiB over the configs package, where
// Viper costs about 2.3 MiB (docs/BENCHMARKS.md, "configs").
package liteconf

import (
	"flag"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mpsa-vpn/mpsa/configs"
)

// Options say where a configuration comes from.
type Options struct {
	// File is the YAML configuration file; "" loads from the environment
	// and flags alone.
	File string
	// Flags, when set, is a parsed flag set: every flag that was set and is
	// named like a configuration key (AddHubFlags, AddCPEFlags) overrides it.
	Flags *flag.FlagSet
	// LookupEnv reads the environment; nil means os.LookupEnv. An empty
	// value counts as unset, as in Viper.
	LookupEnv func(string) (string, bool)
	// Now is when certificates must be valid; zero means time.Now().
	Now time.Time
}

// LoadHub loads and checks a hub configuration.
func LoadHub(o Options) (*configs.Hub, []configs.Warning, error) {
	tree, src, err := load(o, configs.HubKeys())
	if err != nil {
		return nil, nil, err
	}
	return configs.BuildHub(tree, src)
}

// LoadCPE loads and checks a CPE configuration.
func LoadCPE(o Options) (*configs.CPE, []configs.Warning, error) {
	tree, src, err := load(o, configs.CPEKeys())
	if err != nil {
		return nil, nil, err
	}
	return configs.BuildCPE(tree, src)
}

// HubLoader returns a loader for configs.NewHubReloader.
func HubLoader(o Options) configs.HubLoader {
	return func() (*configs.Hub, []configs.Warning, error) { return LoadHub(o) }
}

// CPELoader returns a loader for configs.NewCPEReloader.
func CPELoader(o Options) configs.CPELoader {
	return func() (*configs.CPE, []configs.Warning, error) { return LoadCPE(o) }
}

// AddHubFlags defines one string flag per overridable hub key.
func AddHubFlags(fs *flag.FlagSet) { addFlags(fs, configs.HubKeys()) }

// AddCPEFlags defines one string flag per overridable CPE key
// (-bgp.router_id, -log.level, ...; configs.CPEKeys).
func AddCPEFlags(fs *flag.FlagSet) { addFlags(fs, configs.CPEKeys()) }

func addFlags(fs *flag.FlagSet, keys []configs.Key) {
	for _, k := range keys {
		if fs.Lookup(k.Path) != nil {
			continue
		}
		usage := "override " + k.Path + " (env " + k.Env + ")"
		if k.List {
			usage += ", comma-separated"
		}
		fs.String(k.Path, "", usage)
	}
}

func load(o Options, keys []configs.Key) (map[string]any, configs.Source, error) {
	src := configs.Source{File: o.File, Now: o.Now}
	tree := map[string]any{}
	if o.File != "" {
		data, mode, err := configs.ReadConfigFile(o.File)
		if err != nil {
			return nil, src, err
		}
		if tree, err = parseYAML(data); err != nil {
			return nil, src, fmt.Errorf("configs: %s: %w", o.File, err)
		}
		src.FileMode = mode
		src.FileHasSecrets = configs.TreeHasInlineSecrets(tree)
	}
	lookup := o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known[k.Path] = true
		if v, ok := lookup(k.Env); ok && v != "" {
			configs.SetKey(tree, k.Path, v)
		}
	}
	if o.Flags != nil {
		o.Flags.Visit(func(f *flag.Flag) {
			if known[f.Name] {
				configs.SetKey(tree, f.Name, f.Value.String())
			}
		})
	}
	return tree, src, nil
}

// parseYAML parses a configuration file into a tree.
func parseYAML(data []byte) (map[string]any, error) {
	var tree map[string]any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, err
	}
	if tree == nil { // an empty file
		tree = map[string]any{}
	}
	return tree, nil
}
