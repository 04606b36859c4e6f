// Package limiter decides whether a request fits its rate limits, token limits,
// spend budgets and concurrency caps, exactly and shared by every replica.
//
// All state lives in Redis. Each Reserve runs one Lua script (loaded once, run
// with EVALSHA) that evaluates every matching limit and takes the request's share
// of all of them, or of none: one round trip, atomic, no lost updates between
// replicas. Token and spend amounts are reserved up front from estimates and
// corrected by Settle; a reservation that is never settled expires, and its
// amount is given back by the next script that touches the budget.
//
// When Redis is unreachable the limiter fails closed (ErrStoreUnavailable), or,
// when the request asks for it, decides with an approximate in-memory limiter
// and marks the decision degraded.
package limiter

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bulwarkhq/bulwark/services/platform/coalesce"
)

//go:embed reserve.lua
var reserveLua string

//go:embed settle.lua
var settleLua string

var (
	reserveScript = redis.NewScript(reserveLua)
	settleScript  = redis.NewScript(settleLua)
)

// DefaultTTL is how long an unsettled reservation holds when the request names none.
const DefaultTTL = 10 * time.Minute

// MaxTTL caps the reservation ttl a request may ask for.
const MaxTTL = 24 * time.Hour

// Params configures a Limiter.
type Params struct {
	// Redis is the store; a *redis.Client or *redis.ClusterClient.
	Redis Store
	// Logger receives store failures; never subject values or amounts.
	Logger *slog.Logger
	// Prefix starts every key, e.g. "bulwark:rl:".
	Prefix string
	// Partition chooses the hash tag; empty means PartitionTeam.
	Partition Partition
	// Prices prices models; nil means the default table.
	Prices *PriceTable
	// Now is the clock. Nil means the Redis server's clock (TIME inside the
	// script), so that every replica decides on one clock; tests inject one.
	Now func() time.Time
	// DefaultTTL of reservations; 0 means DefaultTTL.
	DefaultTTL time.Duration
	// StoreTimeout bounds one script call; 0 means 500ms. Past it the store
	// counts as unreachable.
	StoreTimeout time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// ProbeInterval is how long, after Redis failed to answer, calls go straight
	// to the failure mode instead of waiting on Redis again; 0 means 500ms.
	ProbeInterval time.Duration
	// Lanes is how many round trips to Redis may be in flight at once; calls
	// beyond them share the next round trip (see batch.go). 0 means 2.
	Lanes int
}

// Limiter evaluates limits. It is safe for concurrent use.
type Limiter struct {
	batch      *coalesce.Batcher[*op]
	log        *slog.Logger
	prefix     string
	partition  Partition
	prices     *PriceTable
	now        func() time.Time
	defaultTTL time.Duration
	timeout    time.Duration
	local      *local
	m          *metrics
	probe      time.Duration
	downUntil  atomic.Int64 // wall clock, unix nanoseconds
}

// errBreakerOpen stands for Redis failures while calls skip Redis after one.
var errBreakerOpen = errors.New("redis recently unreachable")

// call runs a script unless Redis failed within the probe interval, and opens
// that interval when Redis does not answer, so an outage costs one timeout per
// interval rather than one per request.
func (l *Limiter) call(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if err := l.down(); err != nil {
		return errCmd(ctx, err)
	}
	o := &op{ctx: withDeadline(ctx, time.Now().Add(l.timeout)), script: s, keys: keys, args: args}
	l.batch.Do(o)
	cmd := o.cmd
	if err := cmd.Err(); err != nil && ctx.Err() == nil && isUnavailable(err) {
		l.downUntil.Store(time.Now().Add(l.probe).UnixNano())
	}
	return cmd
}

// errCmd is a script call that failed with err without reaching Redis.
func errCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// down returns errBreakerOpen while calls skip Redis.
func (l *Limiter) down() error {
	if time.Now().UnixNano() < l.downUntil.Load() {
		return errBreakerOpen
	}
	return nil
}

