package ops

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// WaitSignals runs until SIGINT or SIGTERM arrives (which it returns) or
// ctx ends (nil): every SIGHUP meanwhile calls reload, on the caller's
// goroutine, one at a time.
func WaitSignals(ctx context.Context, reload func()) os.Signal {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-ch:
			if s == syscall.SIGHUP {
				if reload != nil {
					reload()
				}
				continue
			}
			return s
		}
	}
}
