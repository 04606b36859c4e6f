package main

import (
	"strings"
	"testing"
	"time"

	auditv1 "github.com/bulwarkhq/bulwark/gen/go/bulwark/audit/v1"
)

func TestParseTime_AcceptsRFC3339AndDurationsBackFromNow(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-03-01T00:00:00Z": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"90m":                  now.Add(-90 * time.Minute),
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.AddDate(0, 0, -7),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.AsTime().Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got.AsTime(), err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5h", "7days", "2026-03-01"} {
		if _, err := parseTime(bad, now); err == nil {
			t.Errorf("parseTime(%q) accepted", bad)
		}
	}
	if got, err := parseTime("", now); got != nil || err != nil {
		t.Errorf("empty time: %v %v", got, err)
	}
}

func TestParseEnum_ShortCaseInsensitiveNamesAndAHelpfulError(t *testing.T) {
	v, err := parseEnum("Denied-Policy", decisionPrefix, auditv1.Decision_value)
	if err != nil || auditv1.Decision(v) != auditv1.Decision_DECISION_DENIED_POLICY {
		t.Fatalf("got %v %v", v, err)
	}
	_, err = parseEnum("unspecified_typo", decisionPrefix, auditv1.Decision_value)
	if err == nil || !strings.Contains(err.Error(), "allowed, denied_auth, denied_policy") {
		t.Fatalf("error: %v", err)
	}
}
