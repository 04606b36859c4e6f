package sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
}

type oaChatRequest struct {
	Model         string      `json:"model"`
	Messages      []oaMessage `json:"messages"`
	Stream        bool        `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
	MaxTokens           int `json:"max_tokens"`
	MaxCompletionTokens int `json:"max_completion_tokens"`
	N                   int `json:"n"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeOpenAIError writes OpenAI's error body: {"error":{"message","type","param","code"}}.
func writeOpenAIError(w http.ResponseWriter, status int, typ, msg, code, param string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	if param != "" {
		e["param"] = param
	}
	w.Header().Set("x-request-id", "req_sim")
	writeJSON(w, status, map[string]any{"error": e})
}

func openAIErrorType(status int) (typ, code string) {
	switch {
	case status == 401:
		return "invalid_request_error", "invalid_api_key"
	case status == 403:
		return "invalid_request_error", "unsupported_country_region_territory"
	case status == 404:
		return "invalid_request_error", "model_not_found"
	case status == 429:
		return "requests", "rate_limit_exceeded"
	case status >= 500:
		return "server_error", ""
	default:
		return "invalid_request_error", ""
	}
}

func openAIDefaultMessage(status int) string {
	switch {
	case status == 429:
		return "Rate limit reached for requests. Please try again later."
	case status == 503:
		return "The engine is currently overloaded, please try again later."
	case status >= 500:
		return "The server had an error while processing your request. Sorry about that!"
	case status == 401:
		return "Incorrect API key provided."
	default:
		return "Invalid request."
	}
}

func (s *Sim) openAIRateHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("x-ratelimit-limit-requests", "10000")
	h.Set("x-ratelimit-remaining-requests", "9999")
	h.Set("x-ratelimit-reset-requests", "6ms")
	h.Set("x-ratelimit-limit-tokens", "30000000")
	h.Set("x-ratelimit-remaining-tokens", "29999000")
	h.Set("x-ratelimit-reset-tokens", "2ms")
	h.Set("openai-processing-ms", "1")
	h.Set("x-request-id", fmt.Sprintf("req_sim%06d", s.seq.Load()))
}

// serveOpenAIChat answers a chat completion. deployment is the Azure deployment ("" for OpenAI).
func (s *Sim) serveOpenAIChat(w http.ResponseWriter, r *http.Request, body []byte, deployment, key string) {
	n := s.seq.Add(1)
	if r.Method != http.MethodPost {
		writeOpenAIError(w, http.StatusMethodNotAllowed, "invalid_request_error", "Method not allowed", "", "")
		return
	}
	if !s.keyAccepted(key) {
		writeOpenAIError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key", "")
		return
	}
	var req oaChatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "We could not parse the JSON body of your request.", "", "")
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	}
	f, err := s.faultFor(r, model)
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "bad "+FaultHeader, "", "")
		return
	}
	s.openAIRateHeaders(w)
	if s.applyFault(w, r, f, familyOpenAI) {
		return
	}
	if model == "" {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "you must provide a model parameter", "", "model")
		return
	}
	if len(req.Messages) == 0 {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "[] is too short - 'messages'", "", "messages")
		return
	}

	var (
		inText   strings.Builder
		lastRole string
		lastText string
	)
	for _, m := range req.Messages {
		t := contentText(m.Content)
		inText.WriteString(t)
		inText.WriteByte(' ')
		lastRole, lastText = m.Role, t
	}
	var tools []string
	for _, t := range req.Tools {
		tools = append(tools, t.Function.Name)
	}
	forced := ""
	if len(req.ToolChoice) > 0 {
		var sc string
		if json.Unmarshal(req.ToolChoice, &sc) == nil {
			switch sc {
			case "required":
				forced = "*"
			case "none":
				forced = "none"
			}
		} else {
			var obj struct {
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(req.ToolChoice, &obj) == nil {
				forced = obj.Function.Name
			}
		}
	}
	jsonMode := req.ResponseFormat != nil && (req.ResponseFormat.Type == "json_object" || req.ResponseFormat.Type == "json_schema")
	maxTok := req.MaxCompletionTokens
	if maxTok == 0 {
		maxTok = req.MaxTokens
	}
	a := decide(s.currentReply(), lastRole, lastText, tools, forced, jsonMode, maxTok)
	inTok := countTokens(inText.String())
	outTok := countTokens(a.Text + " " + a.ToolArgs)
	id := fmt.Sprintf("chatcmpl-sim%06d", n)
	created := s.p.Now().Unix()
	finish := "stop"
	switch {
	case a.ToolName != "":
		finish = "tool_calls"
	case a.Truncated:
		finish = "length"
	}
	usage := map[string]any{
		"prompt_tokens": inTok, "completion_tokens": outTok, "total_tokens": inTok + outTok,
		"prompt_tokens_details":     map[string]any{"cached_tokens": 0, "audio_tokens": 0},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
	}
	toolID := fmt.Sprintf("call_sim%06d", n)

	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil, "annotations": []any{}}
		if a.ToolName != "" {
			msg["tool_calls"] = []any{map[string]any{
				"id": toolID, "type": "function",
				"function": map[string]any{"name": a.ToolName, "arguments": a.ToolArgs},
			}}
		} else {
			msg["content"] = a.Text
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": model,
			"system_fingerprint": "fp_provsim", "service_tier": "default",
			"choices": []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish}},
			"usage":   usage,
		})
		return
	}

	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	s.runStream(w, r, f, familyOpenAI, func(e *sseWriter) {
		chunk := func(delta map[string]any, fin any, withUsage bool) []byte {
			c := map[string]any{
				"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
				"system_fingerprint": "fp_provsim", "service_tier": "default",
				"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": fin}},
			}
			if includeUsage {
				c["usage"] = nil
			}
			if withUsage {
				c["choices"] = []any{}
				c["usage"] = usage
			}
			b, _ := json.Marshal(c)
			return b
		}
		if a.ToolName != "" {
			e.event("", chunk(map[string]any{"role": "assistant", "content": nil, "refusal": nil, "tool_calls": []any{map[string]any{
				"index": 0, "id": toolID, "type": "function", "function": map[string]any{"name": a.ToolName, "arguments": ""},
			}}}, nil, false))
			for _, p := range splitN(a.ToolArgs, 3) {
				e.event("", chunk(map[string]any{"tool_calls": []any{map[string]any{
					"index": 0, "function": map[string]any{"arguments": p},
				}}}, nil, false))
			}
		} else {
			e.event("", chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil, false))
			for _, p := range pieces(a.Text) {
				e.event("", chunk(map[string]any{"content": p}, nil, false))
			}
		}
		e.event("", chunk(map[string]any{}, finish, false))
		if includeUsage {
			e.event("", chunk(nil, nil, true))
		}
		e.event("", []byte("[DONE]"))
	})
}

