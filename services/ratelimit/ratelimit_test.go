package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/ratelimit"
)

type rig struct {
	url     string
	js      jetstream.JetStream
	clients map[string]ratelimitv1connect.RateLimitServiceClient
}

func defaults(t testing.TB) ratelimit.Config {
	var cfg ratelimit.Config
	if err := platform.LoadConfig("BULWARK_RATELIMIT_TEST_NOT_SET_", &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start mounts the service on a real HTTP/2 server, with real Redis and NATS,
// and returns a Connect and a gRPC client.
func start(t testing.TB, rdb interface {
	redis.Scripter
	redis.Cmdable
}, prefix string, mutate func(*ratelimit.Config)) *rig {
	t.Helper()
	_, js := platformtest.NATS(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>", "bulwark.ratelimit.v1.>"},
	}); err != nil {
		t.Fatal(err)
	}
	cfg := defaults(t)
	cfg.KeyPrefix = prefix
	cfg.StoreTimeout = 10 * time.Second // tests assert behaviour, not speed, on a shared machine
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	reg := platform.NewRegistry()
	svc, err := ratelimit.New(context.Background(), ratelimit.Params{Config: cfg, Logger: log, Redis: rdb, JS: js, Registerer: reg,
		HandlerOptions: platform.HandlerOptions(platform.InterceptorParams{Logger: log, Metrics: platform.NewRPCMetrics(reg)})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv, err := platform.NewServer(platform.ServerParams{Name: "ratelimit", Logger: log, Registry: reg,
		Services: []platform.Service{{Name: svc.Name, Path: svc.Path, Handler: svc.Handler}}})
	if err != nil {
		t.Fatal(err)
	}
	url := platformtest.Serve(t, srv.Handler())
	return &rig{url: url, js: js, clients: map[string]ratelimitv1connect.RateLimitServiceClient{
		"connect": ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), url),
		"grpc":    ratelimitv1connect.NewRateLimitServiceClient(platform.HTTPClient(), url, connect.WithGRPC()),
	}}
}

func limits() []*ratelimitv1.LimitSpec {
	return []*ratelimitv1.LimitSpec{
		{Name: "rpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY},
			Limit: 2, Burst: 1, Period: durationpb.New(time.Hour)},
		{Name: "tokens", Kind: ratelimitv1.LimitKind_LIMIT_KIND_TOKENS, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_PRINCIPAL},
			Limit: 10_000, CalendarPeriod: "day"},
		{Name: "spend", Kind: ratelimitv1.LimitKind_LIMIT_KIND_SPEND, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_TEAM},
			Limit: 1_000_000, CalendarPeriod: "month"},
		{Name: "inflight", Kind: ratelimitv1.LimitKind_LIMIT_KIND_CONCURRENCY, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY}, Limit: 5},
	}
}

func subject(key string) *ratelimitv1.Subject {
	return &ratelimitv1.Subject{ApiKeyId: key, PrincipalId: "p-" + key, TeamId: "t-" + key, Model: "gpt-4o", Provider: "openai", Environment: "prod"}
}

func TestHandler_ReserveSettleReleaseAndUsageOverConnectAndGRPC(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	for proto, c := range r.clients {
		t.Run(proto, func(t *testing.T) {
			ctx := context.Background()
			sub := subject("k-" + proto)
			res, err := c.Reserve(ctx, connect.NewRequest(&ratelimitv1.ReserveRequest{RequestId: "a-" + proto, Subject: sub, Limits: limits(),
				EstimatedInputTokens: 1000, MaxOutputTokens: 1000}))
			if err != nil {
				t.Fatal(err)
			}
			m := res.Msg
			if !m.GetAllowed() || m.GetReservationId() == "" || m.GetReservedTokens() != 2000 || m.GetReservedCostMicros() != 12500 || len(m.GetStatuses()) != 4 {
				t.Fatalf("reserve: %v", m)
			}
			if st := m.GetStatuses()[1]; st.GetRemaining() != 8000 || st.GetKind() != ratelimitv1.LimitKind_LIMIT_KIND_TOKENS {
				t.Fatalf("token status %v", st)
			}
			set, err := c.Settle(ctx, connect.NewRequest(&ratelimitv1.SettleRequest{ReservationId: m.GetReservationId(), InputTokens: 1000, OutputTokens: 100}))
			if err != nil || !set.Msg.GetSettled() || set.Msg.GetCostMicros() != 3500 {
				t.Fatalf("settle: %v %v", err, set)
			}
			res2, err := c.Reserve(ctx, connect.NewRequest(&ratelimitv1.ReserveRequest{RequestId: "b-" + proto, Subject: sub, Limits: limits(), EstimatedInputTokens: 10}))
			if err != nil || !res2.Msg.GetAllowed() {
				t.Fatalf("second reserve: %v %v", err, res2)
			}
			rel, err := c.Release(ctx, connect.NewRequest(&ratelimitv1.ReleaseRequest{ReservationId: res2.Msg.GetReservationId()}))
			if err != nil || !rel.Msg.GetReleased() {
				t.Fatalf("release: %v %v", err, rel)
			}
			use, err := c.GetUsage(ctx, connect.NewRequest(&ratelimitv1.GetUsageRequest{Subject: sub, Limits: limits()}))
			if err != nil {
				t.Fatal(err)
			}
			got := use.Msg.GetStatuses()
			if got[1].GetRemaining() != 10_000-1100 || got[2].GetRemaining() != 1_000_000-3500 || got[3].GetRemaining() != 5 {
				t.Fatalf("usage: %v", got)
			}
		})
	}
}

