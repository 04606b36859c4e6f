package checkpoint_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/bulwarkhq/bulwark/services/audit/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

func TestSignOpen_RoundTripsAndRejectsOtherKeysAndOrigins(t *testing.T) {
	sk, vk, _ := note.GenerateKey(rand.Reader, "bulwark.audit/prod")
	s, _ := note.NewSigner(sk)
	v, _ := note.NewVerifier(vk)
	c := checkpoint.Checkpoint{Origin: "bulwark.audit/prod", Size: 42, Root: bytes.Repeat([]byte{7}, 32), Time: time.Date(2026, 12, 3, 18, 0, 0, 123, time.UTC)}
	signed, err := checkpoint.Sign(c, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := checkpoint.Open(signed, v, "bulwark.audit/prod")
	if err != nil || got.Size != 42 || !bytes.Equal(got.Root, c.Root) || !got.Time.Equal(c.Time) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := checkpoint.Open(signed, v, "bulwark.audit/dev"); !errors.Is(err, checkpoint.ErrWrongOrigin) {
		t.Fatalf("wrong origin accepted: %v", err)
	}
	_, other, _ := note.GenerateKey(rand.Reader, "bulwark.audit/prod")
	ov, _ := note.NewVerifier(other)
	if _, err := checkpoint.Open(signed, ov, ""); !errors.Is(err, checkpoint.ErrBadSignature) {
		t.Fatalf("foreign key accepted: %v", err)
	}
	forged := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := checkpoint.Open(forged, v, ""); !errors.Is(err, checkpoint.ErrBadSignature) {
		t.Fatalf("altered size accepted: %v", err)
	}
}

func TestParse_BodyIsC2SPCheckpointFormat(t *testing.T) {
	c := checkpoint.Checkpoint{Origin: "o", Size: 3, Root: make([]byte, 32)}
	if got, want := string(c.Marshal()), "o\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	for _, bad := range []string{"", "o\n3\n", "o\n03\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "o\nx\nAAAA\n", "o\n3\nAAAA\n", "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"} {
		if _, err := checkpoint.Parse([]byte(bad)); !errors.Is(err, checkpoint.ErrMalformed) {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("o\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 2026-01-01T00:00:00Z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := checkpoint.Parse(b)
		if err != nil {
			return
		}
		// Whatever parses re-parses to the same checkpoint from its own body.
		c2, err := checkpoint.Parse(c.Marshal())
		if err != nil || c2.Size != c.Size || !bytes.Equal(c2.Root, c.Root) || c2.Origin != c.Origin {
			t.Fatalf("re-parse of %q: %v", b, err)
		}
	})
}
