// Package anomaly learns each principal's and each API key's usual usage from
// llm_call audit events and raises alerts when usage leaves it.
//
// Usage is counted per clock hour (requests, tokens, spend, PII findings,
// denials, tokens per request, distinct models). When an hour closes it is
// folded into exponentially weighted means and variances kept per hour of the
// week, per hour of the day and over all hours, so a subject's Monday 10:00 is
// compared with its past Monday 10:00s, falling back to its 10:00s on any day
// while the weekly slot has too few samples. The open hour is compared with its
// slot as it fills: a z-score above the threshold raises an out-of-band alert.
// First use of a model or provider, use at an hour the subject is normally
// idle, and bursts of denied or injection-flagged calls raise alerts of their
// own. Alerts are deduplicated (one per subject, kind and hour), rate limited
// per subject, published, and kept for ListAlerts.
//
// All state is in Redis, keyed by the event's own time, so a replayed history
// builds the same baselines as the live one.
package anomaly

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

// AnomalySubject is the NATS subject alerts are published on.
const AnomalySubject = "bulwark.ratelimit.v1.anomaly"

// ErrInvalidEvent reports an event that is not an llm_call or lacks a time.
var ErrInvalidEvent = errors.New("invalid audit event")

// Publisher sends an event; msgID deduplicates it (Nats-Msg-Id).
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
}

// Config holds the detection thresholds; zero fields take the defaults.
type Config struct {
	// ZThreshold is the z-score above which a metric is out of band (default 4).
	ZThreshold float64
	// MinSamples a slot needs before it is used as a baseline (default 3).
	MinSamples int
	// Learning is how long a subject is observed before baseline alerts (default 7 days).
	Learning time.Duration
	// Alpha is the EWMA weight of a new sample once a slot has 1/Alpha samples (default 0.1).
	Alpha float64
	// OffHoursMean is the mean requests per hour below which an hour is "not usual" (default 0.5).
	OffHoursMean float64
	// OffHoursMinRequests in such an hour raise an off-hours alert (default 3).
	OffHoursMinRequests int64
	// BurstWindow is the window denial and injection bursts are counted in (default 5m).
	BurstWindow time.Duration
	// DenialBurst denied calls in a window raise an alert (default 10).
	DenialBurst int64
	// InjectionBurst injection-flagged calls in a window raise an alert (default 3).
	InjectionBurst int64
	// InjectionScore at or above which a call counts as injection-flagged (default 0.8).
	InjectionScore float64
	// MaxAlertsPerHour per subject; more are dropped and counted (default 10).
	MaxAlertsPerHour int64
	// Retention of stored alerts (default 30 days).
	Retention time.Duration
}

func (c *Config) defaults() {
	set := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&c.ZThreshold, 4)
	set(&c.Alpha, 0.1)
	set(&c.OffHoursMean, 0.5)
	set(&c.InjectionScore, 0.8)
	if c.MinSamples <= 0 {
		c.MinSamples = 3
	}
	if c.Learning <= 0 {
		c.Learning = 7 * 24 * time.Hour
	}
	if c.OffHoursMinRequests <= 0 {
		c.OffHoursMinRequests = 3
	}
	if c.BurstWindow <= 0 {
		c.BurstWindow = 5 * time.Minute
	}
	if c.DenialBurst <= 0 {
		c.DenialBurst = 10
	}
	if c.InjectionBurst <= 0 {
		c.InjectionBurst = 3
	}
	if c.MaxAlertsPerHour <= 0 {
		c.MaxAlertsPerHour = 10
	}
	if c.Retention <= 0 {
		c.Retention = 30 * 24 * time.Hour
	}
}

// Params configures a Detector.
type Params struct {
	Redis      redis.Cmdable
	Publisher  Publisher
	Logger     *slog.Logger
	Prefix     string
	Config     Config
	Registerer prometheus.Registerer
}

// Detector keeps baselines and raises alerts. Safe for concurrent use; several
// replicas may share one Redis.
type Detector struct {
	rdb    redis.Cmdable
	pub    Publisher
	log    *slog.Logger
	prefix string
	cfg    Config

	alerts     *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	events     prometheus.Counter
}

