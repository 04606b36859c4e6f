package limiter

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/coalesce"
)

// Store is what the limiter needs of Redis: its scripts, and pipelines to send
// the scripts of concurrent decisions together. *redis.Client and
// *redis.ClusterClient are Stores.
type Store interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// Concurrent decisions share round trips to Redis (see package coalesce): at
// most Params.Lanes round trips are in flight, and the calls that arrive
// meanwhile go in the next one as a pipeline of EVALSHAs. Each decision is
// still one script, atomic on its own; what is shared is the round trip. With
// one script per round trip, reading the command, waking the event loop and
// writing the answer cost Redis about 7 µs of its single thread per decision
// here, and the client a write and a read syscall.

// maxBatch bounds one pipeline, so one round trip never carries an
// unbounded queue (the rest goes in the next one).
const maxBatch = 64

// op is one script call and, once run, its answer.
type op struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// newBatcher shares round trips to rdb, observing how many scripts each one
// carries into sizes.
func newBatcher(rdb Store, lanes int, skip func() error, sizes prometheus.Histogram) *coalesce.Batcher[*op] {
	return coalesce.New(lanes, maxBatch,
		func(o *op) {
			sizes.Observe(1)
			o.cmd = o.script.Run(o.ctx, rdb, o.keys, o.args...)
		},
		func(ops []*op) { sizes.Observe(float64(sendPipelined(rdb, skip, ops))) })
}

// sendPipelined runs queued scripts as one pipeline. skip, when it returns an
// error, fails them without sending (Redis was found unreachable while they
// waited); so does a deadline or cancellation that came while they waited.
// It returns how many it sent.
func sendPipelined(rdb Store, skip func() error, ops []*op) int {
	live := make([]*op, 0, len(ops))
	now := time.Now()
	var deadline time.Time
	for _, o := range ops {
		if err := skip(); err != nil {
			o.cmd = errCmd(o.ctx, err)
			continue
		}
		if err := o.ctx.Err(); err != nil {
			o.cmd = errCmd(o.ctx, err)
			continue
		}
		d, ok := o.ctx.Deadline()
		if ok && !d.After(now) {
			o.cmd = errCmd(o.ctx, context.DeadlineExceeded)
			continue
		}
		if ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		live = append(live, o)
	}
	switch len(live) {
	case 0:
	case 1:
		o := live[0]
		o.cmd = o.script.Run(o.ctx, rdb, o.keys, o.args...)
	default:
		// The pipeline belongs to no one caller: one's cancellation must not
		// fail the others, and the earliest deadline bounds the socket waits.
		ctx := context.WithoutCancel(live[0].ctx)
		if !deadline.IsZero() {
			ctx = withDeadline(ctx, deadline)
		}
		pipe := rdb.Pipeline()
		for _, o := range live {
			o.cmd = o.script.EvalSha(ctx, pipe, o.keys, o.args...)
		}
		_, _ = pipe.Exec(ctx)
		for _, o := range live {
			// A Redis that lost its scripts (restarted, flushed) answers
			// NOSCRIPT and runs nothing: send that script again, with its source.
			if err := o.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				o.cmd = o.script.Run(o.ctx, rdb, o.keys, o.args...)
			}
		}
	}
	return len(live)
}