func TestHandler_DenialSaysWhichLimitAndIsAnnounced(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	ctx := context.Background()
	c := r.clients["grpc"]
	sub := subject("deny")
	for i := range 3 {
		res, err := c.Reserve(ctx, connect.NewRequest(&ratelimitv1.ReserveRequest{RequestId: fmt.Sprint("d", i), Subject: sub, Limits: limits()}))
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			continue
		}
		m := res.Msg
		if m.GetAllowed() || m.GetDeniedBy() != "rpm" || m.GetRetryAfter().AsDuration() > 30*time.Minute || m.GetRetryAfter().AsDuration() < 29*time.Minute || m.GetReservationId() != "" {
			t.Fatalf("third request: %v", m)
		}
	}
	cons, err := r.js.OrderedConsumer(ctx, "BULWARK_AUDIT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bulwark.ratelimit.v1.limit_exceeded"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no limit_exceeded event: %v", err)
	}
	var ev ratelimitv1.LimitExceededEvent
	if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetRequestId() != "d2" || ev.GetLimit().GetName() != "rpm" || msg.Headers().Get("Nats-Msg-Id") != ev.GetEventId() || ev.GetSubject().GetApiKeyId() != "deny" {
		t.Fatalf("event %v", &ev)
	}
}

func TestHandler_MapsErrorsToCodes(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, nil)
	ctx := context.Background()
	for proto, c := range r.clients {
		_, err := c.Reserve(ctx, connect.NewRequest(&ratelimitv1.ReserveRequest{Subject: subject("x"), Limits: []*ratelimitv1.LimitSpec{{Name: "bad"}}}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("%s: bad limit gave %v", proto, err)
		}
		_, err = c.Settle(ctx, connect.NewRequest(&ratelimitv1.SettleRequest{ReservationId: "r1.bm90LWEtcmVzZXJ2YXRpb24"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("%s: forged reservation gave %v", proto, err)
		}
		_, err = c.ListAlerts(ctx, connect.NewRequest(&ratelimitv1.ListAlertsRequest{PageToken: "nope"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("%s: bad page token gave %v", proto, err)
		}
	}
}

func TestHandler_RedisUnreachableIsUnavailableOrDegradedOnRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dead := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = dead.Close() })
	r := start(t, dead, "x:", func(c *ratelimit.Config) { c.Anomaly = false })
	for proto, c := range r.clients {
		req := &ratelimitv1.ReserveRequest{Subject: subject("u"), Limits: limits()}
		_, err := c.Reserve(context.Background(), connect.NewRequest(req))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("%s: fail closed gave %v", proto, err)
		}
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Message() != "rate limit store unavailable" {
			t.Fatalf("%s: message %q leaks detail", proto, ce.Message())
		}
		req.FailOpen = true
		res, err := c.Reserve(context.Background(), connect.NewRequest(req))
		if err != nil || !res.Msg.GetAllowed() || !res.Msg.GetDegraded() {
			t.Fatalf("%s: fail open gave %v %v", proto, err, res)
		}
	}
}

