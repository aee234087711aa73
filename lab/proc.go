package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StopTimeout is how long Stop waits for a daemon to exit after SIGTERM
// before it sends SIGKILL.
const StopTimeout = 5 * time.Second

// proc is a daemon the lab started (or found in lab.json).
type proc struct {
	name string
	pid  int
	cmd  *exec.Cmd     // nil when adopted from lab.json
	done chan struct{} // closed when the process has exited (own children only)
	err  error         // its exit status, once done
}

// startProc starts `ip netns exec ns bin args...` in its own session, with
// stdout and stderr appended to logPath, after checking its configuration
// with `bin -test -config cfgPath`.
func startProc(ctx context.Context, name, ns, bin, cfgPath, logPath string) (*proc, error) {
	test := exec.CommandContext(ctx, bin, "-test", "-config", cfgPath)
	if out, err := test.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lab: %s: %s -test -config %s: %v: %s", name, bin, cfgPath, err, strings.TrimSpace(string(out)))
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab: %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the daemon outlives `mpsa-lab up` and does not get
	// the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() { // owned by p: ends when the process does
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// adopt returns a proc for a pid recorded in lab.json if that process still
// runs the expected binary.
func adopt(name string, pid int, bin string) *proc {
	if pid <= 0 {
		return nil
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || (bin != "" && strings.TrimSuffix(exe, " (deleted)") != bin) {
		return nil
	}
	return &proc{name: name, pid: pid}
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	// Adopted: it runs unless it is gone or a zombie.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// wait waits until the process has exited or ctx ends.
func (p *proc) wait(ctx context.Context) error {
	if p.done != nil {
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Not our child: a pidfd becomes readable when the process exits.
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("lab: pidfd of %s (%d): %w", p.name, p.pid, err)
	}
	defer unix.Close(fd)
	for p.alive() {
		ms := 200
		if dl, ok := ctx.Deadline(); ok {
			ms = min(ms, max(int(time.Until(dl)/time.Millisecond), 0))
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lab: poll pidfd: %w", err)
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return fmt.Errorf("lab: %s (pid %d) is not running", p.name, p.pid)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("lab: signal %v to %s (pid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// stop sends SIGTERM, waits up to timeout, then SIGKILL and waits again.
// It reports whether the process needed SIGKILL.
func (p *proc) stop(ctx context.Context, timeout time.Duration) (killed bool, err error) {
	if !p.alive() {
		return false, nil
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	err = p.wait(tctx)
	cancel()
	if err == nil {
		return false, nil
	}
	return true, p.kill(ctx)
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill(ctx context.Context) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.wait(kctx); err != nil {
		return fmt.Errorf("lab: %s (pid %d) survived SIGKILL: %w", p.name, p.pid, err)
	}
	return nil
}