// deadlineCtx is ctx with an earlier deadline but without the timer that
// context.WithTimeout arms for every call (a tenth of the client's CPU per
// decision). The Redis client (ContextTimeoutEnabled, see
// platform.RedisClient) turns the deadline into socket deadlines, which is
// what bounds a decision when Redis hangs; cancellation is still the
// parent's. Waiting for a free pooled connection is bounded by the client's
// pool timeout instead.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func withDeadline(ctx context.Context, d time.Time) context.Context {
	if pd, ok := ctx.Deadline(); ok && pd.Before(d) {
		return ctx
	}
	return deadlineCtx{ctx, d}
}

func (c deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// New builds a Limiter and loads the scripts into Redis (a failure to load is
// not fatal: EVALSHA falls back to EVAL when Redis does not know the script).
func New(ctx context.Context, p Params) (*Limiter, error) {
	if p.Redis == nil {
		return nil, errors.New("limiter: Redis is required")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if strings.ContainsAny(p.Prefix, "{}\t\n") {
		return nil, errors.New("limiter: the key prefix must not contain braces (they would change the hash tag)")
	}
	switch p.Partition {
	case "":
		p.Partition = PartitionTeam
	case PartitionTeam, PartitionEnvironment:
	default:
		return nil, fmt.Errorf("limiter: unknown partition %q", p.Partition)
	}
	if p.Prices == nil {
		p.Prices = NewPriceTable(DefaultPrices(), Price{})
	}
	if p.DefaultTTL <= 0 {
		p.DefaultTTL = DefaultTTL
	}
	if p.StoreTimeout <= 0 {
		p.StoreTimeout = 500 * time.Millisecond
	}
	if p.ProbeInterval <= 0 {
		p.ProbeInterval = 500 * time.Millisecond
	}
	if p.Lanes <= 0 {
		p.Lanes = 2
	}
	l := &Limiter{
		log:        p.Logger,
		prefix:     p.Prefix,
		partition:  p.Partition,
		prices:     p.Prices,
		now:        p.Now,
		defaultTTL: p.DefaultTTL,
		timeout:    p.StoreTimeout,
		m:          newMetrics(p.Registerer),
		probe:      p.ProbeInterval,
	}
	localNow := p.Now
	if localNow == nil {
		localNow = time.Now
	}
	l.local = newLocal(localNow)
	l.batch = newBatcher(p.Redis, p.Lanes, l.down, l.m.roundTrip)
	lctx, cancel := context.WithTimeout(ctx, p.StoreTimeout)
	defer cancel()
	if err := reserveScript.Load(lctx, p.Redis).Err(); err != nil {
		l.log.WarnContext(ctx, "loading rate limit scripts failed; will retry on first use", "error", err)
	} else if err := settleScript.Load(lctx, p.Redis).Err(); err != nil {
		l.log.WarnContext(ctx, "loading rate limit scripts failed; will retry on first use", "error", err)
	}
	return l, nil
}

// Prices returns the limiter's price table.
func (l *Limiter) Prices() *PriceTable { return l.prices }

func (l *Limiter) nowArg() (int64, time.Time) {
	if l.now == nil {
		return 0, time.Time{}
	}
	t := l.now()
	return t.UnixMilli(), t
}

// isUnavailable tells a store that could not be reached (network, timeout,
// pool exhaustion, loading) from an error Redis itself answered.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		// A replica being promoted or a server still loading is unavailability too.
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "BUSY"} {
			if len(msg) >= len(p) && msg[:len(p)] == p {
				return true
			}
		}
		return false
	}
	// Anything else (refused or reset connections, timeouts, a closed or
	// exhausted pool) means Redis did not answer.
	return true
}

