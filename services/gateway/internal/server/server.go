// Package server adapts the gateway pipeline to the generated
// bulwark.gateway.v1.GatewayService Connect handler: a protobuf front door
// through the same governed pipeline as the HTTP APIs.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"github.com/oklog/ulid/v2"

	gatewayv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/gateway/v1/gatewayv1connect"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/llmjson"
	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

// Server implements gatewayv1connect.GatewayServiceHandler.
type Server struct {
	pl  *pipeline.Pipeline
	log *slog.Logger
}

var _ gatewayv1connect.GatewayServiceHandler = (*Server)(nil)

// New returns the handler implementation.
func New(pl *pipeline.Pipeline, log *slog.Logger) (*Server, error) {
	if pl == nil || log == nil {
		return nil, errors.New("server: pipeline and logger are required")
	}
	return &Server{pl: pl, log: log}, nil
}

func credential(h http.Header) string {
	v := h.Get("Authorization")
	if k, ok := strings.CutPrefix(v, "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	return strings.TrimSpace(h.Get("x-api-key"))
}

// chatBody renders a Chat as an OpenAI chat completion request.
func chatBody(c *gatewayv1.Chat, stream bool) ([]byte, error) {
	if c == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("chat is required"))
	}
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	body := struct {
		Model       string            `json:"model"`
		Messages    []msg             `json:"messages"`
		MaxTokens   int32             `json:"max_tokens,omitempty"`
		Temperature *float64          `json:"temperature,omitempty"`
		Stream      bool              `json:"stream,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
	}{Model: c.GetModel(), MaxTokens: c.GetMaxTokens(), Temperature: c.Temperature, Stream: stream, Messages: []msg{}}
	for _, m := range c.GetMessages() {
		body.Messages = append(body.Messages, msg{Role: m.GetRole(), Content: m.GetContent()})
	}
	return json.Marshal(body)
}

func (s *Server) call(ctx context.Context, h http.Header, peer connect.Peer, c *gatewayv1.Chat, stream bool) (*pipeline.Call, error) {
	body, err := chatBody(c, stream)
	if err != nil {
		return nil, err
	}
	return &pipeline.Call{
		RequestID: "req_" + ulid.Make().String(), API: "connect", Format: llmjson.OpenAIChat, Credential: credential(h),
		Environment: h.Get("x-bulwark-environment"), PromptRef: c.GetPromptRef(), Body: body,
		ClientIP: peer.Addr, UserAgent: h.Get("User-Agent"), Metadata: c.GetMetadata(),
	}, nil
}

// ChatComplete runs one governed chat completion.
func (s *Server) ChatComplete(ctx context.Context, req *connect.Request[gatewayv1.ChatCompleteRequest]) (*connect.Response[gatewayv1.ChatCompleteResponse], error) {
	call, err := s.call(ctx, req.Header(), req.Peer(), req.Msg.GetChat(), false)
	if err != nil {
		return nil, err
	}
	p, err := s.pl.Prepare(ctx, call)
	if err != nil {
		return nil, s.toConnect(err, call.RequestID)
	}
	ans, err := s.pl.Complete(ctx, p)
	if err != nil {
		return nil, s.toConnect(err, call.RequestID)
	}
	if ans.Status >= 400 {
		return nil, providerError(ans.Status, call.RequestID)
	}
	var oa struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(ans.Body, &oa); err != nil || len(oa.Choices) == 0 {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("request %s: the provider's answer could not be read", call.RequestID))
	}
	out := &gatewayv1.ChatCompleteResponse{
		RequestId: call.RequestID, Model: oa.Model,
		Message:      &gatewayv1.Message{Role: oa.Choices[0].Message.Role, Content: oa.Choices[0].Message.Content},
		FinishReason: oa.Choices[0].FinishReason,
		Usage:        &gatewayv1.Usage{InputTokens: ans.Usage.GetInputTokens(), OutputTokens: ans.Usage.GetOutputTokens()},
		Redactions:   p.Redactions(),
	}
	res := connect.NewResponse(out)
	res.Header().Set("x-request-id", call.RequestID)
	return res, nil
}

// StreamChatComplete runs one governed chat completion and streams the answer.
func (s *Server) StreamChatComplete(ctx context.Context, req *connect.Request[gatewayv1.StreamChatCompleteRequest], stream *connect.ServerStream[gatewayv1.StreamChatCompleteResponse]) error {
	call, err := s.call(ctx, req.Header(), req.Peer(), req.Msg.GetChat(), true)
	if err != nil {
		return err
	}
	p, err := s.pl.Prepare(ctx, call)
	if err != nil {
		return s.toConnect(err, call.RequestID)
	}
	sa, err := s.pl.OpenStream(ctx, p)
	if err != nil {
		return s.toConnect(err, call.RequestID)
	}
	if sa.Status >= 400 {
		return providerError(sa.Status, call.RequestID)
	}
	stream.ResponseHeader().Set("x-request-id", call.RequestID)
	first := true
	var finish string
	for {
		evs, _, done := sa.Next()
		for _, e := range evs {
			var chunk struct {
				Model   string `json:"model"`
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
			}
			if json.Unmarshal(e.Data, &chunk) != nil || len(chunk.Choices) == 0 {
				continue
			}
			c := chunk.Choices[0]
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
			if c.Delta.Content == "" && !first {
				continue
			}
			msg := &gatewayv1.StreamChatCompleteResponse{RequestId: call.RequestID, Delta: c.Delta.Content}
			if first {
				msg.Model = chunk.Model
				first = false
			}
			if err := stream.Send(msg); err != nil {
				sa.Close(ctx)
				return err
			}
		}
		if !done {
			continue
		}
		if err := sa.Finish(ctx); err != nil {
			return s.toConnect(err, call.RequestID)
		}
		if sa.Err() != nil {
			return connect.NewError(connect.CodeUnavailable, fmt.Errorf("request %s: the provider's stream broke off", call.RequestID))
		}
		u := sa.Usage()
		return stream.Send(&gatewayv1.StreamChatCompleteResponse{RequestId: call.RequestID, FinishReason: finish,
			Usage: &gatewayv1.Usage{InputTokens: u.GetInputTokens(), OutputTokens: u.GetOutputTokens()}})
	}
}

// ListModels lists the models the caller may request.
func (s *Server) ListModels(ctx context.Context, req *connect.Request[gatewayv1.ListModelsRequest]) (*connect.Response[gatewayv1.ListModelsResponse], error) {
	models, err := s.pl.ListModels(ctx, credential(req.Header()), req.Header().Get("x-bulwark-environment"))
	if err != nil {
		return nil, s.toConnect(err, "")
	}
	out := &gatewayv1.ListModelsResponse{}
	for _, m := range models {
		out.Models = append(out.Models, &gatewayv1.Model{Id: m.GetId(), OwnedBy: m.GetOwnedBy()})
	}
	return connect.NewResponse(out), nil
}

func providerError(status int, id string) error {
	code := connect.CodeUnavailable
	switch {
	case status == http.StatusTooManyRequests:
		code = connect.CodeResourceExhausted
	case status == http.StatusGatewayTimeout:
		code = connect.CodeDeadlineExceeded
	case status >= 400 && status < 500:
		code = connect.CodeInvalidArgument
	}
	return connect.NewError(code, fmt.Errorf("request %s: the provider answered %d", id, status))
}

// toConnect maps pipeline denials to Connect codes; messages are the denial's
// client-safe text.
func (s *Server) toConnect(err error, id string) error {
	var d *pipeline.Denial
	if !errors.As(err, &d) {
		s.log.Error("gateway rpc failed", "request_id", id, "err", err.Error())
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
	code := connect.CodeInternal
	switch d.Kind {
	case pipeline.KindInvalid, pipeline.KindBlocked:
		code = connect.CodeInvalidArgument
	case pipeline.KindUnauthenticated:
		code = connect.CodeUnauthenticated
	case pipeline.KindForbidden:
		code = connect.CodePermissionDenied
	case pipeline.KindNotFound:
		code = connect.CodeNotFound
	case pipeline.KindRateLimited:
		code = connect.CodeResourceExhausted
	case pipeline.KindUnavailable, pipeline.KindProvider:
		code = connect.CodeUnavailable
	case pipeline.KindTimeout:
		code = connect.CodeDeadlineExceeded
	}
	msg := d.Message
	if d.Kind == pipeline.KindForbidden && len(d.Reasons) > 0 {
		msg += ": " + d.Reasons[0]
	}
	ce := connect.NewError(code, errors.New(msg))
	if id != "" {
		ce.Meta().Set("x-request-id", id)
	}
	if d.Kind == pipeline.KindRateLimited {
		ce.Meta().Set("Retry-After", fmt.Sprintf("%d", max(int(d.RetryAfter.Seconds()+0.999), 1)))
	}
	return ce
}
