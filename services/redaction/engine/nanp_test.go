package engine

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// The generated area-code table must agree with libphonenumber itself.
func TestNANPTable_AgreesWithLibphonenumber(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 3000; i++ {
		n := strconv.Itoa(2000000000 + rng.IntN(8000000000))
		if got, want := phoneValid(1, n, false), phoneValidUncached(1, n, false); got != want {
			t.Errorf("+1 %s: table says %v, libphonenumber %v", n, got, want)
		}
	}
}