// Reserve evaluates every limit and, only if all fit, takes the request's share.
func (l *Limiter) Reserve(ctx context.Context, req ReserveRequest) (Decision, error) {
	start := time.Now()
	if err := validate(req.Limits); err != nil {
		return Decision{}, err
	}
	if req.InputTokens < 0 || req.MaxOutputTokens < 0 || req.CostMicros < 0 || req.TTL < 0 {
		return Decision{}, fmt.Errorf("%w: negative amount", ErrInvalidRequest)
	}
	if req.RequestID == "" {
		req.RequestID = ulid.Make().String()
	}
	if len(req.RequestID) > 256 {
		return Decision{}, fmt.Errorf("%w: request id longer than 256 bytes", ErrInvalidRequest)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = l.defaultTTL
	}
	ttl = min(ttl, MaxTTL)
	price := l.prices.Lookup(req.Subject.Model)
	tokens := req.InputTokens + req.MaxOutputTokens
	cost := req.CostMicros
	if cost == 0 {
		cost = costOf(price, req.InputTokens, req.MaxOutputTokens)
	}

	tag := l.tag(req.Subject)
	keys := make([]string, 1, 1+2*len(req.Limits))
	keys[0] = l.recordKey(tag, req.RequestID)
	args := make([]any, 0, 9+5*len(req.Limits))
	nowMs, nowT := l.nowArg()
	// The request id goes into reservation set members and the record: escaped, it holds no separator.
	args = append(args, nowMs, ttl.Milliseconds(), esc(req.RequestID), tokens, cost, len(req.Limits), "reserve",
		strconv.FormatFloat(price.Input, 'g', -1, 64), strconv.FormatFloat(price.Output, 'g', -1, 64))
	for _, lim := range req.Limits {
		s, z := limitKeys(l.prefix, tag, req.Subject, lim)
		keys = append(keys, s, z)
		args = append(args, int(lim.Kind), lim.Limit, lim.Period.Milliseconds(), lim.Burst, lim.Calendar)
	}

	res, err := l.call(ctx, reserveScript, keys, args...).Int64Slice()
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("reserve: %w", ctx.Err())
		}
		if !isUnavailable(err) {
			l.m.storeErrors.WithLabelValues("reserve").Inc()
			l.log.ErrorContext(ctx, "rate limit script failed", "error", err)
			return Decision{}, fmt.Errorf("reserve: %w", err)
		}
		l.m.storeErrors.WithLabelValues("reserve").Inc()
		if !req.FailOpen {
			l.m.failClosed.Inc()
			l.log.WarnContext(ctx, "rate limit store unreachable; failing closed", "error", err)
			return Decision{}, fmt.Errorf("reserve: %w", ErrStoreUnavailable)
		}
		l.m.failOpen.Inc()
		l.log.WarnContext(ctx, "rate limit store unreachable; failing open with the local limiter", "error", err)
		d := l.local.reserve(req, tag, tokens, cost, ttl, price)
		d.ReservationID = reservationID(localPrefix, tag, req.RequestID)
		l.m.observe(d, time.Since(start))
		return d, nil
	}
	d := decode(res, req.Limits)
	d.ReservationID = ""
	if d.Allowed {
		d.ReservationID = reservationID(remotePrefix, tag, req.RequestID)
		d.ReservedTokens = tokens
		d.ReservedCostMicros = cost
	}
	if nowT.IsZero() {
		d.Now = time.UnixMilli(res[3]).UTC()
	} else {
		d.Now = nowT
	}
	l.m.observe(d, time.Since(start))
	return d, nil
}

func decode(res []int64, limits []Limit) Decision {
	d := Decision{Allowed: res[0] == 1, Replayed: res[2] == 1}
	denied := int(res[1])
	d.Statuses = make([]Status, len(limits))
	for i, lim := range limits {
		b := 4 + 3*i
		st := Status{Name: lim.Name, Kind: lim.Kind, Limit: lim.Limit}
		if b+2 < len(res) {
			st.Remaining = res[b]
			st.ResetAfter = time.Duration(res[b+1]) * time.Millisecond
			switch r := res[b+2]; {
			case r < 0:
				st.RetryAfter = never(lim)
			default:
				st.RetryAfter = time.Duration(r) * time.Millisecond
			}
		}
		d.Statuses[i] = st
		if !d.Allowed && st.RetryAfter > d.RetryAfter {
			d.RetryAfter = st.RetryAfter
		}
	}
	if denied > 0 && denied <= len(limits) {
		d.DeniedBy = limits[denied-1].Name
	}
	return d
}