// splitN splits s into at most n pieces of similar length.
func splitN(s string, n int) []string {
	if len(s) == 0 {
		return nil
	}
	size := (len(s) + n - 1) / n
	var out []string
	for len(s) > size {
		out = append(out, s[:size])
		s = s[size:]
	}
	return append(out, s)
}

func (s *Sim) serveOpenAIEmbeddings(w http.ResponseWriter, r *http.Request, body []byte, deployment, key string) {
	s.seq.Add(1)
	if !s.keyAccepted(key) {
		writeOpenAIError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key", "")
		return
	}
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     int             `json:"dimensions"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "We could not parse the JSON body of your request.", "", "")
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	}
	f, err := s.faultFor(r, model)
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "bad "+FaultHeader, "", "")
		return
	}
	s.openAIRateHeaders(w)
	if s.applyFault(w, r, f, familyOpenAI) {
		return
	}
	var inputs []string
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		inputs = []string{one}
	} else if json.Unmarshal(req.Input, &inputs) != nil {
		writeOpenAIError(w, http.StatusBadRequest, "invalid_request_error", "'input' must be a string or an array of strings", "", "input")
		return
	}
	dims := req.Dimensions
	if dims <= 0 {
		dims = s.p.EmbeddingDims
	}
	data := make([]any, 0, len(inputs))
	tok := 0
	for i, in := range inputs {
		vec := embed(in, dims)
		tok += countTokens(in)
		var emb any = vec
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": emb})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]any{"prompt_tokens": tok, "total_tokens": tok},
	})
}

// embed is a deterministic unit vector derived from the text's SHA-256.
func embed(text string, dims int) []float32 {
	out := make([]float32, dims)
	var norm float64
	seed := sha256.Sum256([]byte(text))
	for i := range out {
		if i%8 == 0 && i > 0 {
			seed = sha256.Sum256(seed[:])
		}
		v := float64(int32(binary.BigEndian.Uint32(seed[(i%8)*4:]))) / math.MaxInt32
		out[i] = float32(v)
		norm += v * v
	}
	norm = math.Sqrt(norm)
	if norm > 0 {
		for i := range out {
			out[i] = float32(float64(out[i]) / norm)
		}
	}
	return out
}

func (s *Sim) serveOpenAIModels(w http.ResponseWriter, r *http.Request) {
	if !s.keyAccepted(openAIAuth(r)) {
		writeOpenAIError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key", "")
		return
	}
	data := make([]any, 0, len(s.p.Models))
	for _, m := range s.p.Models {
		data = append(data, map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": "provsim"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}
