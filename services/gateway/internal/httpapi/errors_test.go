package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

func TestWriteDenial_RateLimitedHasRetryAfterAndOpenAIHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	writeDenial(w, familyOpenAI, &pipeline.Denial{Kind: pipeline.KindRateLimited, Message: "rate limit exceeded: rpm", RetryAfter: 1500 * time.Millisecond,
		Limits: []*ratelimitv1.LimitStatus{
			{Name: "rpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Limit: 60, Remaining: 0, ResetAfter: durationpb.New(6 * time.Second)},
			{Name: "team-rpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, Limit: 600, Remaining: 12, ResetAfter: durationpb.New(time.Minute)},
			{Name: "tpm", Kind: ratelimitv1.LimitKind_LIMIT_KIND_TOKENS, Limit: 1000, Remaining: 40, ResetAfter: durationpb.New(250 * time.Millisecond)},
		}}, "req_1")
	h := w.Result().Header
	for k, want := range map[string]string{
		"Retry-After": "2", "retry-after-ms": "1500",
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s",
		"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "40", "x-ratelimit-reset-tokens": "250ms",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var body openAIError
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 429 || body.Error.Type != "rate_limit_error" || *body.Error.Code != "rate_limit_exceeded" {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}

func TestErrorBody_AnthropicShapePerStatus(t *testing.T) {
	for status, typ := range map[int]string{400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error"} {
		var e anthropicError
		if err := json.Unmarshal(errorBody(familyAnthropic, status, pipeline.KindInternal, "m", "req_9"), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type != "error" || e.Error.Type != typ || e.RequestID != "req_9" {
			t.Errorf("%d: %+v, want type %s", status, e, typ)
		}
	}
}

func TestCredential_BearerOrAnthropicKey(t *testing.T) {
	for _, tc := range []struct {
		header, value, want string
	}{
		{"Authorization", "Bearer bk_1", "bk_1"},
		{"Authorization", "bearer  bk_2 ", "bk_2"},
		{"x-api-key", "bk_3", "bk_3"},
		{"Authorization", "Basic Zm9v", ""},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
		r.Header.Set(tc.header, tc.value)
		if got := credential(r); got != tc.want {
			t.Errorf("%s: %q -> %q, want %q", tc.header, tc.value, got, tc.want)
		}
	}
}
