package limiter

import (
	"errors"
	"strings"
	"testing"
)

func TestPriceTable_MatchesTheLongestModelFamily(t *testing.T) {
	pt := NewPriceTable(DefaultPrices(), Price{})
	cases := map[string]Price{
		"gpt-4o":                   {2.50, 10},
		"gpt-4o-2024-08-06":        {2.50, 10},
		"gpt-4o-mini":              {0.15, 0.60},
		"gpt-4o-mini-2024-07-18":   {0.15, 0.60},
		"openai/gpt-4.1-nano":      {0.10, 0.40},
		"claude-sonnet-4-20250514": {3, 15},
		"claude-opus-4-5-20251101": {5, 25},
		"claude-3-5-haiku-latest":  {0.80, 4},
		"GPT-4O":                   {2.50, 10},
		"o3-mini":                  {1.10, 4.40},
		"o3":                       {2, 8},
	}
	for model, want := range cases {
		if got := pt.Lookup(model); got != want {
			t.Errorf("%s priced %+v; want %+v", model, got, want)
		}
	}
	// "gpt-4o" must not take "gpt-4" prices, nor an unknown model go free.
	if got := pt.Lookup("unknown-model"); got != (Price{15, 75}) && got != (Price{30, 60}) {
		t.Errorf("unknown model priced %+v; want the most expensive entry", got)
	}
	if got := pt.Cost("gpt-4o", 1000, 500); got != 2500+5000 {
		t.Errorf("cost %d", got)
	}
	if got := pt.Cost("gpt-4o-mini", 1, 1); got != 1 { // 0.75 micro-dollars rounds up
		t.Errorf("fractional cost %d; want rounded up to 1", got)
	}
}

func TestParsePrices_OverridesAndRejectsGarbage(t *testing.T) {
	p, err := ParsePrices("gpt-4o=1/2, my-local-model=0/0")
	if err != nil {
		t.Fatal(err)
	}
	if p["gpt-4o"] != (Price{1, 2}) || p["my-local-model"] != (Price{}) || p["claude-sonnet-4"] != (Price{3, 15}) {
		t.Fatalf("parsed %+v", p)
	}
	for _, bad := range []string{"gpt-4o", "x=1", "x=a/b", "=1/2", "x=-1/2", "x=NaN/1"} {
		if _, err := ParsePrices(bad); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseReservationID(f *testing.F) {
	f.Add(reservationID(remotePrefix, "prod/team-1", "req-1"))
	f.Add(reservationID(localPrefix, "", "x"))
	f.Add("r1.!!!")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		prefix, tag, req, err := parseReservationID(id)
		if err != nil {
			return
		}
		if strings.ContainsAny(tag, "{}") || req == "" {
			t.Fatalf("accepted a tag that could escape its hash slot: %q", tag)
		}
		if again := reservationID(prefix, tag, req); again != id && !strings.HasPrefix(id, prefix) {
			t.Fatalf("round trip %q -> %q", id, again)
		}
	})
}

func FuzzKeysStayInOneSlot(f *testing.F) {
	f.Add("team{1}", "key:1|x", "prod}")
	f.Fuzz(func(t *testing.T, team, key, env string) {
		l := &Limiter{prefix: "p:", partition: PartitionTeam}
		s := Subject{TeamID: team, APIKeyID: key, Environment: env}
		tag := l.tag(s)
		for _, lim := range []Limit{{Name: "a{b}", Kind: KindTokens, Dimensions: []Dimension{DimAPIKey, DimTeam}}} {
			st, z := limitKeys(l.prefix, tag, s, lim)
			for _, k := range []string{st, z, l.recordKey(tag, key)} {
				open := strings.IndexByte(k, '{')
				end := strings.IndexByte(k[open+1:], '}')
				if end < 0 || k[open+1:open+1+end] != tag {
					t.Fatalf("key %q does not carry the hash tag %q first", k, tag)
				}
			}
		}
	})
}