// New builds a Detector.
func New(p Params) (*Detector, error) {
	if p.Redis == nil || p.Publisher == nil {
		return nil, errors.New("anomaly: Redis and Publisher are required")
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	p.Config.defaults()
	d := &Detector{
		rdb: p.Redis, pub: p.Publisher, log: p.Logger, prefix: p.Prefix, cfg: p.Config,
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_anomaly_alerts_total", Help: "Anomaly alerts raised, by kind.",
		}, []string{"kind"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_anomaly_alerts_suppressed_total", Help: "Anomaly alerts not raised, by reason (duplicate, rate_limited).",
		}, []string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_ratelimit_anomaly_events_total", Help: "llm_call events observed.",
		}),
	}
	if p.Registerer != nil {
		p.Registerer.MustRegister(d.alerts, d.suppressed, d.events)
	}
	return d, nil
}

// metric names, in the order they are kept.
var metricNames = []string{"requests", "tokens", "spend_micros", "pii_findings", "denials", "tokens_per_request", "distinct_models"}

type subject struct {
	kind string // "principal" or "api_key"
	id   string
}

func (d *Detector) key(s subject, rest string) string {
	return d.prefix + "{a:" + s.kind + ":" + esc(s.id) + "}:" + rest
}

func esc(s string) string { return keyEscaper.Replace(s) }

var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", ":", "%3A")

//go:embed observe.lua
var observeLua string

// observeScript counts an event for one subject (see observe.lua).
var observeScript = redis.NewScript(observeLua)

// seenKeep is how long a subject remembers an event it counted: longer than
// the consumer redelivers one (MaxDeliver 10 × AckWait 30 s, see events).
const seenKeep = 15 * time.Minute

// baselineFields are the fields observe.lua reads for an hour: each metric in
// the hour-of-week slot, then in the hour-of-day slot (see baselines).
func baselineFields(hour int64) []string {
	sl := slots(hour)
	fields := make([]string, 0, 2*len(metricNames))
	for _, slot := range sl[:2] {
		for _, m := range metricNames {
			fields = append(fields, slot+":"+m)
		}
	}
	return fields
}

// observation is observe.lua's reply for one subject.
type observation struct {
	done                                      bool // counted and judged before
	replayed                                  bool
	firstMs                                   int64
	requests, tokens, spend, pii, denials     int64
	models, newModel, newProvider             int64
	denialBurst, injectionBurst, previousHour int64
	baselineValues                            []string
}

func parseObservation(v any) (observation, error) {
	r, ok := v.([]any)
	if ok && len(r) == 1 {
		return observation{done: true}, nil
	}
	if !ok || len(r) < 13 {
		return observation{}, fmt.Errorf("observe: unexpected reply %T", v)
	}
	n := make([]int64, 13)
	for i := range n {
		if n[i], ok = r[i].(int64); !ok {
			return observation{}, fmt.Errorf("observe: reply field %d is %T", i, r[i])
		}
	}
	o := observation{replayed: n[0] == 1, firstMs: n[1], requests: n[2], tokens: n[3], spend: n[4], pii: n[5], denials: n[6],
		models: n[7], newModel: n[8], newProvider: n[9], denialBurst: n[10], injectionBurst: n[11], previousHour: n[12]}
	for _, b := range r[13:] {
		s, _ := b.(string)
		o.baselineValues = append(o.baselineValues, s)
	}
	return o, nil
}

// observed is one subject of an event with what observe.lua said about it.
type observed struct {
	s, parent subject
	marker    string // the key that marks the event counted for s
	cmd       *redis.Cmd
}

// observing is one event of a batch on its way through count and judge.
type observing struct {
	ev   *auditv1.AuditEvent
	call *auditv1.LlmCall
	at   time.Time
	hour int64 // at's hour since the epoch
	subs []observed
}

// Observe takes one audit event and returns the alerts it raised.
func (d *Detector) Observe(ctx context.Context, ev *auditv1.AuditEvent) ([]*ratelimitv1.AnomalyEvent, error) {
	raised, errs := d.ObserveBatch(ctx, []*auditv1.AuditEvent{ev})
	return raised, errs[0]
}

