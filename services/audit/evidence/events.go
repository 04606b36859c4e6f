package evidence

import (
	"errors"
	"fmt"
	"strings"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
	ratelimitv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/ratelimit/v1"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
)

// Subjects of the audit stream.
const (
	SubjectLLMCall       = "bulwark.audit.v1.llm_call"
	SubjectAdminAction   = "bulwark.audit.v1.admin_action"
	SubjectDeadLetter    = "bulwark.audit.v1.dead_letter"
	SubjectAnomaly       = "bulwark.ratelimit.v1.anomaly"
	SubjectLimitExceeded = "bulwark.ratelimit.v1.limit_exceeded"
)

// Record kinds; the kind of a well-formed record is the last token of its subject.
const (
	KindLLMCall       = "llm_call"
	KindAdminAction   = "admin_action"
	KindDeadLetter    = "dead_letter"
	KindAnomaly       = "anomaly"
	KindLimitExceeded = "limit_exceeded"
	// KindInvalid marks a message that failed validation. It is still a leaf of the log
	// (the log proves what the stream holds), and a DeadLetter naming it follows it.
	KindInvalid = "invalid"
)

// ErrInvalidEvent reports a message that does not decode or fails validation.
var ErrInvalidEvent = errors.New("invalid audit event")

// maxField bounds identifiers so that a hostile publisher cannot bloat the index.
const maxField = 256

// Decode parses and validates the body of a message on subject and returns its kind and
// the decoded message: *auditv1.AuditEvent, *auditv1.DeadLetter,
// *ratelimitv1.AnomalyEvent or *ratelimitv1.LimitExceededEvent.
func Decode(subject string, data []byte) (string, proto.Message, error) {
	var msg proto.Message
	kind := subject[strings.LastIndexByte(subject, '.')+1:]
	switch subject {
	case SubjectLLMCall, SubjectAdminAction:
		msg = &auditv1.AuditEvent{}
	case SubjectDeadLetter:
		msg = &auditv1.DeadLetter{}
	case SubjectAnomaly:
		msg = &ratelimitv1.AnomalyEvent{}
	case SubjectLimitExceeded:
		msg = &ratelimitv1.LimitExceededEvent{}
	default:
		return KindInvalid, nil, fmt.Errorf("%w: unknown subject %q", ErrInvalidEvent, subject)
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		return KindInvalid, nil, fmt.Errorf("%w: not a %s message: %v", ErrInvalidEvent, msg.ProtoReflect().Descriptor().Name(), err)
	}
	if err := validate(subject, msg); err != nil {
		return KindInvalid, nil, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	return kind, msg, nil
}

// NewMessage returns an empty message of the type that Decode returns for kind.
func NewMessage(kind string) proto.Message {
	switch kind {
	case KindLLMCall, KindAdminAction:
		return &auditv1.AuditEvent{}
	case KindDeadLetter:
		return &auditv1.DeadLetter{}
	case KindAnomaly:
		return &ratelimitv1.AnomalyEvent{}
	case KindLimitExceeded:
		return &ratelimitv1.LimitExceededEvent{}
	}
	return nil
}

func validID(id string) error {
	if _, err := ulid.ParseStrict(id); err != nil {
		return fmt.Errorf("event_id is not a ULID")
	}
	return nil
}

func validate(subject string, msg proto.Message) error {
	switch m := msg.(type) {
	case *auditv1.AuditEvent:
		if err := validID(m.GetEventId()); err != nil {
			return err
		}
		if !m.GetTime().IsValid() || m.GetTime().GetSeconds() == 0 {
			return errors.New("time is missing")
		}
		if m.GetSourceService() == "" {
			return errors.New("source_service is missing")
		}
		switch subject {
		case SubjectLLMCall:
			c := m.GetLlmCall()
			if c == nil {
				return errors.New("llm_call subject without llm_call payload")
			}
			if c.GetDecision() == auditv1.Decision_DECISION_UNSPECIFIED {
				return errors.New("decision is unspecified")
			}
			if c.GetRequestId() == "" {
				return errors.New("request_id is missing")
			}
			for _, f := range []string{c.GetRequestId(), c.GetPrincipalId(), c.GetTeamId(), c.GetApiKeyId(), c.GetModelRequested(), c.GetModelServed(), c.GetProvider()} {
				if len(f) > maxField {
					return errors.New("identifier longer than 256 bytes")
				}
			}
		case SubjectAdminAction:
			a := m.GetAdminAction()
			if a == nil {
				return errors.New("admin_action subject without admin_action payload")
			}
			if a.GetActor() == "" || a.GetAction() == "" {
				return errors.New("actor or action is missing")
			}
			if len(a.GetActor()) > maxField {
				return errors.New("identifier longer than 256 bytes")
			}
		}
	case *auditv1.DeadLetter:
		if m.GetStreamSequence() == 0 || m.GetReason() == "" {
			return errors.New("dead letter without stream_sequence or reason")
		}
	case *ratelimitv1.AnomalyEvent:
		if err := validID(m.GetEventId()); err != nil {
			return err
		}
		if !m.GetTime().IsValid() || m.GetTime().GetSeconds() == 0 {
			return errors.New("time is missing")
		}
	case *ratelimitv1.LimitExceededEvent:
		if err := validID(m.GetEventId()); err != nil {
			return err
		}
		if !m.GetTime().IsValid() || m.GetTime().GetSeconds() == 0 {
			return errors.New("time is missing")
		}
	}
	return nil
}
