package ikerate

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mpsa-vpn/mpsa/internal/testenv"
)

const loadTesterPlugin = "/usr/lib/ipsec/plugins/libstrongswan-load-tester.so"

// needLoadTester skips unless charon and its load-tester plugin are
// installed. With MPSA_REQUIRE_ALL=1 it builds the plugin instead
// (strongswan/install.sh: Debian's source package, a few minutes, needs the
// packages of .ci/apt-packages).
func needLoadTester(t *testing.T) {
	t.Helper()
	testenv.Root(t)
	if _, err := os.Stat("/usr/lib/ipsec/charon"); err != nil {
		testenv.Skip(t, "strongSwan's charon not installed (apt-get install strongswan-charon)")
	}
	if _, err := os.Stat(loadTesterPlugin); err == nil {
		return
	}
	if !testenv.RequireAll() {
		testenv.Skip(t, "strongSwan load-tester plugin not built (bench/ike-rate/strongswan/install.sh)")
	}
	out, err := exec.Command("strongswan/install.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("building the load-tester plugin: %v\n%s", err, out)
	}
}

// TestLoadTesterAgainstResponder runs strongswan-loadtest.sh as run.sh
// does, with a small count, against the responder (in this process, in a
// namespace of its own): every SA the load-tester starts must come up with
// its CHILD_SA and virtual IPs, with no retransmission and no failure, and
// the results line must say so.
func TestLoadTesterAgainstResponder(t *testing.T) {
	needLoadTester(t)
	for _, ike := range []string{"aes128-sha256-x25519", "aes128gcm16-prfsha256-ecp256"} {
		t.Run(ike, func(t *testing.T) { loadTest(t, ike) })
	}
}

func loadTest(t *testing.T, ike string) {
	checkGoroutines(t)
	suites, err := ParseIKEList(ike)
	if err != nil {
		t.Fatal(err)
	}
	nsR, nsI := testenv.NewNetns(t, "iklr"), testenv.NewNetns(t, "ikli")
	testenv.Veth(t, nsR, "v-r", nsI, "v-i")
	nsR.MustIP("addr", "add", "192.0.2.1/24", "dev", "v-r")
	nsI.MustIP("addr", "add", "192.0.2.2/24", "dev", "v-i")

	r, err := NewResponder(ResponderConfig{IKE: suites})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := nsR.Do(func() error {
		_, _, err := r.Listen(netip.MustParseAddr("192.0.2.1"), 500, 4500, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	const count = 64 // a multiple of the script's 4 threads
	results := filepath.Join(t.TempDir(), "results.tsv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./strongswan-loadtest.sh", "--count", strconv.Itoa(count), "--runs", "1", "--ike", ike,
		"--target", "192.0.2.1", "--target-pid", strconv.Itoa(os.Getpid()), "--init-netns", nsI.Name,
		"--resp-netns", nsR.Name, "--out", results, "--label", "test", "--stall", "20")
	cmd.Env = append(os.Environ(), "SSW_LAB_DIR="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("strongswan-loadtest.sh: %v\n%s", err, out.String())
	}
	t.Logf("strongswan-loadtest.sh:\n%s", out.String())

	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ReadResults(f)
	if err != nil {
		t.Fatal(err)
	}
	// (The responder's CPU is counted in clock ticks, 10 ms: 64 setups may
	// show none.)
	if len(rs) != 1 || rs[0].Established != count || rs[0].N != count || rs[0].Rate <= 0 || rs[0].RespCPU < 0 || rs[0].IKE != ike {
		t.Fatalf("results %+v", rs)
	}
	c, st := r.Counts(), r.Manager.Stats()
	if c.IKEUp != count || c.ChildUp != count {
		t.Fatalf("responder saw %+v, want %d IKE and CHILD SAs up", c, count)
	}
	if st.AuthFailures != 0 || st.DroppedMalformed != 0 || st.DroppedIntegrity != 0 || st.Retransmits != 0 {
		t.Fatalf("responder stats %+v", st)
	}
	// The script stopped the load-tester, which deletes its SAs; whatever
	// it did not get to goes with the responder.
	r.Close()
	if c := r.Counts(); c.IKEDown != count || r.Pool.InUse() != 0 {
		t.Fatalf("after close: %+v, pool in use %d", c, r.Pool.InUse())
	}
}
