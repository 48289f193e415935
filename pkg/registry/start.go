package registry

import (
	"context"
)

// Running is a Registry consuming in the background, started by Start.
type Running struct {
	fresh    chan struct{} // closed once the first WaitFresh returned
	freshErr error
	stopped  chan struct{} // closed once Run returned
	runErr   error
}

// Start is every service's registry start-up: it runs r until ctx is done, and, from its own
// goroutine, waits until r has read the projects and webhooks topics up to their ends as of the
// start, then calls caughtUp (the service's "webhooks caught up" readiness; nil for none).
// CaughtUp waits for that; Wait for Run to end.
func Start(ctx context.Context, r *Registry, caughtUp func()) *Running {
	run := &Running{fresh: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		run.runErr = r.Run(ctx)
		close(run.stopped)
	}()
	go func() {
		run.freshErr = r.WaitFresh(ctx)
		if run.freshErr == nil && caughtUp != nil {
			caughtUp()
		}
		close(run.fresh)
	}()
	return run
}

// CaughtUp returns once the registry has caught up (nil), or with why it could not: listing the
// topics' ends failed, ctx ended, or Run stopped first.
func (r *Running) CaughtUp(ctx context.Context) error {
	select {
	case <-r.fresh:
		return r.freshErr
	case <-ctx.Done():
		return ctx.Err()
	case <-r.stopped:
		select {
		case <-r.fresh:
			return r.freshErr
		default:
		}
		if r.runErr != nil {
			return r.runErr
		}
		return context.Canceled
	}
}

// Wait returns Run's error once it ended (after Start's ctx is done).
func (r *Running) Wait() error {
	<-r.stopped
	return r.runErr
}
