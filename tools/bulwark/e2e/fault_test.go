package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/admin"
	"github.com/bulwarkhq/bulwark/tools/bulwark/internal/auditproof"
)

// shot is one request of the load and its outcome.
type shot struct {
	start, end time.Time
	status     int // 0: no answer (transport error)
	requestID  string
}

// load sends non-streaming chat completions at a fixed rate with at most
// maxInFlight outstanding, until stopped.
type load struct {
	url, key    string
	hc          *http.Client
	rate        int
	maxInFlight int
	mu          sync.Mutex
	shots       []shot
	stop        chan struct{}
	wg          sync.WaitGroup
}

func (l *load) run() {
	l.stop = make(chan struct{})
	sem := make(chan struct{}, l.maxInFlight)
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	l.wg.Go(func() {
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // bounded: never more than maxInFlight outstanding
			}
			n++
			body := fmt.Appendf(nil, `{"model":"gpt-4o","messages":[{"role":"user","content":"load request %d for jane.doe@example.com"}]}`, n)
			l.wg.Go(func() {
				defer func() { <-sem }()
				l.one(body)
			})
		}
	})
}

func (l *load) one(body []byte) {
	s := shot{start: time.Now()}
	req, _ := http.NewRequest(http.MethodPost, l.url+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Content-Type", "application/json")
	if res, err := l.hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		s.status, s.requestID = res.StatusCode, res.Header.Get("x-request-id")
	}
	s.end = time.Now()
	l.mu.Lock()
	l.shots = append(l.shots, s)
	l.mu.Unlock()
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// within returns the statuses of requests that started after from and ended before to.
func (l *load) within(from, to time.Time) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for _, s := range l.shots {
		if s.start.After(from) && s.end.Before(to) {
			out[s.status]++
		}
	}
	return out
}

// fault is one dependency taken down and brought back.
type fault struct {
	name string
	down func(t *testing.T)
	up   func(t *testing.T)
	// want is the only status a request sent while it is down may get (README failure table).
	want int
}

// TestSplit_FaultsUnderLoad_DocumentedBehaviourAndNoAuditLostOrDoubled stops
// Redis, NATS, Vault, one service (redaction) and the provider in turn while a
// bounded load runs, checks each outage gets the behaviour documented in
// services/gateway/README.md, and that after recovery the audit log holds
// exactly one record per answered request: nothing lost, nothing doubled.
func TestSplit_FaultsUnderLoad_DocumentedBehaviourAndNoAuditLostOrDoubled(t *testing.T) {
	sp := startSplit(t)
	sp.setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const principal = "svc_e2e_load"
	key, err := admin.New(sp.HC, sp.IdentityURL, sp.AdminKey).Principal(ctx, principal, "team_e2e", "dev", "app")
	if err != nil {
		t.Fatal(err)
	}
	l := &load{url: sp.URL, key: key, hc: &http.Client{Timeout: 15 * time.Second}, rate: 20, maxInFlight: 8}
	// healthy waits until a request through the whole pipeline succeeds.
	healthy := func(t *testing.T, what string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			p := &load{url: sp.URL, key: key, hc: l.hc}
			p.one([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"probe"}]}`))
			l.mu.Lock()
			l.shots = append(l.shots, p.shots...) // probes are answered requests too
			l.mu.Unlock()
			if p.shots[0].status == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not healthy 45s after %s came back (last status %d)", what, p.shots[0].status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	healthy(t, "start")
	l.run()
	faults := []fault{
		{name: "redis", want: http.StatusServiceUnavailable, // policy rate_limit_failure_mode closed
			down: func(t *testing.T) { sp.redis.stop() }, up: func(t *testing.T) { startDaemon(t, sp.redis) }},
		{name: "nats", want: http.StatusOK, // answers continue; events go to the spool
			down: func(t *testing.T) { sp.nats.stop() }, up: func(t *testing.T) { startDaemon(t, sp.nats) }},
		{name: "vault", want: http.StatusOK, // read at start and cached
			down: func(t *testing.T) {
				if err := sp.vaultDown(true); err != nil {
					t.Fatal(err)
				}
			},
			up: func(t *testing.T) {
				if err := sp.vaultDown(false); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "redaction service", want: http.StatusServiceUnavailable, // fail closed: nothing leaves unredacted
			down: func(t *testing.T) {
				if err := sp.stack.Signal("redaction", 20*time.Second); err != nil {
					t.Fatal(err)
				}
			},
			up: func(t *testing.T) {
				if err := sp.stack.Restart(ctx, "redaction"); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "provider", want: http.StatusBadGateway,
			down: func(t *testing.T) { sp.sim.stop() }, up: func(t *testing.T) { sp.sim.start(t) }},
	}
	const outage = 2500 * time.Millisecond
	for _, f := range faults {
		time.Sleep(500 * time.Millisecond)
		f.down(t)
		from := time.Now().Add(300 * time.Millisecond) // requests already in flight may still finish either way
		time.Sleep(outage)
		to := time.Now()
		f.up(t)
		healthy(t, f.name)
		got := l.within(from, to)
		total := 0
		for _, n := range got {
			total += n
		}
		t.Logf("%s down: statuses %v", f.name, got)
		if total == 0 {
			t.Errorf("%s down: no request was answered during the outage", f.name)
		}
		if got[f.want] != total {
			t.Errorf("%s down: statuses %v, want only %d", f.name, got, f.want)
		}
	}
	time.Sleep(time.Second)
	l.halt()

	// After recovery: exactly one llm_call record per answered request.
	answered := map[string]int{}
	noAnswer := 0
	for _, s := range l.shots {
		switch {
		case s.status == 0:
			noAnswer++
		case s.requestID == "":
			t.Errorf("an answer (%d) without x-request-id", s.status)
		default:
			answered[s.requestID]++
		}
	}
	ac := auditproof.New(sp.HC, sp.AuditURL, sp.AdminKey)
	var recs map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for {
		rs, err := ac.PrincipalCalls(ctx, principal)
		if err == nil {
			recs = map[string]int{}
			for _, r := range rs {
				recs[r.GetEvent().GetLlmCall().GetRequestId()]++
			}
			if len(rs) >= len(answered) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit holds %d records after 90 s, want %d (err %v)", len(recs), len(answered), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var missing, doubled, unknown []string
	for id := range answered {
		switch recs[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			doubled = append(doubled, id)
		}
	}
	for id := range recs {
		if answered[id] == 0 {
			unknown = append(unknown, id)
		}
	}
	sort.Strings(missing)
	t.Logf("%d requests answered (%d without an answer), %d audit records", len(answered), noAnswer, len(recs))
	if len(missing)+len(doubled) > 0 {
		t.Errorf("audit lost %d records %v and doubled %d %v", len(missing), missing, len(doubled), doubled)
	}
	// A request the client saw no answer for may still have its record (the gateway answered
	// after the client gave up); any other record must belong to an answered request.
	if len(unknown) > noAnswer {
		t.Errorf("%d records of requests nobody sent: %v", len(unknown), unknown)
	}
}
