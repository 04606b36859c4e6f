package pipeline

import (
	"errors"
	"net/http"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
)

// Kind classifies why a call did not get an answer.
type Kind int

// Kinds, each with one HTTP status.
const (
	KindInternal Kind = iota
	KindInvalid
	KindUnauthenticated
	KindForbidden
	KindNotFound
	KindBlocked
	KindRateLimited
	KindUnavailable
	KindProvider
	KindTimeout
	KindTooLarge
)

// Denial is a call refused or failed by the pipeline. Message is safe to show
// the client: it never holds payload data or secrets.
type Denial struct {
	Kind       Kind
	Message    string
	Reasons    []string
	RetryAfter time.Duration
	Limits     []*ratelimitv1.LimitStatus
	redaction  bool
	audited    bool
}

func (d *Denial) Error() string { return d.Message }

// Status is the HTTP status of the denial.
func (d *Denial) Status() int {
	switch d.Kind {
	case KindInvalid, KindBlocked:
		return http.StatusBadRequest
	case KindUnauthenticated:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindRateLimited:
		return http.StatusTooManyRequests
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindProvider:
		return http.StatusBadGateway
	case KindTimeout:
		return http.StatusGatewayTimeout
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func (d *Denial) decision() auditv1.Decision {
	switch d.Kind {
	case KindUnauthenticated:
		return auditv1.Decision_DECISION_DENIED_AUTH
	case KindForbidden, KindInvalid, KindNotFound, KindTooLarge:
		return auditv1.Decision_DECISION_DENIED_POLICY
	case KindRateLimited:
		return auditv1.Decision_DECISION_DENIED_RATE_LIMIT
	case KindBlocked:
		return auditv1.Decision_DECISION_DENIED_REDACTION
	case KindProvider, KindTimeout:
		return auditv1.Decision_DECISION_FAILED_PROVIDER
	}
	return auditv1.Decision_DECISION_FAILED_INTERNAL
}

func (d *Denial) reasons() []string {
	if len(d.Reasons) > 0 {
		return d.Reasons
	}
	return []string{d.Message}
}

// depDenial classifies a dependency error. refused is the kind used when the
// dependency refused the request (ErrUnauthenticated / ErrRejected).
func depDenial(dep string, err error, refused Kind) *Denial {
	var d *Denial
	if errors.As(err, &d) {
		return d
	}
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return &Denial{Kind: KindUnauthenticated, Message: "invalid credential"}
	case errors.Is(err, ErrNotFound):
		return &Denial{Kind: KindNotFound, Message: dep + ": not found"}
	case errors.Is(err, ErrRejected):
		k := refused
		if k == KindUnavailable || k == KindProvider {
			k = KindInvalid
		}
		return &Denial{Kind: k, Message: dep + " refused the request"}
	case errors.Is(err, ErrDeadline):
		return &Denial{Kind: KindTimeout, Message: dep + " did not answer in time"}
	}
	if dep == "router" {
		return &Denial{Kind: KindProvider, Message: "no provider could answer"}
	}
	return &Denial{Kind: KindUnavailable, Message: dep + " unavailable"}
}
