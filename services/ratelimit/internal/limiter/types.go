package limiter

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. internal/server maps them to Connect codes.
var (
	// ErrInvalidRequest reports a request or limit spec that cannot be evaluated.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidReservation reports a reservation id that was not issued by this service.
	ErrInvalidReservation = errors.New("invalid reservation id")
	// ErrStoreUnavailable reports that Redis could not be reached and the request did not ask to fail open.
	ErrStoreUnavailable = errors.New("rate limit store unavailable")
)

// Kind says what a limit counts.
type Kind int

// Limit kinds, numbered as in the protocol.
const (
	KindRequests    Kind = 1
	KindTokens      Kind = 2
	KindSpend       Kind = 3
	KindConcurrency Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindRequests:
		return "requests"
	case KindTokens:
		return "tokens"
	case KindSpend:
		return "spend"
	case KindConcurrency:
		return "concurrency"
	}
	return "unknown"
}

// Dimension is one descriptor of a subject that a limit is keyed on.
type Dimension int

// Dimensions, numbered as in the protocol.
const (
	DimAPIKey      Dimension = 1
	DimPrincipal   Dimension = 2
	DimTeam        Dimension = 3
	DimModel       Dimension = 4
	DimProvider    Dimension = 5
	DimEnvironment Dimension = 6
)

// Calendar periods a budget may reset on (UTC).
const (
	CalendarHour  = "hour"
	CalendarDay   = "day"
	CalendarMonth = "month"
)

// Limit is one limit as configured by policy.
type Limit struct {
	// Name identifies the limit in answers and headers.
	Name string
	// Kind of quantity limited.
	Kind Kind
	// Dimensions the limit is keyed on.
	Dimensions []Dimension
	// Limit is the amount allowed per period, or in flight for concurrency.
	Limit int64
	// Period of a rolling limit; unused for concurrency and calendar budgets.
	Period time.Duration
	// Burst is how many requests beyond one GCRA lets through at once.
	Burst int64
	// Calendar, when set ("hour", "day" or "month"), makes a budget reset at UTC boundaries.
	Calendar string
}

// Subject is who and what a request is.
type Subject struct {
	APIKeyID    string
	PrincipalID string
	TeamID      string
	Model       string
	Provider    string
	Environment string
}

func (s Subject) value(d Dimension) string {
	switch d {
	case DimAPIKey:
		return s.APIKeyID
	case DimPrincipal:
		return s.PrincipalID
	case DimTeam:
		return s.TeamID
	case DimModel:
		return s.Model
	case DimProvider:
		return s.Provider
	case DimEnvironment:
		return s.Environment
	}
	return ""
}

// ReserveRequest asks to take one request's share of every limit.
type ReserveRequest struct {
	// RequestID makes Reserve idempotent; empty means a new id is made.
	RequestID string
	Subject   Subject
	Limits    []Limit
	// InputTokens is the estimated prompt size.
	InputTokens int64
	// MaxOutputTokens is the most the answer may use.
	MaxOutputTokens int64
	// CostMicros overrides the price-table estimate when above 0.
	CostMicros int64
	// FailOpen lets the request through the local limiter when Redis is unreachable.
	FailOpen bool
	// TTL is how long an unsettled reservation holds; 0 means the limiter's default.
	TTL time.Duration
}

// Status is one limit's state after a decision.
type Status struct {
	Name       string
	Kind       Kind
	Limit      int64
	Remaining  int64
	ResetAfter time.Duration
	RetryAfter time.Duration
}

// Decision answers a Reserve.
type Decision struct {
	Allowed       bool
	ReservationID string
	// DeniedBy names the first limit that did not fit.
	DeniedBy string
	Statuses []Status
	// RetryAfter is when the request would fit; 0 when allowed, and the longest
	// limit period when it never can (it asks for more than a limit allows).
	RetryAfter time.Duration
	// Degraded is true when Redis was unreachable and the local limiter decided.
	Degraded bool
	// Replayed is true when the request id had already been reserved.
	Replayed           bool
	ReservedTokens     int64
	ReservedCostMicros int64
	// Now is the clock the decision was made at.
	Now time.Time
}

// Usage is what a request really used, reported at Settle.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	// CostMicros overrides the price table when above 0.
	CostMicros int64
	// ModelServed prices the usage when it differs from the model requested.
	ModelServed string
}

// SettleResult confirms a settlement.
type SettleResult struct {
	// Settled is false when the reservation had expired or was already settled or released.
	Settled    bool
	CostMicros int64
}

const maxLimits = 32

func validate(limits []Limit) error {
	if len(limits) > maxLimits {
		return fmt.Errorf("%w: at most %d limits per request", ErrInvalidRequest, maxLimits)
	}
	seen := make(map[string]bool, len(limits))
	for i, l := range limits {
		if l.Name == "" {
			return fmt.Errorf("%w: limit %d has no name", ErrInvalidRequest, i)
		}
		if seen[l.Name] {
			return fmt.Errorf("%w: limit name %q repeated", ErrInvalidRequest, l.Name)
		}
		seen[l.Name] = true
		if l.Limit < 0 {
			return fmt.Errorf("%w: limit %q is negative", ErrInvalidRequest, l.Name)
		}
		for _, d := range l.Dimensions {
			if d < DimAPIKey || d > DimEnvironment {
				return fmt.Errorf("%w: limit %q has an unknown dimension", ErrInvalidRequest, l.Name)
			}
		}
		switch l.Kind {
		case KindRequests:
			if l.Period <= 0 || l.Limit == 0 {
				return fmt.Errorf("%w: request limit %q needs a period and a limit above 0", ErrInvalidRequest, l.Name)
			}
			if l.Burst < 0 {
				return fmt.Errorf("%w: limit %q has a negative burst", ErrInvalidRequest, l.Name)
			}
			if l.Calendar != "" {
				return fmt.Errorf("%w: request limit %q cannot use a calendar period", ErrInvalidRequest, l.Name)
			}
		case KindTokens, KindSpend:
			switch l.Calendar {
			case "":
				if l.Period <= 0 || l.Limit == 0 {
					return fmt.Errorf("%w: budget %q needs a period (or calendar period) and a limit above 0", ErrInvalidRequest, l.Name)
				}
			case CalendarHour, CalendarDay, CalendarMonth:
			default:
				return fmt.Errorf("%w: budget %q has calendar period %q; want hour, day or month", ErrInvalidRequest, l.Name, l.Calendar)
			}
		case KindConcurrency:
		default:
			return fmt.Errorf("%w: limit %q has no valid kind", ErrInvalidRequest, l.Name)
		}
	}
	return nil
}
