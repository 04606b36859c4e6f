package anomaly

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/events"
)

// monday is 2026-03-02 00:00 UTC, a Monday.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

type harness struct {
	t   testing.TB
	d   *Detector
	js  jetstream.JetStream
	rng *rand.Rand
	seq int
	// batch > 0 sends events through ObserveBatch, that many at a time.
	batch int
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	rdb, prefix := platformtest.Redis(t)
	return newHarnessOn(t, rdb, prefix, cfg)
}

func newHarnessOn(t testing.TB, rdb redis.Cmdable, prefix string, cfg Config) *harness {
	t.Helper()
	_, js := platformtest.NATS(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>", "bulwark.ratelimit.v1.>"},
	}); err != nil {
		t.Fatal(err)
	}
	d, err := New(Params{Redis: rdb, Publisher: events.NewPublisher(js), Prefix: prefix, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, d: d, js: js, rng: rand.New(rand.NewPCG(7, 11))}
}

type call struct {
	model, provider string
	decision        auditv1.Decision
	injection       float64
}

func normal() call {
	return call{model: "gpt-4o", provider: "openai", decision: auditv1.Decision_DECISION_ALLOWED}
}

// observe sends n calls spread over the hour starting at hour.
func (h *harness) observe(hour time.Time, n int, c call) []*ratelimitv1.AnomalyEvent {
	h.t.Helper()
	var evs []*auditv1.AuditEvent
	for i := range n {
		h.seq++
		in := int64(200 + h.rng.IntN(300))
		outTok := int64(100 + h.rng.IntN(300))
		findings := map[string]int32{}
		if h.rng.IntN(10) == 0 {
			findings["EMAIL"] = 1
		}
		ev := &auditv1.AuditEvent{
			EventId: fmt.Sprintf("ev-%d", h.seq), Time: timestamppb.New(hour.Add(time.Duration(i) * time.Hour / time.Duration(n+1))),
			Environment: "prod", SourceService: "gateway",
			Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{
				RequestId: fmt.Sprintf("r-%d", h.seq), PrincipalId: "alice", TeamId: "t1", ApiKeyId: "key-a",
				ModelRequested: c.model, ModelServed: c.model, Provider: c.provider, Decision: c.decision,
				InputTokens: in, OutputTokens: outTok, CostMicros: in*3 + outTok*10, Findings: findings,
				InjectionScore: c.injection,
			}},
		}
		evs = append(evs, ev)
	}
	return h.observeAll(evs)
}

// observeAll hands evs to the detector, h.batch at a time (one when unset),
// and fails the test on any event's error.
func (h *harness) observeAll(evs []*auditv1.AuditEvent) []*ratelimitv1.AnomalyEvent {
	h.t.Helper()
	size := max(h.batch, 1)
	var raised []*ratelimitv1.AnomalyEvent
	for len(evs) > 0 {
		k := min(size, len(evs))
		a, errs := h.d.ObserveBatch(context.Background(), evs[:k])
		for _, err := range errs {
			if err != nil {
				h.t.Fatal(err)
			}
		}
		raised = append(raised, a...)
		evs = evs[k:]
	}
	return raised
}

// normalWeek replays office-hours usage (weekdays 09:00-17:59, 16-24 calls an hour).
func (h *harness) normalWeek(start time.Time) []*ratelimitv1.AnomalyEvent {
	var out []*ratelimitv1.AnomalyEvent
	for day := range 5 {
		for hr := 9; hr < 18; hr++ {
			out = append(out, h.observe(start.AddDate(0, 0, day).Add(time.Duration(hr)*time.Hour), 16+h.rng.IntN(9), normal())...)
		}
	}
	return out
}

func kinds(alerts []*ratelimitv1.AnomalyEvent) []string {
	var k []string
	for _, a := range alerts {
		k = append(k, fmt.Sprintf("%s/%s/%s", a.GetKind(), a.GetSubjectKind(), a.GetMetric()))
	}
	return k
}

