package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	routerv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/router/v1/routerv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/platform/platformtest"
	"github.com/bulwarkhq/bulwark/services/router/internal/adminaudit"
	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/keys"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
	"github.com/bulwarkhq/bulwark/services/router/internal/server"
	"github.com/bulwarkhq/bulwark/services/router/internal/upstream"
	"github.com/bulwarkhq/bulwark/tools/provsim/sim"
)

type staticKeys struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *staticKeys) Key(_ context.Context, env, provider, name string) (keys.Key, error) {
	if name == "" {
		name = keys.DefaultField
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[env+"/"+provider+"/"+name]
	if !ok {
		return keys.Key{}, keys.ErrUnavailable
	}
	return keys.NewKey(v), nil
}

func (s *staticKeys) available(ctx context.Context, env, provider string) bool {
	_, err := s.Key(ctx, env, provider, "")
	return err == nil
}

type fixture struct {
	url    string
	oa, an *sim.Sim
	js     jetstream.JetStream
	cat    *catalog.Catalog
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{oa: sim.New(sim.Params{}), an: sim.New(sim.Params{})}
	oaTS, anTS := httptest.NewServer(f.oa), httptest.NewServer(f.an)
	t.Cleanup(oaTS.Close)
	t.Cleanup(anTS.Close)
	year := time.Now().AddDate(1, 0, 0)
	cat, err := catalog.New(catalog.Params{Snapshot: catalog.Snapshot{
		Providers: []catalog.Provider{
			{Name: "openai", Kind: catalog.KindOpenAI, BaseURL: oaTS.URL + "/v1", Enabled: true, Vendor: catalog.Vendor{LegalName: "OpenAI", SOC2ReportExpiry: year, DPASigned: true}},
			{Name: "anthropic", Kind: catalog.KindAnthropic, BaseURL: anTS.URL, Enabled: true, Vendor: catalog.Vendor{LegalName: "Anthropic", SOC2ReportExpiry: time.Now().AddDate(0, 0, 10).Add(time.Hour)}},
		},
		Routes: []catalog.Route{
			{Alias: "gpt-4o", Deployments: []catalog.Deployment{{Name: "oa", Provider: "openai", Model: "gpt-4o"}}},
			{Alias: "claude", Deployments: []catalog.Deployment{{Name: "an", Provider: "anthropic", Model: "claude-sonnet-4-5"}}},
			{Alias: "emb", Deployments: []catalog.Deployment{{Name: "oa-emb", Provider: "openai", Model: "text-embedding-3-small"}}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.cat = cat
	ks := &staticKeys{m: map[string]string{"dev/openai/api_key": "sk-oa", "dev/anthropic/api_key": "sk-an"}}
	rt, err := routing.New(routing.Params{Catalog: cat, Keys: ks, Upstream: upstream.New(upstream.Params{})})
	if err != nil {
		t.Fatal(err)
	}
	_, js := platformtest.NATS(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "BULWARK_AUDIT", Subjects: []string{"bulwark.audit.v1.>"}}); err != nil {
		t.Fatal(err)
	}
	f.js = js
	log := slog.New(slog.DiscardHandler)
	h, err := server.New(server.Params{Router: rt, Catalog: cat, Keys: ks.available, Logger: log,
		Audit: adminaudit.New(adminaudit.Params{JS: js, Logger: log})})
	if err != nil {
		t.Fatal(err)
	}
	path, handler := routerv1connect.NewRouterServiceHandler(h, platform.HandlerOptions(platform.InterceptorParams{Logger: log})...)
	mux := http.NewServeMux()
	mux.Handle(path, handler)
	f.url = platformtest.Serve(t, mux)
	return f
}

func clients(f *fixture) map[string]routerv1connect.RouterServiceClient {
	return map[string]routerv1connect.RouterServiceClient{
		"connect": routerv1connect.NewRouterServiceClient(platform.HTTPClient(), f.url),
		"grpc":    routerv1connect.NewRouterServiceClient(platform.HTTPClient(), f.url, connect.WithGRPC()),
	}
}

func call(model, text string, format routerv1.ApiFormat) *routerv1.Call {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"` + text + `"}]}`
	if format == routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES {
		body = `{"model":"` + model + `","max_tokens":64,"messages":[{"role":"user","content":"` + text + `"}]}`
	}
	return &routerv1.Call{RequestId: "r1", Environment: "dev", Format: format, Body: []byte(body)}
}

func TestComplete_BothProtocolsReturnTheAnswerWithUsage(t *testing.T) {
	f := newFixture(t)
	for name, c := range clients(f) {
		t.Run(name, func(t *testing.T) {
			res, err := c.Complete(context.Background(), connect.NewRequest(&routerv1.CompleteRequest{Call: call("claude", "hello there", routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT)}))
			if err != nil {
				t.Fatal(err)
			}
			m := res.Msg
			if m.Status != 200 || m.Provider != "anthropic" || m.Deployment != "an" || m.ModelServed != "claude-sonnet-4-5" || m.Attempts != 1 ||
				m.Usage.GetInputTokens() != 2 || m.Usage.GetOutputTokens() != 2 || gjson.GetBytes(m.Body, "choices.0.message.content").Str != "hello there" {
				t.Fatalf("res %+v %s", m, m.Body)
			}
		})
	}
}

func TestStreamComplete_BothProtocolsRelayEventsWithHeadFirstAndUsageLast(t *testing.T) {
	f := newFixture(t)
	for name, c := range clients(f) {
		t.Run(name, func(t *testing.T) {
			st, err := c.StreamComplete(context.Background(), connect.NewRequest(&routerv1.StreamCompleteRequest{Call: call("gpt-4o", "one two three", routerv1.ApiFormat_API_FORMAT_ANTHROPIC_MESSAGES)}))
			if err != nil {
				t.Fatal(err)
			}
			var msgs []*routerv1.StreamCompleteResponse
			for st.Receive() {
				msgs = append(msgs, proto.Clone(st.Msg()).(*routerv1.StreamCompleteResponse))
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			first, last := msgs[0], msgs[len(msgs)-1]
			if first.Event != "message_start" || first.Provider != "openai" || first.Status != 200 || last.Event != "message_stop" || last.Usage.GetOutputTokens() != 3 {
				t.Fatalf("first %+v last %+v", first, last)
			}
			var text strings.Builder
			for _, m := range msgs {
				text.WriteString(gjson.GetBytes(m.Data, "delta.text").Str)
			}
			if text.String() != "one two three" {
				t.Fatalf("text %q", text.String())
			}
		})
	}
}

func TestEmbed_BothProtocols(t *testing.T) {
	f := newFixture(t)
	for name, c := range clients(f) {
		t.Run(name, func(t *testing.T) {
			res, err := c.Embed(context.Background(), connect.NewRequest(&routerv1.EmbedRequest{Environment: "dev", Body: []byte(`{"model":"emb","input":"a b c"}`)}))
			if err != nil || res.Msg.Status != 200 || res.Msg.Usage.GetInputTokens() != 3 || res.Msg.Provider != "openai" {
				t.Fatalf("%v %+v", err, res)
			}
		})
	}
}

func TestErrors_MapToCodesWithReasons(t *testing.T) {
	f := newFixture(t)
	for name, c := range clients(f) {
		t.Run(name, func(t *testing.T) {
			health := call("claude", "x", routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT)
			health.DataClasses = []string{"PII.HEALTH"}
			for _, tc := range []struct {
				call *routerv1.Call
				code connect.Code
				text string
			}{
				{health, connect.CodeFailedPrecondition, "lacks a signed BAA required for PII.HEALTH"},
				{call("nope", "x", routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT), connect.CodeNotFound, "unknown model"},
				{&routerv1.Call{Environment: "dev", Format: routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT, Body: []byte("{")}, connect.CodeInvalidArgument, "not valid JSON"},
				{&routerv1.Call{Environment: "prod", Format: routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT, Body: call("gpt-4o", "x", 1).Body}, connect.CodeUnavailable, "no provider key"},
			} {
				_, err := c.Complete(context.Background(), connect.NewRequest(&routerv1.CompleteRequest{Call: tc.call}))
				if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.text) {
					t.Errorf("got %v, want %v containing %q", err, tc.code, tc.text)
				}
			}
		})
	}
}

func TestListProviders_ShowsDaysUntilExpiryAndRoutability(t *testing.T) {
	f := newFixture(t)
	for name, c := range clients(f) {
		t.Run(name, func(t *testing.T) {
			res, err := c.ListProviders(context.Background(), connect.NewRequest(&routerv1.ListProvidersRequest{Environment: "dev"}))
			if err != nil {
				t.Fatal(err)
			}
			ps := res.Msg.Providers
			if len(ps) != 2 || ps[0].Name != "anthropic" || ps[0].DaysUntilReportExpiry != 10 || !ps[0].KeyAvailable || !ps[0].Routable || ps[1].Vendor.GetLegalName() != "OpenAI" {
				t.Fatalf("providers %+v", ps)
			}
			res, err = c.ListProviders(context.Background(), connect.NewRequest(&routerv1.ListProvidersRequest{Environment: "prod"}))
			if err != nil || res.Msg.Providers[0].Routable || !strings.Contains(res.Msg.Providers[0].UnroutableReason, "no key") {
				t.Fatalf("%v %+v", err, res.Msg.Providers[0])
			}
		})
	}
}

func readAudit(t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), "BULWARK_AUDIT", jetstream.OrderedConsumerConfig{FilterSubjects: []string{adminaudit.Subject}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

func TestAdminRPCs_ChangeRoutingAndPublishAuditEvents(t *testing.T) {
	f := newFixture(t)
	c := clients(f)["grpc"]
	ctx := context.Background()

	req := connect.NewRequest(&routerv1.SetProviderEnabledRequest{Name: "anthropic", Enabled: false, Reason: "vendor breach"})
	req.Header().Set("X-Bulwark-Actor", "user:alice") // a forged actor header is ignored
	res, err := c.SetProviderEnabled(ctx, req)
	if err != nil || res.Msg.Provider.Enabled || res.Msg.Provider.Routable {
		t.Fatalf("%v %+v", err, res)
	}
	_, err = c.Complete(ctx, connect.NewRequest(&routerv1.CompleteRequest{Call: call("claude", "x", routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT)}))
	if connect.CodeOf(err) != connect.CodeUnavailable || f.an.RequestCount() != 0 {
		t.Fatalf("disabled provider still routed: %v", err)
	}

	pr := connect.NewRequest(&routerv1.PutProviderRequest{Provider: &routerv1.Provider{Name: "compat", Kind: routerv1.ProviderKind_PROVIDER_KIND_OPENAI,
		BaseUrl: "http://127.0.0.1:1/v1", Enabled: true, Vendor: &routerv1.VendorFacts{LegalName: "Local vLLM", Soc2ReportExpiry: timestamppb.New(time.Now().AddDate(0, 1, 0))}}})
	pr.Header().Set("X-Bulwark-Actor", "user:bob")
	if _, err := c.PutProvider(ctx, pr); err != nil {
		t.Fatal(err)
	}
	rr := connect.NewRequest(&routerv1.PutRouteRequest{Route: &routerv1.Route{Alias: "claude", Deployments: []*routerv1.Deployment{
		{Name: "oa", Provider: "openai", Model: "gpt-4o"}}}})
	if _, err := c.PutRoute(ctx, rr); err != nil {
		t.Fatal(err)
	}
	res2, err := c.Complete(ctx, connect.NewRequest(&routerv1.CompleteRequest{Call: call("claude", "rerouted", routerv1.ApiFormat_API_FORMAT_OPENAI_CHAT)}))
	if err != nil || res2.Msg.Provider != "openai" {
		t.Fatalf("%v %+v", err, res2)
	}
	if _, err := c.PutRoute(ctx, connect.NewRequest(&routerv1.PutRouteRequest{Route: &routerv1.Route{Alias: "bad"}})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("err = %v", err)
	}

	routes, err := c.ListRoutes(ctx, connect.NewRequest(&routerv1.ListRoutesRequest{}))
	if err != nil || len(routes.Msg.Routes) != 3 || routes.Msg.Routes[0].Alias != "claude" || routes.Msg.Routes[0].Deployments[0].Provider != "openai" {
		t.Fatalf("%v %+v", err, routes)
	}
	models, err := c.ListModels(ctx, connect.NewRequest(&routerv1.ListModelsRequest{Environment: "dev"}))
	if err != nil || len(models.Msg.Models) != 3 || models.Msg.Models[0].Id != "claude" || models.Msg.Models[0].OwnedBy != "openai" {
		t.Fatalf("%v %+v", err, models)
	}

	msgs := readAudit(t, f.js, 3)
	if len(msgs) != 3 {
		t.Fatalf("%d audit events", len(msgs))
	}
	want := []struct{ action, target, actor string }{
		{"router.provider.disable", "anthropic", "unknown"}, {"router.provider.put", "compat", "unknown"}, {"router.route.put", "claude", "unknown"},
	}
	for i, m := range msgs {
		var ev auditv1.AuditEvent
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		a := ev.GetAdminAction()
		if m.Headers().Get(jetstream.MsgIDHeader) != ev.EventId || ev.SourceService != "router" || a.Action != want[i].action || a.Target != want[i].target || a.Actor != want[i].actor {
			t.Fatalf("event %d: %+v id header %q", i, &ev, m.Headers().Get(jetstream.MsgIDHeader))
		}
		if !strings.HasPrefix(a.AfterHash, "sha256:") {
			t.Fatalf("after hash %q", a.AfterHash)
		}
		if i == 0 && (a.Reason != "vendor breach" || a.BeforeHash == "" || a.BeforeHash == a.AfterHash) {
			t.Fatalf("disable event %+v", a)
		}
		if i == 1 && a.BeforeHash != "" {
			t.Fatalf("new provider has a before hash: %+v", a)
		}
	}
	if _, err := c.SetProviderEnabled(ctx, connect.NewRequest(&routerv1.SetProviderEnabledRequest{Name: "ghost"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("err = %v", err)
	}
}
