package platformtest

import (
	"strings"
	"testing"

	"github.com/bulwarkhq/bulwark/services/platform"
)

// ServiceAuthValidated checks a service's configuration check for its
// callers' authentication: validate is the service's Config.Validate with a
// in an otherwise valid configuration. Without identity (no URL, no service
// credential, or neither) it must refuse and name IDENTITY_URL; with both, or
// with auth disabled, it must accept.
func ServiceAuthValidated(t testing.TB, validate func(a platform.ServiceAuth) error) {
	t.Helper()
	for name, a := range map[string]platform.ServiceAuth{
		"nothing":       {},
		"no credential": {IdentityURL: "http://identity:8081"},
		"no identity":   {ServiceCredential: "bk_dev_x"},
	} {
		if err := validate(a); err == nil || !strings.Contains(err.Error(), "IDENTITY_URL") {
			t.Errorf("%s: validated (%v)", name, err)
		}
	}
	for name, a := range map[string]platform.ServiceAuth{
		"identity":      {IdentityURL: "http://identity:8081", ServiceCredential: "bk_dev_x"},
		"auth disabled": {AuthDisabled: true},
	} {
		if err := validate(a); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