// ObserveBatch takes audit events in the order they happened and returns the
// alerts they raised and one error per event (nil when it was counted and
// judged; an event with an error should be delivered again). The subjects of
// every event (principal and API key) are counted in one pipelined round
// trip; then each event is judged in order, which costs more only for the
// first event of a new hour and for a raised alert.
func (d *Detector) ObserveBatch(ctx context.Context, evs []*auditv1.AuditEvent) ([]*ratelimitv1.AnomalyEvent, []error) {
	errs := make([]error, len(evs))
	batch := make([]*observing, len(evs))
	for i, ev := range evs {
		call := ev.GetLlmCall()
		if call == nil || ev.GetTime() == nil {
			errs[i] = ErrInvalidEvent
			continue
		}
		d.events.Inc()
		at := ev.GetTime().AsTime()
		o := &observing{ev: ev, call: call, at: at, hour: at.Unix() / 3600}
		var principal subject
		if call.GetPrincipalId() != "" {
			principal = subject{"principal", call.GetPrincipalId()}
			o.subs = append(o.subs, observed{s: principal})
		}
		if call.GetApiKeyId() != "" {
			o.subs = append(o.subs, observed{s: subject{"api_key", call.GetApiKeyId()}, parent: principal})
		}
		eventID := ev.GetEventId()
		if eventID == "" {
			eventID = ulid.Make().String() // without an id a redelivery cannot be recognised
		}
		for j := range o.subs {
			o.subs[j].marker = d.key(o.subs[j].s, "seen:"+esc(eventID))
		}
		batch[i] = o
	}
	if err := d.count(ctx, batch); err != nil {
		for i, o := range batch {
			if o != nil && len(o.subs) > 0 {
				errs[i] = err
			}
		}
		return nil, errs
	}
	var raised []*ratelimitv1.AnomalyEvent
	// A subject whose hour was closed (folded into its baselines) by an
	// earlier event of this batch was counted with the baselines from before:
	// they are read again once, for its later events of that hour.
	type subjectHour struct {
		s    subject
		hour int64
	}
	folded := map[subjectHour]map[string]stat{}
	for i, o := range batch {
		if o == nil {
			continue
		}
		hour := o.hour
		for _, sub := range o.subs {
			obs, err := parseObservation(sub.cmd.Val())
			if err != nil {
				errs[i] = errors.Join(errs[i], err)
				break
			}
			if obs.done {
				continue
			}
			k := subjectHour{sub.s, hour}
			base, stale := folded[k]
			switch {
			case obs.closes(hour):
				folded[k], base = nil, nil // judge folds and reads them itself
			case stale && base == nil:
				if base, err = d.baselines(ctx, sub.s, hour); err == nil {
					folded[k] = base
				}
			}
			var a []*ratelimitv1.AnomalyEvent
			if err == nil {
				a, err = d.judge(ctx, sub.s, sub.parent, o.ev, o.call, o.at, obs, base)
			}
			raised = append(raised, a...)
			if err != nil {
				// Keep what the count said, so that the redelivery judges it again.
				if kerr := d.rdb.SetArgs(ctx, sub.marker, obs.encode(), redis.SetArgs{Mode: "XX", KeepTTL: true}).Err(); kerr != nil {
					err = errors.Join(err, fmt.Errorf("keep observation: %w", kerr))
				}
				errs[i] = errors.Join(errs[i], err)
			}
		}
	}
	return raised, errs
}

// closes says that the event is its subject's first of the hour, which folds
// the hours before into the baselines (observe.lua moved "last" forward).
func (o observation) closes(hour int64) bool {
	return !o.replayed && o.previousHour >= 0 && o.previousHour < hour
}

// encode writes o as observe.lua's reply, as JSON for cjson.decode.
func (o observation) encode() string {
	var b strings.Builder
	b.WriteString("[0")
	for _, n := range []int64{o.firstMs, o.requests, o.tokens, o.spend, o.pii, o.denials, o.models, o.newModel, o.newProvider,
		o.denialBurst, o.injectionBurst, o.previousHour} {
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(n, 10))
	}
	for _, v := range o.baselineValues {
		b.WriteByte(',')
		b.WriteString(strconv.Quote(v))
	}
	b.WriteByte(']')
	return b.String()
}

