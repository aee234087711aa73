package firmware

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

// The tests in this file build the real firmware: every target through
// mkfirmware (what `make firmware` runs), then check sizes, ELF headers,
// packages, the binaries under qemu-user and reproducibility.

// moduleRoot returns the module's root directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// cloneHead clones the commit checked out at root into a new directory
// and returns it: the firmware tests build what a release builds, a
// commit, whatever else the working tree holds.
func cloneHead(t *testing.T, root string) string {
	t.Helper()
	if _, err := StampFromGit(context.Background(), root); err != nil {
		testenv.Skip(t, "git cannot read the checkout: "+err.Error())
	}
	dir := filepath.Join(t.TempDir(), "src")
	out, err := exec.Command("git", "clone", "--quiet", "--shared", "--no-checkout", root, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("git clone: %v: %s", err, out)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", dir, "checkout", "--quiet", "--detach", strings.TrimSpace(string(head))).CombinedOutput(); err != nil {
		t.Fatalf("git checkout: %v: %s", err, out)
	}
	return dir
}

// mkfirmware runs `go run ./firmware/mkfirmware -out out`, the command of
// `make firmware`, and returns the version it stamped.
func mkfirmware(t *testing.T, root, out string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./firmware/mkfirmware", "-out", out)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mkfirmware: %v\n%s", err, b)
	}
	t.Logf("mkfirmware -out %s:\n%s", out, b)
	m := regexp.MustCompile(`(?m)^built (\S+) for (\d+) targets`).FindSubmatch(b)
	if m == nil || string(m[2]) != strconv.Itoa(len(Targets)) {
		t.Fatalf("mkfirmware did not report building all %d targets:\n%s", len(Targets), b)
	}
	return string(m[1])
}

// controlFields parses an opkg control file.
func controlFields(b []byte) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	return fields
}

