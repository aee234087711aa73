package firmware

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

func testInput(t *testing.T) PackageInput {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "mpsa-cpe")
	if err := os.WriteFile(bin, []byte("\x7fELF not really a binary, odd length"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "cpe.yaml")
	if err := os.WriteFile(conf, []byte("# example\nhub: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return PackageInput{
		Target:     Targets[0],
		Binary:     bin,
		ConfigFile: conf,
		Stamp:      Stamp{Version: "1.2.3-4-gabcdef0", Commit: strings.Repeat("ab", 20), Time: time.Unix(1700000000, 0).UTC()},
	}
}

// unpackIPK extracts an ipk with the real ar and tar tools into dir and
// returns the ar member names in archive order.
func unpackIPK(t *testing.T, ipk []byte, dir string) []string {
	t.Helper()
	ar := testenv.Binary(t, "ar", "apt-get install binutils")
	p := filepath.Join(dir, "pkg.ipk")
	if err := os.WriteFile(p, ipk, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ar, "t", p).CombinedOutput()
	if err != nil {
		t.Fatalf("ar t: %v: %s", err, out)
	}
	members := strings.Fields(string(out))
	cmd := exec.Command(ar, "x", p)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ar x: %v: %s", err, out)
	}
	for _, sub := range []string{"control", "data"} {
		d := filepath.Join(dir, sub)
		os.MkdirAll(d, 0o755)
		if out, err := exec.Command("tar", "-xzf", filepath.Join(dir, sub+".tar.gz"), "-C", d).CombinedOutput(); err != nil {
			t.Fatalf("tar %s: %v: %s", sub, err, out)
		}
	}
	return members
}

// checkIPK verifies the structure of an unpacked package.
func checkIPK(t *testing.T, in PackageInput, dir string, members []string) {
	t.Helper()
	if got := strings.Join(members, " "); got != "debian-binary control.tar.gz data.tar.gz" {
		t.Errorf("ar members = %q, want debian-binary control.tar.gz data.tar.gz in that order", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "debian-binary")); string(b) != "2.0\n" {
		t.Errorf("debian-binary = %q", b)
	}
	control, err := os.ReadFile(filepath.Join(dir, "control", "control"))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(control), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	want := map[string]string{
		"Package":      "mpsa-cpe",
		"Version":      in.Stamp.Version,
		"Architecture": in.Target.OpenWrtArch,
		"Depends":      "kmod-tun",
		"Section":      "net",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("control %s = %q, want %q", k, fields[k], v)
		}
	}
	if fields["Installed-Size"] == "" || fields["Description"] == "" || fields["Maintainer"] == "" {
		t.Errorf("control lacks Installed-Size, Description or Maintainer:\n%s", control)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "control", "conffiles")); string(b) != "/etc/mpsa/cpe.yaml\n" {
		t.Errorf("conffiles = %q", b)
	}
	for _, s := range []string{"postinst", "prerm"} {
		assertExecutableScript(t, filepath.Join(dir, "control", s))
	}

	data := filepath.Join(dir, "data")
	bin, _ := os.ReadFile(in.Binary)
	if got, _ := os.ReadFile(filepath.Join(data, "usr/sbin/mpsa-cpe")); !bytes.Equal(got, bin) {
		t.Error("data.tar.gz: /usr/sbin/mpsa-cpe differs from the built binary")
	}
	conf, _ := os.ReadFile(in.ConfigFile)
	if got, _ := os.ReadFile(filepath.Join(data, "etc/mpsa/cpe.yaml")); !bytes.Equal(got, conf) {
		t.Error("data.tar.gz: /etc/mpsa/cpe.yaml differs from the example config")
	}
	if fi, err := os.Stat(filepath.Join(data, "etc/mpsa/cpe.yaml")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cpe.yaml mode = %v, %v; want 0600 (it may hold a PSK)", fi.Mode().Perm(), err)
	}
	init := filepath.Join(data, "etc/init.d/mpsa-cpe")
	assertExecutableScript(t, init)
	script, _ := os.ReadFile(init)
	for _, want := range []string{
		"#!/bin/sh /etc/rc.common", "USE_PROCD=1", "procd_set_param respawn",
		`-test -config "$CONF"`, "procd_set_param file \"$CONF\"", "reload_service()", "CONF=/etc/mpsa/cpe.yaml",
	} {
		if !strings.Contains(string(script), want) {
			t.Errorf("init script lacks %q", want)
		}
	}
}

func assertExecutableScript(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (%v)", p, fi.Mode())
	}
	if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v: %s", p, err, out)
	}
}

