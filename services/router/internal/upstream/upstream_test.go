package upstream

import (
	"net/http"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
)

func TestURL_PerProviderKind(t *testing.T) {
	for _, tc := range []struct {
		p    catalog.Provider
		op   routing.Op
		want string
	}{
		{catalog.Provider{Kind: catalog.KindOpenAI, BaseURL: "https://api.openai.com/v1/"}, routing.OpChat, "https://api.openai.com/v1/chat/completions"},
		{catalog.Provider{Kind: catalog.KindOpenAI, BaseURL: "http://localhost:11434/v1"}, routing.OpEmbeddings, "http://localhost:11434/v1/embeddings"},
		{catalog.Provider{Kind: catalog.KindAnthropic, BaseURL: "https://api.anthropic.com"}, routing.OpMessages, "https://api.anthropic.com/v1/messages"},
		{catalog.Provider{Kind: catalog.KindAzureOpenAI, BaseURL: "https://x.openai.azure.com", APIVersion: "2024-10-21"}, routing.OpChat,
			"https://x.openai.azure.com/openai/deployments/my%20dep/chat/completions?api-version=2024-10-21"},
	} {
		if got := URL(tc.p, tc.op, "my dep"); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

func TestRetryAfter_ReadsMillisecondsSecondsAndDates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{http.Header{"Retry-After": {now.Add(3 * time.Second).Format(http.TimeFormat)}}, 3 * time.Second},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{}, 0},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestPartsReader_WritesEveryPartInOrder(t *testing.T) {
	r := body([][]byte{[]byte("ab"), []byte(""), []byte("cde")})
	buf := make([]byte, 2)
	var out []byte
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(out) != "abcde" {
		t.Fatalf("%q", out)
	}
}