// observeArgs are observe.lua's arguments for one event.
func (d *Detector) observeArgs(o *observing) []any {
	call, hour := o.call, o.hour
	var pii int64
	for _, n := range call.GetFindings() {
		pii += int64(n)
	}
	var denied, injection int
	if isDenied(call.GetDecision()) {
		denied = 1
	}
	if d.injectionFlagged(call) {
		injection = 1
	}
	args := []any{o.at.UnixMilli(), hour, call.GetInputTokens() + call.GetOutputTokens(), call.GetCostMicros(), pii, denied, injection,
		modelOf(call), call.GetProvider(), int64(subjectKeep.Seconds()), int64(hourKeep.Seconds()), int64((2 * d.cfg.BurstWindow).Seconds()),
		int64(seenKeep.Seconds())}
	for _, f := range baselineFields(hour) {
		args = append(args, f)
	}
	return args
}

// count runs observe.lua for every subject of every event in one pipeline, in
// order. A script Redis lost (a restart) is loaded and the pipeline sent
// again, which is safe: a subject that was counted answers with its first reply.
func (d *Detector) count(ctx context.Context, batch []*observing) error {
	type call struct {
		sub  *observed
		keys []string
		args []any
	}
	var calls []call
	for _, o := range batch {
		if o == nil || len(o.subs) == 0 {
			continue
		}
		hs := strconv.FormatInt(o.hour, 10)
		win := strconv.FormatInt(o.at.UnixNano()/int64(d.cfg.BurstWindow), 10)
		args := d.observeArgs(o)
		for i := range o.subs {
			s := o.subs[i].s
			calls = append(calls, call{sub: &o.subs[i], args: args, keys: []string{o.subs[i].marker, d.key(s, "first"), d.key(s, "h:"+hs),
				d.key(s, "hm:"+hs), d.key(s, "models"), d.key(s, "providers"), d.key(s, "db:"+win), d.key(s, "ib:"+win), d.key(s, "last"), d.key(s, "b")}})
		}
	}
	if len(calls) == 0 {
		return nil
	}
	for attempt := 0; ; attempt++ {
		pipe := d.rdb.Pipeline()
		for _, c := range calls {
			c.sub.cmd = observeScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		if err == nil {
			return nil
		}
		if attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := observeScript.Load(ctx, d.rdb).Err(); err != nil {
				return fmt.Errorf("count event: load script: %w", err)
			}
			continue
		}
		return fmt.Errorf("count event: %w", err)
	}
}

// modelOf is the model a call used: the one served, else the one asked for.
func modelOf(call *auditv1.LlmCall) string {
	if m := call.GetModelServed(); m != "" {
		return m
	}
	return call.GetModelRequested()
}

func isDenied(dec auditv1.Decision) bool {
	switch dec {
	case auditv1.Decision_DECISION_DENIED_AUTH, auditv1.Decision_DECISION_DENIED_POLICY,
		auditv1.Decision_DECISION_DENIED_RATE_LIMIT, auditv1.Decision_DECISION_DENIED_REDACTION:
		return true
	}
	return false
}

func (d *Detector) injectionFlagged(call *auditv1.LlmCall) bool {
	if call.GetInjectionScore() >= d.cfg.InjectionScore {
		return true
	}
	for _, f := range call.GetAnomalyFlags() {
		if f == "prompt_injection" {
			return true
		}
	}
	return false
}

const (
	hourKeep    = 9 * 24 * time.Hour
	subjectKeep = 90 * 24 * time.Hour
)

