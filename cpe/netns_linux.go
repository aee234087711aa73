package cpe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// inNetns runs f in the CPE's network namespace: on a locked OS thread that
// joined it, restored afterwards. Sockets, TUN devices and netlink handles
// opened by f stay in that namespace.
func (c *CPE) inNetns(f func() error) error {
	if c.o.netns == "" {
		return f()
	}
	return doInNetns(c.o.netns, f)
}

// netnsPath turns a namespace name into the file to open.
func netnsPath(name string) string {
	if strings.ContainsRune(name, '/') {
		return name
	}
	return "/run/netns/" + name
}

func doInNetns(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("cpe: netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(netnsPath(name))
	if err != nil {
		return fmt.Errorf("cpe: netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("cpe: setns %s: %w", name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: leave it locked so it
		// exits with this goroutine instead of serving others.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("cpe: restore netns: %w", err))
	}
	return ferr
}

// enableForwarding turns on IPv4 and IPv6 forwarding in the CPE's
// namespace (/proc/sys/net follows the namespace of the thread that opens
// it).
func (c *CPE) enableForwarding() error {
	return c.inNetns(func() error {
		var errs []error
		for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "1" {
				continue
			}
			if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}
