package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

type family int

const (
	familyOpenAI family = iota
	familyAnthropic
)

// openAIError mirrors OpenAI's error body.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// anthropicError mirrors Anthropic's error body.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// openAITypeCode returns OpenAI's error type and code for a status and kind.
func openAITypeCode(status int, kind pipeline.Kind) (string, string) {
	switch status {
	case http.StatusBadRequest:
		if kind == pipeline.KindBlocked {
			return "invalid_request_error", "content_blocked"
		}
		return "invalid_request_error", ""
	case http.StatusUnauthorized:
		return "invalid_request_error", "invalid_api_key"
	case http.StatusForbidden:
		return "permission_error", "permission_denied"
	case http.StatusNotFound:
		return "invalid_request_error", "model_not_found"
	case http.StatusRequestEntityTooLarge:
		return "invalid_request_error", "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error", "rate_limit_exceeded"
	case http.StatusMethodNotAllowed:
		return "invalid_request_error", "method_not_allowed"
	case http.StatusServiceUnavailable:
		return "server_error", "service_unavailable"
	case http.StatusGatewayTimeout:
		return "server_error", "timeout"
	case http.StatusBadGateway:
		return "server_error", "bad_gateway"
	}
	return "server_error", ""
}

func anthropicType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	return "api_error"
}

// errorBody renders an error in the family's shape.
func errorBody(f family, status int, kind pipeline.Kind, msg, requestID string) []byte {
	if f == familyAnthropic {
		var e anthropicError
		e.Type = "error"
		e.Error.Type = anthropicType(status)
		e.Error.Message = msg
		e.RequestID = requestID
		b, _ := json.Marshal(e)
		return b
	}
	var e openAIError
	typ, code := openAITypeCode(status, kind)
	e.Error.Type, e.Error.Code, e.Error.Message = typ, strp(code), msg
	b, _ := json.Marshal(e)
	return b
}

func writeError(w http.ResponseWriter, f family, status int, kind pipeline.Kind, msg, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(f, status, kind, msg, requestID))
}

// writeDenial writes a pipeline denial with its status, Retry-After and rate-limit headers.
func writeDenial(w http.ResponseWriter, f family, d *pipeline.Denial, requestID string) {
	if d.Kind == pipeline.KindRateLimited {
		secs := int(math.Ceil(d.RetryAfter.Seconds()))
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		if f == familyOpenAI {
			w.Header().Set("retry-after-ms", strconv.FormatInt(max(d.RetryAfter.Milliseconds(), 1), 10))
		}
		setLimitHeaders(w.Header(), f, d.Limits, time.Now())
	}
	msg := d.Message
	if d.Kind == pipeline.KindForbidden && len(d.Reasons) > 0 {
		msg = fmt.Sprintf("%s: %s", d.Message, d.Reasons[0])
	}
	writeError(w, f, d.Status(), d.Kind, msg, requestID)
}

// setLimitHeaders sets OpenAI's x-ratelimit-* or Anthropic's anthropic-ratelimit-*
// headers from the tightest request and token limits.
func setLimitHeaders(h http.Header, f family, statuses []*ratelimitv1.LimitStatus, now time.Time) {
	for _, kind := range []struct {
		k    ratelimitv1.LimitKind
		name string
	}{{ratelimitv1.LimitKind_LIMIT_KIND_REQUESTS, "requests"}, {ratelimitv1.LimitKind_LIMIT_KIND_TOKENS, "tokens"}} {
		var tight *ratelimitv1.LimitStatus
		for _, s := range statuses {
			if s.GetKind() == kind.k && (tight == nil || s.GetRemaining() < tight.GetRemaining()) {
				tight = s
			}
		}
		if tight == nil {
			continue
		}
		reset := tight.GetResetAfter().AsDuration()
		if f == familyAnthropic {
			h.Set("anthropic-ratelimit-"+kind.name+"-limit", strconv.FormatInt(tight.GetLimit(), 10))
			h.Set("anthropic-ratelimit-"+kind.name+"-remaining", strconv.FormatInt(max(tight.GetRemaining(), 0), 10))
			h.Set("anthropic-ratelimit-"+kind.name+"-reset", now.Add(reset).UTC().Format(time.RFC3339))
			continue
		}
		h.Set("x-ratelimit-limit-"+kind.name, strconv.FormatInt(tight.GetLimit(), 10))
		h.Set("x-ratelimit-remaining-"+kind.name, strconv.FormatInt(max(tight.GetRemaining(), 0), 10))
		h.Set("x-ratelimit-reset-"+kind.name, formatReset(reset))
	}
}

// formatReset renders a duration as OpenAI does ("1s", "6m0s", "120ms").
func formatReset(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(max(d.Milliseconds(), 0), 10) + "ms"
	}
	return d.Round(time.Millisecond).String()
}
