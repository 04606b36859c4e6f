// Package redaction is the redaction service as a component: New builds the
// detection engine and the Connect handler, so the standalone binary and the
// all-in-one binary mount the same thing. The engine itself (package engine)
// is what the gateway and bulwarkctl use in-process.
package redaction

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"connectrpc.com/connect"
	redactionv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/redaction/v1/redactionv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/redaction/engine"
	"github.com/bulwarkhq/bulwark/services/redaction/internal/server"
	"google.golang.org/protobuf/encoding/protojson"
)

// Config is read from BULWARK_REDACTION_* environment variables.
type Config struct {
	Addr string `env:"ADDR" default:":8082"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	// HashKey is the master key of the hash action (16+ bytes). Without it a
	// random key is used and hashes change on restart.
	HashKey platform.Secret `env:"HASH_KEY"`
	// ProfilesFile is an optional JSON file {"profiles":[...]} in the
	// ListProfiles wire format; its profiles add to or replace the built-ins.
	ProfilesFile string `env:"PROFILES_FILE"`
	// MaxSegments and MaxTextBytes bound one call.
	MaxSegments  int `env:"MAX_SEGMENTS" default:"1024"`
	MaxTextBytes int `env:"MAX_TEXT_BYTES" default:"8388608"`
	// ServiceAuth is IDENTITY_URL, SERVICE_CREDENTIAL and AUTH_DISABLED: how callers are
	// authenticated (permissions redaction.use, redaction.profile.read).
	platform.ServiceAuth `env:""`
}

// Validate reports a configuration the standalone service cannot run with.
func (c Config) Validate() error {
	if err := c.CheckAuth(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("invalid redaction config")

// Params configures New.
type Params struct {
	Config Config
	Logger *slog.Logger
	// HandlerOptions are the platform interceptors.
	HandlerOptions []connect.HandlerOption
}

// Service is the mounted component.
type Service struct {
	Name    string
	Path    string
	Handler http.Handler
	// Engine is the same engine the handler uses, for in-process callers.
	Engine *engine.Engine
}

// New builds the engine from the configuration and the Connect handler around it.
func New(p Params) (*Service, error) {
	if p.Logger == nil {
		return nil, fmt.Errorf("%w: Logger is required", ErrConfig)
	}
	c := p.Config
	var profiles []engine.Profile
	if c.ProfilesFile != "" {
		var err error
		if profiles, err = LoadProfiles(c.ProfilesFile); err != nil {
			return nil, err
		}
	}
	eng, err := engine.New(engine.Params{Profiles: profiles, HashKey: []byte(c.HashKey.Reveal()), Logger: p.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	impl, err := server.New(server.Params{Engine: eng, Logger: p.Logger,
		Limits: server.Limits{MaxSegments: c.MaxSegments, MaxTextBytes: c.MaxTextBytes}})
	if err != nil {
		return nil, err
	}
	path, h := redactionv1connect.NewRedactionServiceHandler(impl, p.HandlerOptions...)
	return &Service{Name: redactionv1connect.RedactionServiceName, Path: path, Handler: h, Engine: eng}, nil
}

// LoadProfiles reads profiles from a JSON file in the ListProfilesResponse format.
func LoadProfiles(path string) ([]engine.Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read profiles file: %w", ErrConfig, err)
	}
	var msg redactionv1.ListProfilesResponse
	if err := protojson.Unmarshal(b, &msg); err != nil {
		return nil, fmt.Errorf("%w: parse profiles file: %w", ErrConfig, err)
	}
	out := make([]engine.Profile, 0, len(msg.GetProfiles()))
	for _, p := range msg.GetProfiles() {
		out = append(out, server.ProfileFromProto(p))
	}
	return out, nil
}