func TestDetector_ReplayedWeekThenSpikeNewModelAndOffHoursRaiseOneAlertEach(t *testing.T) {
	replayWeekThenIncidents(t, newHarness(t, Config{}))
}

// On a Redis Cluster every script and transaction touches one subject's keys,
// which share a hash tag; the alert index is a key of its own.
func TestDetector_RunsOnARedisCluster(t *testing.T) {
	rdb, prefix := platformtest.RedisCluster(t)
	replayWeekThenIncidents(t, newHarnessOn(t, rdb, prefix, Config{}))
}

// Events taken in batches (as the consumer hands them over) raise exactly the
// alerts they raise one by one: a batch that opens a new hour folds the hours
// before into the baselines, and its later events are judged against them.
func TestDetector_BatchedEventsRaiseTheSameAlerts(t *testing.T) {
	h := newHarness(t, Config{})
	h.batch = 7
	replayWeekThenIncidents(t, h)
}

// The first event of an hour folds the hours before it into the baselines,
// and when the subject was last seen a day earlier that fold feeds this hour's
// own hour-of-day slot. Later events of the same batch were counted with the
// baselines from before the fold; they must be judged with the new ones, as
// they would be one by one: here the fold completes the slot's third sample,
// and the hour's fifth call is out of band only against that baseline.
func TestDetector_BatchJudgesLaterEventsAgainstTheHourItsFirstEventFolded(t *testing.T) {
	alerts := func(batch int) []string {
		h := newHarness(t, Config{Learning: time.Hour})
		h.batch = batch
		for day := range 3 {
			if a := h.observe(monday.AddDate(0, 0, day).Add(10*time.Hour), 1, normal()); len(a) != 0 {
				t.Fatalf("day %d raised %v", day, kinds(a))
			}
		}
		return kinds(h.observe(monday.AddDate(0, 0, 3).Add(10*time.Hour), 6, normal()))
	}
	one, batched := alerts(1), alerts(6)
	if len(one) == 0 || fmt.Sprint(one) != fmt.Sprint(batched) {
		t.Fatalf("one by one raised %v, in one batch %v; want the same out-of-band alerts", one, batched)
	}
}