// judge decides the alerts of one subject for an event it has counted. base,
// when not nil, replaces the baselines in o (read before an earlier event of
// the same batch folded an hour into them).
func (d *Detector) judge(ctx context.Context, s, parent subject, ev *auditv1.AuditEvent, call *auditv1.LlmCall, at time.Time, o observation, base map[string]stat) ([]*ratelimitv1.AnomalyEvent, error) {
	hour := at.Unix() / 3600
	model := modelOf(call)
	firstSeen := at
	if o.firstMs >= 0 {
		firstSeen = time.UnixMilli(o.firstMs)
	}
	learned := at.Sub(firstSeen) >= d.cfg.Learning

	// Close the hours this subject has left since its last event (the first
	// event of an hour does this, once: observe.lua moved "last" forward).
	if base == nil {
		base = d.parseBaselines(o.baselineValues)
	}
	if o.closes(hour) {
		if err := d.fold(ctx, s, o.previousHour, hour); err != nil {
			return nil, err
		}
		// The closed hours may share this hour's slots: read them again.
		var err error
		if base, err = d.baselines(ctx, s, hour); err != nil {
			return nil, err
		}
	}

	cur := map[string]float64{
		"requests": float64(o.requests), "tokens": float64(o.tokens), "spend_micros": float64(o.spend),
		"pii_findings": float64(o.pii), "denials": float64(o.denials), "distinct_models": float64(o.models),
	}
	if o.requests >= 5 {
		cur["tokens_per_request"] = float64(o.tokens) / float64(o.requests)
	}

	a := alerter{d: d, s: s, parent: parent, at: at, hour: hour, env: ev.GetEnvironment()}
	if o.denialBurst == d.cfg.DenialBurst {
		a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_DENIAL_BURST, "denials", float64(o.denialBurst), 0, 0, float64(o.denialBurst)/float64(d.cfg.DenialBurst), "",
			fmt.Sprintf("%d denied calls within %s", o.denialBurst, d.cfg.BurstWindow))
	}
	if o.injectionBurst == d.cfg.InjectionBurst {
		a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_INJECTION_BURST, "injection_flagged", float64(o.injectionBurst), 0, 0, float64(o.injectionBurst)/float64(d.cfg.InjectionBurst), "",
			fmt.Sprintf("%d prompt-injection-flagged calls within %s", o.injectionBurst, d.cfg.BurstWindow))
	}
	if !learned {
		return a.out, a.err
	}
	if o.newModel == 1 {
		a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_NEW_MODEL, "model", 1, 0, 0, 1, model,
			fmt.Sprintf("first use of model %q", model))
	}
	if o.newProvider == 1 {
		a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_NEW_PROVIDER, "provider", 1, 0, 0, 1, call.GetProvider(),
			fmt.Sprintf("first use of provider %q", call.GetProvider()))
	}

	offHours := false
	if b, ok := base["requests"]; ok && b.mean < d.cfg.OffHoursMean {
		offHours = true
		if o.requests >= d.cfg.OffHoursMinRequests {
			a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_OFF_HOURS, "requests", cur["requests"], b.mean, b.std(), float64(o.requests), "",
				fmt.Sprintf("%d calls in an hour of the week this %s is usually idle (%.2f on average)", o.requests, s.kind, b.mean))
		}
	}
	if !offHours {
		for _, m := range metricNames {
			x, ok := cur[m]
			b, okb := base[m]
			if !ok || !okb {
				continue
			}
			sd := math.Max(b.std(), math.Max(math.Sqrt(math.Abs(b.mean)), math.Max(0.1*math.Abs(b.mean), 1)))
			z := (x - b.mean) / sd
			if z >= d.cfg.ZThreshold {
				a.raise(ctx, ratelimitv1.AnomalyKind_ANOMALY_KIND_OUT_OF_BAND, m, x, b.mean, b.std(), z, "",
					fmt.Sprintf("%s this hour is %.0f against a usual %.0f ± %.0f (z = %.1f)", m, x, b.mean, b.std(), z))
				break // one out-of-band alert per subject and hour says it all
			}
		}
	}
	return a.out, a.err
}

// stat is one slot's running mean and variance.
type stat struct {
	n    int64
	mean float64
	vr   float64
}

func (s stat) std() float64 { return math.Sqrt(math.Max(s.vr, 0)) }

