package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/bulwarkhq/bulwark/services/gateway/internal/pipeline"
)

func TestDepErr_RouterRefusalReachesTheCallerAs403WithItsReason(t *testing.T) {
	for _, code := range []connect.Code{connect.CodePermissionDenied, connect.CodeFailedPrecondition} {
		err := depErr("router", connect.NewError(code, errors.New(`provider "openai": SOC 2 report expired 3 days ago`)), false)
		var d *pipeline.Denial
		if !errors.As(err, &d) {
			t.Fatalf("%v: got %T, want a Denial", code, err)
		}
		if d.Status() != http.StatusForbidden || !strings.Contains(d.Message, "SOC 2 report expired") {
			t.Fatalf("%v: status %d message %q", code, d.Status(), d.Message)
		}
	}
}

func TestDepErr_OtherDependenciesKeepTheirMessagesOut(t *testing.T) {
	err := depErr("ratelimit", connect.NewError(connect.CodePermissionDenied, errors.New("internal detail")), false)
	if !errors.Is(err, pipeline.ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	var d *pipeline.Denial
	if errors.As(err, &d) {
		t.Fatalf("ratelimit's message became client-facing: %q", d.Message)
	}
}
