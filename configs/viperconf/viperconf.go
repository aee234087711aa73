// Package viperconf loads mpsa configurations with Viper: a YAML file,
// MPSA_* environment variables and command-line flags, in that order of
// increasing precedence, checked by configs.BuildHub / configs.BuildCPE.
//
// Only the hub and the cmd/ mains import it; the CPE binary can use
// configs/liteconf instead, which applies the same rules without Viper
// (docs/BENCHMARKS.md, "configs", has what Viper costs in binary size).
//
//	fs := pflag.NewFlagSet("mpsa-hub", pflag.ContinueOnError)
//	file := fs.String("config", "/etc/mpsa/hub.yaml", "configuration file")
//	viperconf.AddHubFlags(fs)
//	fs.Parse(os.Args[1:])
//	rl, warns, err := configs.NewHubReloader(viperconf.HubLoader(viperconf.Options{File: *file, Flags: fs}))
//	// on SIGHUP: diff, warns, err := rl.Reload()
package viperconf

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/mpsa-vpn/mpsa/configs"
)

// Options say where a configuration comes from.
type Options struct {
	// File is the YAML configuration file; "" loads from the environment
	// and flags alone.
	File string
	// Flags, when set, is a parsed flag set: every flag that was set on the
	// command line and is named like a configuration key (AddHubFlags,
	// AddCPEFlags) overrides that key.
	Flags *pflag.FlagSet
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

// HubLoader returns a loader for configs.NewHubReloader that loads from o
// each time it is called.
func HubLoader(o Options) configs.HubLoader {
	return func() (*configs.Hub, []configs.Warning, error) { return LoadHub(o) }
}

// CPELoader returns a loader for configs.NewCPEReloader.
func CPELoader(o Options) configs.CPELoader {
	return func() (*configs.CPE, []configs.Warning, error) { return LoadCPE(o) }
}

// AddHubFlags defines one string flag per overridable hub key
// (--bgp.router_id, --log.level, ...; configs.HubKeys).
func AddHubFlags(fs *pflag.FlagSet) { addFlags(fs, configs.HubKeys()) }

// AddCPEFlags defines one string flag per overridable CPE key.
func AddCPEFlags(fs *pflag.FlagSet) { addFlags(fs, configs.CPEKeys()) }

func addFlags(fs *pflag.FlagSet, keys []configs.Key) {
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
	v := viper.New()
	src := configs.Source{File: o.File, Now: o.Now}
	if o.File != "" {
		data, mode, err := configs.ReadConfigFile(o.File)
		if err != nil {
			return nil, src, err
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			var pe viper.ConfigParseError
			if errors.As(err, &pe) {
				err = pe.Unwrap() // the YAML error, as liteconf reports it
			}
			return nil, src, fmt.Errorf("configs: %s: %w", o.File, err)
		}
		src.FileMode = mode
		src.FileHasSecrets = configs.TreeHasInlineSecrets(v.AllSettings())
	}
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known[k.Path] = true
		if err := v.BindEnv(k.Path, k.Env); err != nil {
			return nil, src, fmt.Errorf("configs: binding %s: %w", k.Env, err)
		}
	}
	if o.Flags != nil {
		o.Flags.Visit(func(f *pflag.Flag) {
			if known[f.Name] {
				v.Set(f.Name, f.Value.String())
			}
		})
	}
	return v.AllSettings(), src, nil
}