func parseStat(v string) stat {
	f := strings.Fields(v)
	if len(f) != 3 {
		return stat{}
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	m, _ := strconv.ParseFloat(f[1], 64)
	vr, _ := strconv.ParseFloat(f[2], 64)
	return stat{n, m, vr}
}

func (s stat) String() string {
	return strconv.FormatInt(s.n, 10) + " " + strconv.FormatFloat(s.mean, 'g', 10, 64) + " " + strconv.FormatFloat(s.vr, 'g', 10, 64)
}

func (d *Detector) add(s stat, x float64) stat {
	s.n++
	alpha := math.Max(1/float64(s.n), d.cfg.Alpha)
	diff := x - s.mean
	s.mean += alpha * diff
	s.vr = (1 - alpha) * (s.vr + alpha*diff*diff)
	return s
}

// slots of an hour: hour of the week (weeks start Monday 00:00 UTC), hour of the day, all hours.
func slots(hour int64) [3]string {
	how := (hour + 72) % 168 // the epoch was a Thursday: +72h makes 0 a Monday
	return [3]string{"w" + strconv.FormatInt(how, 10), "d" + strconv.FormatInt(hour%24, 10), "a"}
}

// fold adds the closed hours [from, to) to the baselines: the counts of hour
// from, and zero for the idle hours after it (a week of them at most).
func (d *Detector) fold(ctx context.Context, s subject, from, to int64) error {
	hk := d.key(s, "h:"+strconv.FormatInt(from, 10))
	pipe := d.rdb.Pipeline()
	vals := pipe.HMGet(ctx, hk, "requests", "tokens", "spend_micros", "pii_findings", "denials")
	models := pipe.SCard(ctx, d.key(s, "hm:"+strconv.FormatInt(from, 10)))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read closed hour: %w", err)
	}
	closed := map[string]float64{"distinct_models": float64(models.Val())}
	for i, m := range metricNames[:5] {
		if v, ok := vals.Val()[i].(string); ok {
			closed[m], _ = strconv.ParseFloat(v, 64)
		}
	}
	if closed["requests"] > 0 {
		closed["tokens_per_request"] = closed["tokens"] / closed["requests"]
	}
	hours := []int64{from}
	for h := max(from+1, to-168); h < to; h++ {
		hours = append(hours, h)
	}
	// Gather every field to update, read them at once, write them at once.
	type upd struct {
		field string
		x     float64
	}
	var ups []upd
	for _, h := range hours {
		for _, slot := range slots(h) {
			for _, m := range metricNames {
				x, ok := 0.0, true
				if h == from {
					x, ok = closed[m]
				} else if m == "tokens_per_request" {
					ok = false // undefined for an idle hour
				}
				if ok {
					ups = append(ups, upd{slot + ":" + m, x})
				}
			}
		}
	}
	fields := make([]string, 0, len(ups))
	seen := map[string]bool{}
	for _, u := range ups {
		if !seen[u.field] {
			seen[u.field] = true
			fields = append(fields, u.field)
		}
	}
	bk := d.key(s, "b")
	got, err := d.rdb.HMGet(ctx, bk, fields...).Result()
	if err != nil {
		return fmt.Errorf("read baselines: %w", err)
	}
	st := make(map[string]stat, len(fields))
	for i, f := range fields {
		if v, ok := got[i].(string); ok {
			st[f] = parseStat(v)
		}
	}
	for _, u := range ups {
		st[u.field] = d.add(st[u.field], u.x)
	}
	out := make(map[string]any, len(st))
	for f, v := range st {
		out[f] = v.String()
	}
	pipe = d.rdb.Pipeline()
	pipe.HSet(ctx, bk, out)
	pipe.Expire(ctx, bk, subjectKeep)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write baselines: %w", err)
	}
	return nil
}

// baselines returns, per metric, the slot to compare the given hour with: its
// hour of the week when that has enough samples, else its hour of the day.
func (d *Detector) baselines(ctx context.Context, s subject, hour int64) (map[string]stat, error) {
	got, err := d.rdb.HMGet(ctx, d.key(s, "b"), baselineFields(hour)...).Result()
	if err != nil {
		return nil, fmt.Errorf("read baselines: %w", err)
	}
	values := make([]string, len(got))
	for i, v := range got {
		values[i], _ = v.(string)
	}
	return d.parseBaselines(values), nil
}