func TestIPKStructure(t *testing.T) {
	in := testInput(t)
	ipk, err := IPK(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	checkIPK(t, in, dir, unpackIPK(t, ipk, dir))
}

func TestPackagesAreReproducible(t *testing.T) {
	in := testInput(t)
	a, err := IPK(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := IPK(in)
	if !bytes.Equal(a, b) {
		t.Error("two IPK builds from the same input differ")
	}
	ta, _ := Tarball(in)
	tb, _ := Tarball(in)
	if !bytes.Equal(ta, tb) {
		t.Error("two tarball builds from the same input differ")
	}
	in.Stamp.Version = "1.2.4"
	c, _ := IPK(in)
	if bytes.Equal(a, c) {
		t.Error("a different version gave the same package")
	}
}

func TestTarballHasSystemdUnits(t *testing.T) {
	in := testInput(t)
	tgz, err := Tarball(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "x.tar.gz")
	os.WriteFile(p, tgz, 0o644)
	out, err := exec.Command("tar", "-tzvf", p).CombinedOutput()
	if err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	for _, want := range []string{"./usr/sbin/mpsa-cpe", "./etc/mpsa/cpe.yaml", "./lib/systemd/system/mpsa-hub.service", "./lib/systemd/system/mpsa-cpe.service", "root/root"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tarball lacks %s:\n%s", want, out)
		}
	}
}

func TestManifest(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "mips"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.ipk"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "mips", "mpsa-cpe"), []byte("b"), 0o755)
	if err := WriteManifest(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v: %s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "a.ipk"), []byte("tampered"), 0o644)
	cmd = exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if err := cmd.Run(); err == nil {
		t.Error("sha256sum -c passed on a tampered file")
	}
}

func TestSizeCeiling(t *testing.T) {
	for _, tg := range Targets {
		if tg.MaxSize <= 0 {
			t.Errorf("%s: no size ceiling", tg.Name)
		}
		if err := CheckSize(tg, "mpsa-cpe", tg.MaxSize); err != nil {
			t.Errorf("%s: CheckSize refused a binary at the ceiling: %v", tg.Name, err)
		}
		err := CheckSize(tg, "mpsa-cpe", tg.MaxSize+1)
		if err == nil || !strings.Contains(err.Error(), "ceiling") || !strings.Contains(err.Error(), "6 MiB") {
			t.Errorf("%s: CheckSize over the ceiling: %v", tg.Name, err)
		}
	}
	if err := CheckSize(Target{Name: "none"}, "x", 1); err == nil {
		t.Error("CheckSize accepted a target without a ceiling")
	}
}

func TestStampFromGit(t *testing.T) {
	git := testenv.Binary(t, "git", "apt-get install git")
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.net",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.net",
			"GIT_AUTHOR_DATE=@1700000000 +0000", "GIT_COMMITTER_DATE=@1700000000 +0000")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q")
	os.WriteFile(filepath.Join(dir, "a"), []byte("1"), 0o644)
	run("add", "a")
	run("commit", "-q", "-m", "one")
	os.WriteFile(filepath.Join(dir, "a"), []byte("2"), 0o644)
	run("commit", "-q", "-a", "-m", "two")
	head := run("rev-parse", "HEAD")
	ctx := context.Background()

	s, err := StampFromGit(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0.0.0-2-g" + head[:7]; s.Version != want || s.Commit != head || !s.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("untagged: %+v, want version %s, commit %s, time 1700000000", s, want, head)
	}
	os.WriteFile(filepath.Join(dir, "untracked"), []byte("x"), 0o644)
	if s, _ := StampFromGit(ctx, dir); strings.HasSuffix(s.Version, "-dirty") {
		t.Errorf("an untracked file made the stamp %s", s.Version)
	}
	os.WriteFile(filepath.Join(dir, "a"), []byte("3"), 0o644)
	if s, _ := StampFromGit(ctx, dir); s.Version != "0.0.0-2-g"+head[:7]+"-dirty" {
		t.Errorf("modified tracked file: version %s, want -dirty", s.Version)
	}
	run("checkout", "-q", "a")
	run("tag", "v1.2.3")
	if s, _ := StampFromGit(ctx, dir); s.Version != "1.2.3" {
		t.Errorf("tagged: version %s, want 1.2.3", s.Version)
	}
	if _, err := StampFromGit(ctx, t.TempDir()); err == nil {
		t.Error("a directory that is no checkout gave a stamp")
	}
}