// stampOf reads back the stamp a package was built with: version and
// commit time from its control file, commit from its description.
func stampOf(t *testing.T, controlFile string) Stamp {
	t.Helper()
	b, err := os.ReadFile(controlFile)
	if err != nil {
		t.Fatal(err)
	}
	f := controlFields(b)
	secs, err := strconv.ParseInt(f["SourceDateEpoch"], 10, 64)
	if err != nil {
		t.Fatalf("SourceDateEpoch: %v", err)
	}
	m := regexp.MustCompile(`(?m)^ Commit ([0-9a-f]{40})\.$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("control file names no commit:\n%s", b)
	}
	return Stamp{Version: f["Version"], Commit: string(m[1]), Time: time.Unix(secs, 0).UTC()}
}

// elfMachine is what the ELF header of each target's binary says.
var elfMachine = map[string]struct {
	class   elf.Class
	order   string
	machine elf.Machine
}{
	"mipsle": {elf.ELFCLASS32, "LittleEndian", elf.EM_MIPS},
	"mips":   {elf.ELFCLASS32, "BigEndian", elf.EM_MIPS},
	"armv7":  {elf.ELFCLASS32, "LittleEndian", elf.EM_ARM},
	"arm64":  {elf.ELFCLASS64, "LittleEndian", elf.EM_AARCH64},
	"amd64":  {elf.ELFCLASS64, "LittleEndian", elf.EM_X86_64},
}

// checkELF checks that bin is a static, stripped executable for t, and for
// MIPS that it uses soft float (CPE SoCs have no FPU).
func checkELF(t *testing.T, tg Target, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := elfMachine[tg.Name]
	if f.Class != want.class || f.ByteOrder.String() != want.order || f.Machine != want.machine || f.Type != elf.ET_EXEC {
		t.Errorf("ELF header: %v %v %v %v, want %v %v %v ET_EXEC", f.Class, f.ByteOrder, f.Machine, f.Type, want.class, want.order, want.machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("not a static executable: program header %v", p.Type)
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug") || strings.HasPrefix(s.Name, ".zdebug") {
			t.Errorf("not stripped: section %s", s.Name)
		}
	}
	if tg.GOARCH == "mips" || tg.GOARCH == "mipsle" {
		// .MIPS.abiflags: version u16, isa_level, isa_rev, gpr_size,
		// cpr1_size, cpr2_size, fp_abi (3 = soft float).
		s := f.Section(".MIPS.abiflags")
		if s == nil {
			t.Fatal("no .MIPS.abiflags section")
		}
		b, err := s.Data()
		if err != nil || len(b) < 8 {
			t.Fatalf(".MIPS.abiflags: %v", err)
		}
		if b[7] != 3 {
			t.Errorf(".MIPS.abiflags fp_abi = %d, want 3 (soft float)", b[7])
		}
	}
}

// runTarget runs bin (natively or under tg.QEMU) with args and returns its
// exit code and output.
func runTarget(t *testing.T, tg Target, bin string, args ...string) (int, string) {
	t.Helper()
	name := bin
	if tg.QEMU != "" {
		q := testenv.Binary(t, tg.QEMU, "apt-get install qemu-user-static")
		name, args = q, append([]string{bin}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MPSA_LOG_LEVEL=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return 0, string(out)
}

// sameTree fails unless directories a and b hold the same files with the
// same contents.
func sameTree(t *testing.T, a, b string) int {
	t.Helper()
	files := func(dir string) map[string][]byte {
		m := map[string][]byte{}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			m[rel], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fa, fb := files(a), files(b)
	if len(fa) != len(fb) {
		t.Errorf("%d files in %s, %d in %s", len(fa), a, len(fb), b)
	}
	for name, x := range fa {
		if y, ok := fb[name]; !ok {
			t.Errorf("%s: missing from the second build", name)
		} else if !bytes.Equal(x, y) {
			t.Errorf("%s: the two builds differ", name)
		}
	}
	return len(fa)
}

// TestFirmware builds every target with mkfirmware and checks what a
// carrier ships: sizes against the ceilings, ELF headers, the .ipk of each
// architecture unpacked with ar and tar, the tarballs, the manifest, each
// binary run under qemu-user (version stamp, -test of the installed
// example config), and that a second build, and a build with an empty
// build cache, give the same bytes.
func TestFirmware(t *testing.T) {
	testenv.Short(t)
	testenv.Binary(t, "ar", "apt-get install binutils")
	testenv.Binary(t, "sha256sum", "apt-get install coreutils")
	root := cloneHead(t, moduleRoot(t))
	dist := filepath.Join(t.TempDir(), "dist")
	version := mkfirmware(t, root, dist)
	if !regexp.MustCompile(`^\d+\.\d+\.\d+(-\d+-g[0-9a-f]{7})?$`).MatchString(version) {
		t.Errorf("version %q: want N.N.N[-commits-gSHORT] (a clean clone is never -dirty)", version)
	}

	var stamp Stamp
	for _, tg := range Targets {
		t.Run(tg.Name, func(t *testing.T) {
			bin := filepath.Join(dist, tg.Name, "mpsa-cpe")
			fi, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			met := "not met"
			if fi.Size() <= SizeBudget {
				met = "met"
			}
			t.Logf("%s: %d octets (%.2f MiB), ceiling %.2f MiB, %.0f MiB target %s",
				tg.Name, fi.Size(), MiB(fi.Size()), MiB(tg.MaxSize), MiB(SizeBudget), met)
			if err := CheckSize(tg, bin, fi.Size()); err != nil {
				t.Error(err)
			}
			checkELF(t, tg, bin)

			in := PackageInput{Target: tg, Binary: bin, ConfigFile: filepath.Join(root, "configs", "cpe.yaml"), Stamp: Stamp{Version: version}}
			ipk := filepath.Join(dist, IPKName(in))
			b, err := os.ReadFile(ipk)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			checkIPK(t, in, dir, unpackIPK(t, b, dir))
			stamp = stampOf(t, filepath.Join(dir, "control", "control"))

			// The tarball carries the same binary and config.
			tdir := t.TempDir()
			if out, err := exec.Command("tar", "-xzf", filepath.Join(dist, TarballName(in)), "-C", tdir).CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			for _, f := range []string{"usr/sbin/mpsa-cpe", "etc/mpsa/cpe.yaml", "lib/systemd/system/mpsa-cpe.service", "lib/systemd/system/mpsa-hub.service"} {
				x, err1 := os.ReadFile(filepath.Join(tdir, f))
				y, err2 := os.ReadFile(filepath.Join(dir, "data", f))
				if err1 != nil || (err2 == nil && !bytes.Equal(x, y)) {
					t.Errorf("tarball %s: %v, or differs from the ipk's", f, err1)
				}
			}

			// What the package installs runs on the target: it prints its
			// stamp and accepts the example config, installed 0600 because
			// it holds a PSK (and refuses it readable by others).
			installed := filepath.Join(dir, "data", "usr", "sbin", "mpsa-cpe")
			conf := filepath.Join(dir, "data", "etc", "mpsa", "cpe.yaml")
			code, out := runTarget(t, tg, installed, "-version")
			want := fmt.Sprintf("mpsa-cpe %s (%s) go", stamp.Version, stamp.Commit)
			if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "linux/"+tg.GOARCH) {
				t.Errorf("-version: exit %d, %q; want %q… linux/%s", code, out, want, tg.GOARCH)
			}
			code, out = runTarget(t, tg, installed, "-test", "-config", conf)
			if code != 0 || !strings.Contains(out, "configuration OK") {
				t.Errorf("-test of the installed config: exit %d: %s", code, out)
			}
			open := filepath.Join(t.TempDir(), "cpe.yaml")
			cb, _ := os.ReadFile(conf)
			if err := os.WriteFile(open, cb, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(open, 0o644) // whatever the umask
			code, out = runTarget(t, tg, installed, "-test", "-config", open)
			if code == 0 || !strings.Contains(out, "0644") {
				t.Errorf("-test of the config readable by others: exit %d: %s", code, out)
			}
		})
	}
	if t.Failed() {
		return
	}

	t.Run("manifest", func(t *testing.T) {
		cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
		cmd.Dir = dist
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sha256sum -c: %v: %s", err, out)
		}
		if n := strings.Count(string(out), ": OK"); n != 3*len(Targets) {
			t.Errorf("manifest covers %d files, want %d (binary, ipk, tarball per target):\n%s", n, 3*len(Targets), out)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		// Everything again from the same commit: byte-identical.
		dist2 := filepath.Join(t.TempDir(), "dist")
		if v := mkfirmware(t, root, dist2); v != version {
			t.Fatalf("second build stamped %s, the first %s", v, version)
		}
		n := sameTree(t, dist, dist2)
		t.Logf("second build: %d files identical", n)

		// The compiler's part: one target from an empty build cache, in
		// another clone at another path.
		tg := Targets[0]
		other := cloneHead(t, root)
		dir := t.TempDir()
		bin, _, err := Build(context.Background(), tg, BuildOptions{
			ModuleDir: other, Package: "./cmd/mpsa-cpe", OutDir: dir, Stamp: stamp,
			Env: []string{"GOCACHE=" + filepath.Join(t.TempDir(), "gocache")},
		})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(filepath.Join(dist, tg.Name, "mpsa-cpe"))
		b, _ := os.ReadFile(bin)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: the build from an empty GOCACHE differs from mkfirmware's", tg.Name)
		}
		in := PackageInput{Target: tg, Binary: bin, ConfigFile: filepath.Join(root, "configs", "cpe.yaml"), Stamp: stamp}
		ipk, err := IPK(in)
		if err != nil {
			t.Fatal(err)
		}
		if shipped, _ := os.ReadFile(filepath.Join(dist, IPKName(in))); !bytes.Equal(ipk, shipped) {
			t.Errorf("%s: the package of the empty-cache build differs from mkfirmware's", tg.Name)
		}
	})
}
