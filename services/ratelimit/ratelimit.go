// Package ratelimit is the rate limit service as a component: New builds the
// limiter, the anomaly detector and the Connect handler, so the standalone
// binary and the all-in-one binary mount the same thing. Run drives the
// background work (the llm_call consumer and event publishing).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	"github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1/ratelimitv1connect"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/anomaly"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/events"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/limiter"
	"github.com/bulwarkhq/bulwark/services/ratelimit/internal/server"
)

// Config is read from BULWARK_RATELIMIT_* environment variables.
type Config struct {
	Addr string `env:"ADDR" default:":8083"`
	// Logging is LOG_FORMAT (json or text) and LOG_LEVEL.
	platform.Logging `env:""`
	// Redis is the only state store (BULWARK_RATELIMIT_REDIS_ADDR, ...).
	Redis platform.RedisConfig `env:"REDIS_"`
	// NATS carries llm_call events in and alerts out (BULWARK_RATELIMIT_NATS_URL, ...).
	NATS platform.NATSConfig `env:"NATS_"`
	// KeyPrefix starts every Redis key.
	KeyPrefix string `env:"KEY_PREFIX" default:"bulwark:rl:"`
	// Partition is the Redis Cluster hash tag scope: "team" or "environment".
	Partition string `env:"PARTITION" default:"team"`
	// Prices adds or replaces model prices: "model=input/output,..." in USD per million tokens.
	Prices string `env:"PRICES"`
	// ReservationTTL is how long an unsettled reservation holds by default.
	ReservationTTL time.Duration `env:"RESERVATION_TTL" default:"10m"`
	// StoreTimeout bounds one Redis decision; past it Redis counts as unreachable.
	StoreTimeout time.Duration `env:"STORE_TIMEOUT" default:"500ms"`
	// Anomaly turns on the llm_call consumer and the detector.
	Anomaly bool `env:"ANOMALY" default:"true"`
	// AnomalyZ is the z-score that counts as out of band.
	AnomalyZ float64 `env:"ANOMALY_Z" default:"4"`
	// AnomalyLearning is how long a subject is observed before baseline alerts.
	AnomalyLearning time.Duration `env:"ANOMALY_LEARNING" default:"168h"`
	// AuditStream is the JetStream stream holding llm_call events.
	AuditStream string `env:"AUDIT_STREAM" default:"BULWARK_AUDIT"`
	// ServiceAuth is IDENTITY_URL, SERVICE_CREDENTIAL and AUTH_DISABLED: how callers are
	// authenticated (permissions ratelimit.reserve, ratelimit.usage.read, ratelimit.alert.read).
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
var ErrConfig = errors.New("invalid ratelimit config")

// Params configures New.
type Params struct {
	Config Config
	Logger *slog.Logger
	// Redis is the store (a *redis.Client or *redis.ClusterClient).
	Redis interface {
		redis.Scripter
		redis.Cmdable
	}
	// JS, when set, receives limit_exceeded and anomaly events and feeds the detector.
	JS jetstream.JetStream
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// HandlerOptions are the platform interceptors.
	HandlerOptions []connect.HandlerOption
	// Now is the clock; nil means the Redis server clock (tests inject one).
	Now func() time.Time
	// TracerProvider, when set, traces the consumption of llm_call events.
	TracerProvider trace.TracerProvider
}

// Service is the mounted component.
type Service struct {
	Name    string
	Path    string
	Handler http.Handler
	// API is the handler implementation itself: the all-in-one binary (and the
	// gateway's in-process wiring) calls it directly, with no HTTP in between.
	API ratelimitv1connect.RateLimitServiceHandler
	// Limiter is the same limiter the handler uses, for in-process callers.
	Limiter *limiter.Limiter
	// Detector is nil when anomaly detection is off or no JetStream was given.
	Detector *anomaly.Detector

	queue    *events.Queue
	consumer *events.Consumer
}

// New builds the service.
func New(ctx context.Context, p Params) (*Service, error) {
	if p.Logger == nil || p.Redis == nil {
		return nil, fmt.Errorf("%w: Logger and Redis are required", ErrConfig)
	}
	c := p.Config
	prices, err := limiter.ParsePrices(c.Prices)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	lim, err := limiter.New(ctx, limiter.Params{
		Redis: p.Redis, Logger: p.Logger, Prefix: c.KeyPrefix, Partition: limiter.Partition(c.Partition),
		Prices: limiter.NewPriceTable(prices, limiter.Price{}), Now: p.Now, DefaultTTL: c.ReservationTTL,
		StoreTimeout: c.StoreTimeout, Registerer: p.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Service{Name: ratelimitv1connect.RateLimitServiceName, Limiter: lim}
	sp := server.Params{Limiter: lim, Logger: p.Logger}
	if p.JS != nil {
		pub := events.NewPublisher(p.JS)
		s.queue = events.NewQueue(pub, p.Logger, 4096, p.Registerer)
		sp.Denials = s.queue
		if c.Anomaly {
			det, err := anomaly.New(anomaly.Params{Redis: p.Redis, Publisher: pub, Logger: p.Logger, Prefix: c.KeyPrefix + "an:",
				Config: anomaly.Config{ZThreshold: c.AnomalyZ, Learning: c.AnomalyLearning}, Registerer: p.Registerer})
			if err != nil {
				return nil, err
			}
			s.Detector = det
			sp.Alerts = det
			s.consumer, err = events.NewConsumer(events.ConsumerParams{JS: p.JS, Logger: p.Logger, Stream: c.AuditStream, TracerProvider: p.TracerProvider,
				Handler: func(ctx context.Context, evs []*auditv1.AuditEvent) []error {
					_, errs := det.ObserveBatch(ctx, evs)
					return errs
				}})
			if err != nil {
				return nil, err
			}
		}
	}
	impl, err := server.New(sp)
	if err != nil {
		return nil, err
	}
	s.API = impl
	s.Path, s.Handler = ratelimitv1connect.NewRateLimitServiceHandler(impl, p.HandlerOptions...)
	return s, nil
}

// Run publishes queued events and consumes llm_call events until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var cerr error
	if s.queue != nil {
		wg.Go(func() { s.queue.Run(ctx) })
	}
	if s.consumer != nil {
		wg.Go(func() { cerr = s.consumer.Run(ctx) })
	}
	wg.Wait()
	return cerr
}
