// Package chat sends OpenAI-style POST /v1/chat/completions requests for the
// load generator, streamed or not, and reports when the first token arrived.
package chat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bulwarkhq/bulwark/tools/bench/internal/load"
)

// Body builds the request body: one system and one user message.
func Body(model, prompt string, stream bool) ([]byte, error) {
	m := map[string]any{
		"model": model,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful customer-support assistant."},
			{"role": "user", "content": prompt},
		},
	}
	if stream {
		m["stream"] = true
	}
	return json.Marshal(m)
}

// Client sends one body to one base URL.
type Client struct {
	HC *http.Client
	// URL is the full endpoint, e.g. http://127.0.0.1:8080/v1/chat/completions.
	URL    string
	Key    string
	Body   []byte
	Stream bool
}

// NewHTTPClient returns a keep-alive HTTP/1.1 client sized for a load run.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// ErrNotLoopback refuses any target that is not on this machine.
var ErrNotLoopback = errors.New("only loopback targets are allowed (127.0.0.0/8, ::1, localhost)")

// CheckLoopback verifies that raw is an http URL whose host is a loopback address.
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%w: scheme %q", ErrNotLoopback, u.Scheme)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: host %q", ErrNotLoopback, host)
	}
	return nil
}

var (
	contentKey = []byte(`"content":"`)
	dataPrefix = []byte("data: ")
	doneLine   = []byte("data: [DONE]")
)

// Do sends the request once; it is a load.Op.
func (c *Client) Do(ctx context.Context) load.Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Body))
	if err != nil {
		return load.Result{Err: err, Class: "build request"}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	res, err := c.HC.Do(req)
	if err != nil {
		return load.Result{Err: err, Class: classify(ctx, err)}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return load.Result{Err: fmt.Errorf("status %d", res.StatusCode), Class: fmt.Sprintf("http %d", res.StatusCode)}
	}
	if !c.Stream {
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return load.Result{Err: err, Class: classify(ctx, err)}
		}
		if !bytes.Contains(b, []byte(`"choices"`)) {
			return load.Result{Err: errors.New("no choices in the answer"), Class: "bad answer"}
		}
		return load.Result{}
	}
	var first time.Time
	done := false
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		if bytes.Equal(line, doneLine) {
			done = true
			break
		}
		if first.IsZero() && hasToken(line) {
			first = time.Now()
		}
		if bytes.Contains(line, []byte(`"error"`)) && !bytes.Contains(line, []byte(`"choices"`)) {
			return load.Result{Err: errors.New("error event in stream"), Class: "stream error event"}
		}
	}
	if err := sc.Err(); err != nil {
		return load.Result{Err: err, Class: classify(ctx, err)}
	}
	if !done {
		return load.Result{Err: errors.New("stream ended without [DONE]"), Class: "stream truncated"}
	}
	if first.IsZero() {
		return load.Result{Err: errors.New("stream carried no token"), Class: "stream without tokens"}
	}
	return load.Result{FirstToken: first}
}

// hasToken reports whether an SSE data line carries non-empty delta content.
func hasToken(line []byte) bool {
	i := bytes.Index(line, contentKey)
	return i >= 0 && i+len(contentKey) < len(line) && line[i+len(contentKey)] != '"'
}

func classify(ctx context.Context, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "reset"):
		return "connection reset"
	default:
		return "transport"
	}
}

// Answer sends one non-streamed request and returns the assistant's text (for the preflight check).
func (c *Client) Answer(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	res, err := c.HC.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return res.StatusCode, "", err
	}
	var v struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || len(v.Choices) == 0 {
		return res.StatusCode, "", fmt.Errorf("status %d: %.200s", res.StatusCode, b)
	}
	return res.StatusCode, v.Choices[0].Message.Content, nil
}