// parseBaselines reads the values of baselineFields: per metric, the
// hour-of-week slot when it has enough samples, else the hour-of-day slot.
func (d *Detector) parseBaselines(values []string) map[string]stat {
	out := map[string]stat{}
	for i, m := range metricNames {
		for j := range 2 {
			k := j*len(metricNames) + i
			if k >= len(values) || values[k] == "" {
				continue
			}
			if st := parseStat(values[k]); st.n >= int64(d.cfg.MinSamples) {
				out[m] = st
				break
			}
		}
	}
	return out
}

// alerter raises the alerts of one subject for one event.
type alerter struct {
	d      *Detector
	s      subject
	parent subject
	at     time.Time
	hour   int64
	env    string
	out    []*ratelimitv1.AnomalyEvent
	err    error
}

func (a *alerter) dedupKey(s subject, kind ratelimitv1.AnomalyKind, detail string) string {
	return a.d.key(s, fmt.Sprintf("al:%d:%d:%s", kind, a.hour, esc(detail)))
}

func (a *alerter) raise(ctx context.Context, kind ratelimitv1.AnomalyKind, metric string, value, mean, sd, score float64, detail, reason string) {
	if a.err != nil {
		return
	}
	d := a.d
	// The same incident seen through the caller's key and its principal is one alert.
	if a.parent.id != "" {
		n, err := d.rdb.Exists(ctx, a.dedupKey(a.parent, kind, detail)).Result()
		if err != nil {
			a.err = fmt.Errorf("dedup alert: %w", err)
			return
		}
		if n > 0 {
			d.suppressed.WithLabelValues("duplicate").Inc()
			return
		}
	}
	ok, err := d.rdb.SetNX(ctx, a.dedupKey(a.s, kind, detail), 1, 3*time.Hour).Result()
	if err != nil {
		a.err = fmt.Errorf("dedup alert: %w", err)
		return
	}
	if !ok {
		d.suppressed.WithLabelValues("duplicate").Inc()
		return
	}
	rk := a.d.key(a.s, "ar:"+strconv.FormatInt(a.hour, 10))
	pipe := d.rdb.TxPipeline()
	cnt := pipe.Incr(ctx, rk)
	pipe.Expire(ctx, rk, 2*time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		a.err = fmt.Errorf("rate limit alert: %w", err)
		return
	}
	if cnt.Val() > d.cfg.MaxAlertsPerHour {
		d.suppressed.WithLabelValues("rate_limited").Inc()
		return
	}
	ev := &ratelimitv1.AnomalyEvent{
		EventId: ulid.MustNew(ulid.Timestamp(a.at), ulid.DefaultEntropy()).String(),
		Time:    timestamppb.New(a.at), Kind: kind, SubjectKind: a.s.kind, SubjectId: a.s.id,
		Metric: metric, Value: value, BaselineMean: mean, BaselineStddev: sd, Score: score,
		Reason: reason, Environment: a.env, Detail: detail,
	}
	principal := ""
	if a.s.kind == "principal" {
		principal = a.s.id
	} else {
		principal = a.parent.id
	}
	if err := d.store(ctx, ev, principal); err != nil {
		a.err = err
		return
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		a.err = err
		return
	}
	if err := d.pub.Publish(ctx, AnomalySubject, ev.GetEventId(), data); err != nil {
		// Let a redelivery of the event raise it again.
		_ = d.rdb.Del(ctx, a.dedupKey(a.s, kind, detail)).Err()
		a.err = fmt.Errorf("publish alert: %w", err)
		return
	}
	d.alerts.WithLabelValues(strings.ToLower(strings.TrimPrefix(kind.String(), "ANOMALY_KIND_"))).Inc()
	d.log.InfoContext(ctx, "anomaly alert", "kind", kind.String(), "subject_kind", a.s.kind, "metric", metric, "score", score)
	a.out = append(a.out, ev)
}