func replayWeekThenIncidents(t *testing.T, h *harness) {
	t.Helper()
	if a := h.normalWeek(monday); len(a) != 0 {
		t.Fatalf("learning week raised %v", kinds(a))
	}
	if a := h.normalWeek(monday.AddDate(0, 0, 7)); len(a) != 0 {
		t.Fatalf("a normal week after learning raised %v; want none", kinds(a))
	}
	week3 := monday.AddDate(0, 0, 14)

	h.observe(week3.Add(9*time.Hour), 20, normal())
	spike := h.observe(week3.Add(10*time.Hour), 300, normal())
	if len(spike) != 1 || spike[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_OUT_OF_BAND || spike[0].GetSubjectKind() != "principal" {
		t.Fatalf("spike raised %v; want exactly one out-of-band alert", kinds(spike))
	}
	if s := spike[0]; s.GetScore() < 4 || s.GetValue() <= s.GetBaselineMean() || s.GetReason() == "" {
		t.Fatalf("spike alert %+v", s)
	}

	tue := week3.AddDate(0, 0, 1).Add(11 * time.Hour)
	got := h.observe(tue, 10, normal())
	got = append(got, h.observe(tue.Add(20*time.Minute), 1, call{model: "gpt-4.1", provider: "openai", decision: auditv1.Decision_DECISION_ALLOWED})...)
	got = append(got, h.observe(tue.Add(30*time.Minute), 10, normal())...)
	if len(got) != 1 || got[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_NEW_MODEL || got[0].GetDetail() != "gpt-4.1" {
		t.Fatalf("new model raised %v; want exactly one new-model alert", kinds(got))
	}

	offHours := h.observe(week3.AddDate(0, 0, 2).Add(3*time.Hour), 40, normal())
	if len(offHours) != 1 || offHours[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_OFF_HOURS {
		t.Fatalf("off-hours burst raised %v; want exactly one off-hours alert", kinds(offHours))
	}

	// Back to normal: nothing more.
	if a := h.observe(week3.AddDate(0, 0, 3).Add(14*time.Hour), 20, normal()); len(a) != 0 {
		t.Fatalf("normal hour after the incidents raised %v", kinds(a))
	}

	// Every alert was published once with its id as Nats-Msg-Id, and is listed newest first.
	all := append(append(spike, got...), offHours...)
	s, err := h.js.Stream(context.Background(), "BULWARK_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	if info.State.Msgs != uint64(len(all)) {
		t.Fatalf("stream holds %d alerts; want %d", info.State.Msgs, len(all))
	}
	last, _ := s.GetLastMsgForSubject(context.Background(), AnomalySubject)
	if last.Header.Get("Nats-Msg-Id") != offHours[0].GetEventId() {
		t.Fatalf("last alert msg id %q; want %q", last.Header.Get("Nats-Msg-Id"), offHours[0].GetEventId())
	}
	var pub ratelimitv1.AnomalyEvent
	if err := proto.Unmarshal(last.Data, &pub); err != nil || pub.GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_OFF_HOURS {
		t.Fatalf("published alert: %v %v", err, pub.GetKind())
	}
	listed, next, err := h.d.List(context.Background(), ListQuery{PrincipalID: "alice", PageSize: 2})
	if err != nil || len(listed) != 2 || next == "" {
		t.Fatalf("list: %v %d %q", err, len(listed), next)
	}
	if listed[0].GetEventId() != offHours[0].GetEventId() || listed[1].GetEventId() != got[0].GetEventId() {
		t.Fatalf("listed %v; want newest first", kinds(listed))
	}
	rest, next, err := h.d.List(context.Background(), ListQuery{PrincipalID: "alice", PageToken: next})
	if err != nil || len(rest) != 1 || next != "" || rest[0].GetEventId() != spike[0].GetEventId() {
		t.Fatalf("second page: %v %v %q", err, kinds(rest), next)
	}
	if since, _, _ := h.d.List(context.Background(), ListQuery{Since: tue}); len(since) != 2 {
		t.Fatalf("since filter returned %d; want 2", len(since))
	}
}

func TestDetector_BurstsOfDenialsAndInjectionsRaiseOneAlertEach(t *testing.T) {
	h := newHarness(t, Config{})
	at := monday.Add(10 * time.Hour)
	denied := call{model: "gpt-4o", provider: "openai", decision: auditv1.Decision_DECISION_DENIED_RATE_LIMIT}
	// Observe spreads the calls over the hour; keep them inside one 5-minute window.
	var a []*ratelimitv1.AnomalyEvent
	for i := range 15 {
		a = append(a, h.observe(at.Add(time.Duration(i)*10*time.Second), 1, denied)...)
	}
	if len(a) != 1 || a[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_DENIAL_BURST {
		t.Fatalf("15 denials raised %v; want one denial burst", kinds(a))
	}
	flagged := normal()
	flagged.injection = 0.95
	a = nil
	for i := range 5 {
		a = append(a, h.observe(at.Add(3*time.Minute+time.Duration(i)*time.Second), 1, flagged)...)
	}
	if len(a) != 1 || a[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_INJECTION_BURST {
		t.Fatalf("5 injection-flagged calls raised %v; want one injection burst", kinds(a))
	}
	// A few denials spread out are no burst.
	h2 := newHarness(t, Config{})
	a = nil
	for i := range 9 {
		a = append(a, h2.observe(at.Add(time.Duration(i)*10*time.Minute), 1, denied)...)
	}
	if len(a) != 0 {
		t.Fatalf("spread-out denials raised %v", kinds(a))
	}
}

func TestDetector_RateLimitsAlertsPerSubject(t *testing.T) {
	h := newHarness(t, Config{MaxAlertsPerHour: 2, Learning: time.Nanosecond})
	at := monday.Add(10 * time.Hour)
	h.observe(at, 1, normal())
	var a []*ratelimitv1.AnomalyEvent
	for i := range 6 {
		a = append(a, h.observe(at.Add(time.Minute), 1, call{model: fmt.Sprintf("model-%d", i), provider: "openai", decision: auditv1.Decision_DECISION_ALLOWED})...)
	}
	if len(a) != 2 {
		t.Fatalf("%d alerts in an hour with a cap of 2: %v", len(a), kinds(a))
	}
}

func TestDetector_RedeliveredEventIsNotCountedTwice(t *testing.T) {
	h := newHarness(t, Config{})
	ev := &auditv1.AuditEvent{EventId: "dup", Time: timestamppb.New(monday.Add(10 * time.Hour)),
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{PrincipalId: "bob", InputTokens: 5}}}
	for range 3 {
		if _, err := h.d.Observe(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.d.rdb.HGet(context.Background(), h.d.key(subject{"principal", "bob"}, fmt.Sprintf("h:%d", monday.Add(10*time.Hour).Unix()/3600)), "requests").Int()
	if err != nil || n != 1 {
		t.Fatalf("requests counted %d (%v); want 1", n, err)
	}
	if _, err := h.d.Observe(context.Background(), &auditv1.AuditEvent{EventId: "x"}); err == nil {
		t.Fatal("an event without llm_call was accepted")
	}
}

// flaky fails its first n publishes, as a NATS outage would.
type flaky struct {
	Publisher
	n int
}

func (f *flaky) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	if f.n > 0 {
		f.n--
		return fmt.Errorf("nats: no responders available for request")
	}
	return f.Publisher.Publish(ctx, subject, msgID, data)
}

func TestDetector_AlertThatFailedToPublishIsRaisedOnRedeliveryWithoutRecounting(t *testing.T) {
	h := newHarness(t, Config{Learning: time.Nanosecond})
	at := monday.Add(10 * time.Hour)
	h.observe(at, 1, normal())
	h.d.pub = &flaky{Publisher: h.d.pub, n: 1}
	ev := &auditv1.AuditEvent{EventId: "new-model", Time: timestamppb.New(at.Add(time.Minute)), Environment: "prod",
		Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{PrincipalId: "alice", ApiKeyId: "key-a",
			ModelServed: "o3", Provider: "openai", InputTokens: 5, Decision: auditv1.Decision_DECISION_ALLOWED}}}
	if _, err := h.d.Observe(context.Background(), ev); err == nil {
		t.Fatal("a failed alert publish was not reported, so the event would not be redelivered")
	}
	a, err := h.d.Observe(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || a[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_NEW_MODEL || a[0].GetDetail() != "o3" {
		t.Fatalf("redelivery raised %v; want the one new-model alert", kinds(a))
	}
	if a, _ := h.d.Observe(context.Background(), ev); len(a) != 0 {
		t.Fatalf("a third delivery raised %v again", kinds(a))
	}
	for _, s := range []subject{{"principal", "alice"}, {"api_key", "key-a"}} {
		n, err := h.d.rdb.HGet(context.Background(), h.d.key(s, fmt.Sprintf("h:%d", at.Unix()/3600)), "requests").Int()
		if err != nil || n != 2 {
			t.Errorf("%s: %d requests counted (%v); want 2 (the first call and this one, once)", s.kind, n, err)
		}
	}
}

func TestDetector_CountsAfterRedisLostItsScripts(t *testing.T) {
	h := newHarness(t, Config{})
	at := monday.Add(10 * time.Hour)
	h.observe(at, 1, normal())
	if err := h.d.rdb.ScriptFlush(context.Background()).Err(); err != nil { // as after a restart or failover
		t.Fatal(err)
	}
	h.observe(at, 1, normal())
	n, err := h.d.rdb.HGet(context.Background(), h.d.key(subject{"api_key", "key-a"}, fmt.Sprintf("h:%d", at.Unix()/3600)), "requests").Int()
	if err != nil || n != 2 {
		t.Fatalf("%d requests counted after SCRIPT FLUSH (%v); want 2", n, err)
	}
}
