package engine

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

var tokenizeAll = &Profile{Name: "tokenize-all", DefaultAction: ActionTokenize, MinScore: 0}

var fuzzSeeds = []string{
	"",
	"bob@example.com ⟨EMAIL_ADDRESS_1⟩",
	"⟨EMAIL_ADDRESS_" + "bob@example.com" + "⟩",
	"ssn 536-22-8829 card 4111 1111 1111 1111 +1 (415) 555-2671",
	"ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ\u200b\u202e",
	"\xff\xfe bob@\xe2\x9f example.com ⟨⟨PHONE_NUMBER_1⟩⟩",
	"-----BEGIN PRIVATE KEY-----\nabc",
	"password=Hunter2! AKIAIOSFODNN7EXAMPLE https://u:p4ss@h.io/?token=abcdefgh12345",
	"GB82 WEST 1234 5698 7654 32 AB 12 34 56 C 2001:db8::1 00:1a:2b:3c:4d:5e",
}

// checkInvariants asserts the properties every input must satisfy.
func checkInvariants(t *testing.T, e *Engine, in string) {
	r, err := e.Inspect(in, "audit-only")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Findings {
		if f.Start < 0 || f.End > len(in) || f.Start > f.End {
			t.Fatalf("offsets %d..%d out of range for %q", f.Start, f.End, in)
		}
		if !runeBoundary(in, f.Start) || !runeBoundary(in, f.End) {
			t.Fatalf("offsets %d..%d split a rune in %q", f.Start, f.End, in)
		}
	}
	// Two segments so cross-segment token reuse is exercised.
	res, err := e.Redact(RedactRequest{Segments: []Segment{{ID: "a", Text: in}, {ID: "b", Text: in + " x"}}, Profile: tokenizeAll})
	if err != nil {
		t.Fatal(err)
	}
	tm := NewTokenMap(res.TokenMap)
	for i, seg := range res.Segments {
		want := in
		if i == 1 {
			want += " x"
		}
		got, _ := Restore(seg.Text, tm)
		if got != want {
			t.Fatalf("restore(redact(x)) != x\n x=%q\n redacted=%q\n restored=%q", want, seg.Text, got)
		}
		// Streaming restore equals whole restore for several chunkings.
		for _, size := range []int{1, 2, 3, 5, 7, 16} {
			if s := streamRestore(tm, seg.Text, size); s != got {
				t.Fatalf("streaming (chunk %d) %q != whole %q", size, s, got)
			}
		}
	}
}

func runeBoundary(s string, i int) bool {
	if i == 0 || i == len(s) {
		return true
	}
	// A boundary starts a rune: either a valid rune start or a byte that
	// decodes as an invalid one-byte rune.
	if utf8.RuneStart(s[i]) {
		return true
	}
	// i is inside a sequence: only fine if the sequence that covers it is invalid.
	for k := i - 1; k >= 0 && k >= i-3; k-- {
		if utf8.RuneStart(s[k]) {
			_, sz := utf8.DecodeRuneInString(s[k:])
			return k+sz <= i
		}
	}
	return true
}

func streamRestore(tm *TokenMap, s string, size int) string {
	r := NewRestorer(tm)
	var b strings.Builder
	for len(s) > 0 {
		n := min(size, len(s))
		b.WriteString(r.Feed(s[:n]))
		s = s[n:]
	}
	b.WriteString(r.Flush())
	return b.String()
}

func TestProperties_HoldOnSeedsAndCorpus(t *testing.T) {
	e := newTestEngine(t)
	for _, s := range fuzzSeeds {
		checkInvariants(t, e, s)
	}
	for _, c := range loadCorpus(t) {
		checkInvariants(t, e, c.Text)
	}
}

func FuzzRedactRestore(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	e := newTestEngine(f)
	f.Fuzz(func(t *testing.T, in string) {
		checkInvariants(t, e, in)
	})
}

// FuzzStreamingRestore feeds arbitrary text with placeholders in arbitrary chunks.
func FuzzStreamingRestore(f *testing.F) {
	f.Add("a ⟨EMAIL_ADDRESS_1⟩ b ⟨EMAIL_ADDRESS_1 ⟨⟨PHONE_NUMBER_12⟩", uint8(3))
	f.Add("\xe2\x9f\xa8EMAIL_ADDRESS_1\xe2\x9f", uint8(1))
	tm := NewTokenMap([]TokenMapEntry{
		{Placeholder: "⟨EMAIL_ADDRESS_1⟩", Original: "bob@example.com"},
		{Placeholder: "⟨PHONE_NUMBER_12⟩", Original: "⟨EMAIL_ADDRESS_1⟩"},
	})
	f.Fuzz(func(t *testing.T, s string, size uint8) {
		whole, _ := Restore(s, tm)
		if got := streamRestore(tm, s, int(size%32)+1); got != whole {
			t.Fatalf("stream %q != whole %q", got, whole)
		}
	})
}

// TestProperties_HoldOnRandomMixesOfValuesAndNoise builds inputs from PII
// fragments, placeholder look-alikes, invisible characters and random bytes,
// so the invariants are checked well beyond the seeds on every test run.
func TestProperties_HoldOnRandomMixesOfValuesAndNoise(t *testing.T) {
	e := newTestEngine(t)
	frags := []string{"bob@example.com", "+1 (415) 555-2671", "4111 1111 1111 1111", "536-22-8829", "⟨", "⟩", "⟨EMAIL_ADDRESS_1⟩",
		"⟨PHONE_NUMBER_", "\u200b", "\u202e", "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "AKIAIOSFODNN7EXAMPLE", "password=Hunter2!",
		"GB82 WEST 1234 5698 7654 32", "名前", "\xff", "\xe2\x9f", " ", "\n", "My name is Ada Lovelace", "192.168.0.1", "-----BEGIN PRIVATE KEY-----"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		var b strings.Builder
		for n := rng.IntN(12); n >= 0; n-- {
			if rng.IntN(4) == 0 {
				b.WriteByte(byte(rng.IntN(256)))
			} else {
				b.WriteString(frags[rng.IntN(len(frags))])
			}
		}
		checkInvariants(t, e, b.String())
	}
}