// A hung Redis (stopped, its socket open) must not hold decisions past the
// store timeout, also when decisions keep arriving and the client has one
// connection: the one holding it gives up at its deadline, which comes before
// that of every decision queued behind it (the pool serves waiters in turn).
func TestHandler_AHungRedisHoldsNoDecisionPastTheStoreTimeout(t *testing.T) {
	srv := platformtest.StartRedisServer(t)
	cfg := defaults(t)
	cfg.Redis = platform.RedisConfig{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: 20 * time.Second, PoolSize: 1}
	cfg.StoreTimeout = 300 * time.Millisecond
	rdb, err := platform.NewRedis(context.Background(), cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	r := start(t, rdb, "hung:", func(c *ratelimit.Config) { c.StoreTimeout = cfg.StoreTimeout; c.Anomaly = false })
	c := r.clients["connect"]
	req := &ratelimitv1.ReserveRequest{Subject: subject("h"), FailOpen: true, Limits: []*ratelimitv1.LimitSpec{{Name: "rph",
		Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Dimensions: []ratelimitv1.Dimension{ratelimitv1.Dimension_DIMENSION_API_KEY},
		Limit: 1000, Burst: 100, Period: durationpb.New(time.Hour)}}}
	if res, err := c.Reserve(context.Background(), connect.NewRequest(req)); err != nil || res.Msg.GetDegraded() {
		t.Fatalf("before the hang: %v %v", res, err)
	}
	if err := srv.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Cmd.Process.Signal(syscall.SIGCONT) })
	const n = 40
	type result struct {
		took time.Duration
		res  *ratelimitv1.ReserveResponse
		err  error
	}
	out := make(chan result, n)
	for range n {
		time.Sleep(20 * time.Millisecond)
		go func() {
			start := time.Now()
			res, err := c.Reserve(context.Background(), connect.NewRequest(req))
			got := result{took: time.Since(start), err: err}
			if err == nil {
				got.res = res.Msg
			}
			out <- got
		}()
	}
	var slowest time.Duration
	for range n {
		got := <-out
		if got.err != nil || !got.res.GetAllowed() || !got.res.GetDegraded() {
			t.Fatalf("a fail-open decision with Redis hung gave %v %v", got.res, got.err)
		}
		slowest = max(slowest, got.took)
	}
	// Without the deadline on the socket a decision would wait for the 20 s
	// read timeout, and the queue behind it too. The bound is generous for a
	// loaded machine.
	if slowest > 5*time.Second {
		t.Fatalf("the slowest decision took %v with a store timeout of %v", slowest, cfg.StoreTimeout)
	}
}

func TestHandler_ListAlertsServesAlertsFromConsumedAuditEvents(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	r := start(t, rdb, prefix, func(c *ratelimit.Config) { c.AnomalyLearning = time.Nanosecond })
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	for i, model := range []string{"gpt-4o", "gpt-4o", "o3"} {
		ev := &auditv1.AuditEvent{EventId: fmt.Sprint("ev", i), Time: timestamppb.New(base.Add(time.Duration(i) * time.Minute)), Environment: "prod",
			Payload: &auditv1.AuditEvent_LlmCall{LlmCall: &auditv1.LlmCall{PrincipalId: "carol", ApiKeyId: "ck", ModelRequested: model, Provider: "openai",
				Decision: auditv1.Decision_DECISION_ALLOWED, InputTokens: 10}}}
		data, _ := proto.Marshal(ev)
		if _, err := r.js.Publish(ctx, "bulwark.audit.v1.llm_call", data, jetstream.WithMsgID(ev.GetEventId())); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer works in the background: wait (bounded) for it to catch up.
	var a []*ratelimitv1.AnomalyEvent
	platformtest.WaitFor(t, 20*time.Second, "an alert listed after the llm_call events were consumed", func(ctx context.Context) error {
		res, err := r.clients["connect"].ListAlerts(ctx, connect.NewRequest(&ratelimitv1.ListAlertsRequest{PrincipalId: "carol"}))
		if err != nil {
			return err
		}
		if a = res.Msg.GetAlerts(); len(a) == 0 {
			return errors.New("no alert yet")
		}
		return nil
	})
	// The first event of a subject teaches; only o3, a model new after learning, alerts.
	if len(a) != 1 || a[0].GetKind() != ratelimitv1.AnomalyKind_ANOMALY_KIND_NEW_MODEL || a[0].GetDetail() != "o3" {
		t.Fatalf("alerts %v", a)
	}
}

func TestService_APIServesInProcessWithoutHTTP(t *testing.T) {
	rdb, prefix := platformtest.Redis(t)
	cfg := defaults(t)
	cfg.KeyPrefix = prefix
	svc, err := ratelimit.New(context.Background(), ratelimit.Params{Config: cfg, Logger: slog.New(slog.DiscardHandler), Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.API.Reserve(context.Background(), connect.NewRequest(&ratelimitv1.ReserveRequest{Subject: subject("inproc"), Limits: limits(), EstimatedInputTokens: 10}))
	if err != nil || !res.Msg.GetAllowed() {
		t.Fatalf("in-process reserve: %v %v", err, res)
	}
	if _, err := svc.API.ListAlerts(context.Background(), connect.NewRequest(&ratelimitv1.ListAlertsRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("without NATS there is no detector: %v", err)
	}
}