// never is the retry-after of a request that can never fit a limit: the
// limit's own period, so that a client backs off rather than spins.
func never(lim Limit) time.Duration {
	switch lim.Calendar {
	case CalendarHour:
		return time.Hour
	case CalendarDay:
		return 24 * time.Hour
	case CalendarMonth:
		return 31 * 24 * time.Hour
	}
	if lim.Period > 0 {
		return lim.Period
	}
	return time.Minute
}

// Settle corrects a reservation to the usage really reported and frees its
// concurrency slot.
func (l *Limiter) Settle(ctx context.Context, reservationID string, u Usage) (SettleResult, error) {
	if u.InputTokens < 0 || u.OutputTokens < 0 || u.CostMicros < 0 {
		return SettleResult{}, fmt.Errorf("%w: negative usage", ErrInvalidRequest)
	}
	cost := int64(-1)
	switch {
	case u.CostMicros > 0:
		cost = u.CostMicros
	case u.ModelServed != "":
		cost = l.prices.Cost(u.ModelServed, u.InputTokens, u.OutputTokens)
	}
	return l.finish(ctx, reservationID, "settle", u, cost)
}

// Release cancels a reservation that was never used.
func (l *Limiter) Release(ctx context.Context, reservationID string) (bool, error) {
	r, err := l.finish(ctx, reservationID, "release", Usage{}, 0)
	return r.Settled, err
}

func (l *Limiter) finish(ctx context.Context, id, mode string, u Usage, cost int64) (SettleResult, error) {
	prefix, tag, requestID, err := parseReservationID(id)
	if err != nil {
		return SettleResult{}, err
	}
	if prefix == localPrefix {
		return l.local.finish(id, mode, u, cost), nil
	}
	nowMs, _ := l.nowArg()
	res, err := l.call(ctx, settleScript, []string{l.recordKey(tag, requestID)},
		nowMs, mode, u.InputTokens, u.OutputTokens, cost).Slice()
	if err != nil {
		l.m.storeErrors.WithLabelValues(mode).Inc()
		if isUnavailable(err) {
			l.log.WarnContext(ctx, "rate limit store unreachable", "op", mode, "error", err)
			return SettleResult{}, fmt.Errorf("%s: %w", mode, ErrStoreUnavailable)
		}
		l.log.ErrorContext(ctx, "rate limit script failed", "op", mode, "error", err)
		return SettleResult{}, fmt.Errorf("%s: %w", mode, err)
	}
	done, _ := res[0].(int64)
	charged, _ := res[2].(int64)
	return SettleResult{Settled: done == 1, CostMicros: charged}, nil
}

// Usage reports each limit's current state for a subject without taking anything.
func (l *Limiter) Usage(ctx context.Context, s Subject, limits []Limit) ([]Status, error) {
	if err := validate(limits); err != nil {
		return nil, err
	}
	tag := l.tag(s)
	keys := make([]string, 1, 1+2*len(limits))
	keys[0] = l.recordKey(tag, "-")
	nowMs, _ := l.nowArg()
	args := []any{nowMs, 0, "-", 0, 0, len(limits), "peek", 0, 0}
	for _, lim := range limits {
		st, z := limitKeys(l.prefix, tag, s, lim)
		keys = append(keys, st, z)
		args = append(args, int(lim.Kind), lim.Limit, lim.Period.Milliseconds(), lim.Burst, lim.Calendar)
	}
	res, err := l.call(ctx, reserveScript, keys, args...).Int64Slice()
	if err != nil {
		l.m.storeErrors.WithLabelValues("usage").Inc()
		if isUnavailable(err) {
			return nil, fmt.Errorf("usage: %w", ErrStoreUnavailable)
		}
		l.log.ErrorContext(ctx, "rate limit script failed", "op", "usage", "error", err)
		return nil, fmt.Errorf("usage: %w", err)
	}
	return decode(res, limits).Statuses, nil
}

// clampMs turns float milliseconds into a duration without overflow.
func clampMs(ms float64) time.Duration {
	if ms <= 0 {
		return 0
	}
	if ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Ceil(ms)) * time.Millisecond
}
