// Package upstream performs the router's HTTP calls to providers: it builds each
// provider kind's URL and credentials, writes the body without copying it, and
// reads Retry-After.
package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bulwarkhq/bulwark/services/router/internal/catalog"
	"github.com/bulwarkhq/bulwark/services/router/internal/routing"
)

// AnthropicVersion is the anthropic-version header sent to Anthropic.
const AnthropicVersion = "2023-06-01"

// Params configure a Client.
type Params struct {
	// HTTPClient overrides the default pooled client (tests).
	HTTPClient *http.Client
	// UserAgent sent to providers.
	UserAgent string
}

// Client implements routing.Upstream over net/http.
type Client struct {
	hc *http.Client
	ua string
}

// New returns a Client.
func New(p Params) *Client {
	hc := p.HTTPClient
	if hc == nil {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // SSE must arrive as sent
		}
		hc = &http.Client{Transport: tr}
	}
	ua := p.UserAgent
	if ua == "" {
		ua = "bulwark-router/1"
	}
	return &Client{hc: hc, ua: ua}
}

// URL is the provider URL for an operation.
func URL(p catalog.Provider, op routing.Op, model string) string {
	base := strings.TrimRight(p.BaseURL, "/")
	switch p.Kind {
	case catalog.KindAnthropic:
		return base + "/v1/messages"
	case catalog.KindAzureOpenAI:
		path := "/chat/completions"
		if op == routing.OpEmbeddings {
			path = "/embeddings"
		}
		return base + "/openai/deployments/" + url.PathEscape(model) + path + "?api-version=" + url.QueryEscape(p.APIVersion)
	default:
		if op == routing.OpEmbeddings {
			return base + "/embeddings"
		}
		return base + "/chat/completions"
	}
}

type partsReader struct {
	parts [][]byte
}

func (r *partsReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(r.parts) > 0 {
		c := copy(p[n:], r.parts[0])
		n += c
		r.parts[0] = r.parts[0][c:]
		if len(r.parts[0]) == 0 {
			r.parts = r.parts[1:]
		}
	}
	if n == 0 && len(r.parts) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func body(parts [][]byte) io.Reader {
	if len(parts) == 1 {
		return bytes.NewReader(parts[0])
	}
	return &partsReader{parts: append([][]byte(nil), parts...)}
}

// Do sends the request.
func (c *Client) Do(ctx context.Context, req *routing.UpstreamRequest) (*routing.UpstreamResponse, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, URL(req.Provider, req.Op, req.Model), body(req.Body))
	if err != nil {
		return nil, fmt.Errorf("build provider request: %w", err)
	}
	hr.ContentLength = req.Len()
	parts := req.Body
	hr.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body(parts)), nil }
	h := hr.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", c.ua)
	if req.Stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if req.RequestID != "" {
		h.Set("X-Request-Id", req.RequestID)
	}
	switch req.Provider.Kind {
	case catalog.KindAnthropic:
		h.Set("x-api-key", req.Key.Reveal())
		h.Set("anthropic-version", AnthropicVersion)
	case catalog.KindAzureOpenAI:
		h.Set("api-key", req.Key.Reveal())
	default:
		h.Set("Authorization", "Bearer "+req.Key.Reveal())
	}
	res, err := c.hc.Do(hr)
	if err != nil {
		// The error text can carry the URL but never the key (headers are not printed).
		return nil, fmt.Errorf("call provider %s: %w", req.Provider.Name, err)
	}
	return &routing.UpstreamResponse{Status: res.StatusCode, RetryAfter: retryAfter(res.Header, time.Now()), Body: res.Body}, nil
}

// retryAfter reads retry-after-ms, then Retry-After (seconds or an HTTP date).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
