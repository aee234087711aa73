package ops

import (
	"runtime"
	"runtime/debug"
)

// Version describes the binary for -version: build (set at link time with
// -ldflags "-X main.build=v1.2.3") when not empty, else the module version and
// VCS revision from the build information, and the Go version.
func Version(name, build string) string {
	v := build
	if v == "" {
		v = "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok {
			if bi.Main.Version != "" {
				v = bi.Main.Version
			}
			var rev, dirty string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "-dirty"
					}
				}
			}
			if rev != "" {
				if len(rev) > 12 {
					rev = rev[:12]
				}
				v += " " + rev + dirty
			}
		}
	}
	return name + " " + v + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
