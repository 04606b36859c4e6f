package pipeline

import (
	"testing"
	"time"
)

func TestTTLCache_EntryExpiresAtTTLOrEarlierExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTTLCache[string](10, 30*time.Second, func() time.Time { return now })
	_, gen, _ := c.get("a")
	c.put(gen, "a", "x", time.Time{})
	c.put(gen, "b", "y", now.Add(5*time.Second))
	now = now.Add(10 * time.Second)
	if _, _, ok := c.get("a"); !ok {
		t.Fatal("entry gone before its TTL")
	}
	if _, _, ok := c.get("b"); ok {
		t.Fatal("entry outlived its own expiry (e.g. a key's expire time)")
	}
	now = now.Add(25 * time.Second)
	if _, _, ok := c.get("a"); ok {
		t.Fatal("entry outlived the TTL")
	}
}

func TestTTLCache_AnswerFetchedBeforeInvalidationIsNotStored(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTTLCache[string](10, time.Minute, func() time.Time { return now })
	_, gen, _ := c.get("k") // a request starts fetching...
	c.invalidate()          // ...policy_changed arrives meanwhile...
	c.put(gen, "k", "stale", time.Time{})
	if _, _, ok := c.get("k"); ok {
		t.Fatal("a decision fetched before the invalidation was cached after it")
	}
}

func TestTTLCache_ZeroTTLCachesNothing(t *testing.T) {
	c := newTTLCache[string](10, 0, time.Now)
	_, gen, _ := c.get("k")
	c.put(gen, "k", "v", time.Time{})
	if _, _, ok := c.get("k"); ok {
		t.Fatal("cached with caching off")
	}
}

func TestDepDenial_MapsDependencyErrorsToStatuses(t *testing.T) {
	for _, tc := range []struct {
		dep    string
		err    error
		status int
	}{
		{"identity", ErrUnauthenticated, 401},
		{"identity", ErrUnavailable, 503},
		{"ratelimit", ErrUnavailable, 503},
		{"redaction", ErrDeadline, 504},
		{"router", ErrNotFound, 404},
		{"router", ErrUnavailable, 502},
		{"router", ErrRejected, 400},
	} {
		if got := depDenial(tc.dep, tc.err, KindUnavailable).Status(); got != tc.status {
			t.Errorf("%s %v = %d, want %d", tc.dep, tc.err, got, tc.status)
		}
	}
}
