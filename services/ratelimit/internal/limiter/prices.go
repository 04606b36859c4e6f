package limiter

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Price is what a model costs, in US dollars per million tokens, which is the
// same number as micro-dollars per token.
type Price struct {
	Input  float64
	Output float64
}

// PriceTable prices models. A model matches the longest entry that is a prefix
// of its name, so dated versions ("gpt-4o-2024-08-06") take their family's
// price. A model that matches nothing is priced at Fallback, which by default
// is the most expensive entry: an unknown model must not make a spend budget
// meaningless.
type PriceTable struct {
	entries  map[string]Price
	keys     []string // longest first
	Fallback Price
}

// DefaultPrices lists list prices (USD per million tokens) of common OpenAI and
// Anthropic models. Deployments override or extend them with
// BULWARK_RATELIMIT_PRICES.
func DefaultPrices() map[string]Price {
	return map[string]Price{
		"gpt-5":                  {1.25, 10},
		"gpt-5-mini":             {0.25, 2},
		"gpt-5-nano":             {0.05, 0.40},
		"gpt-4.1":                {2, 8},
		"gpt-4.1-mini":           {0.40, 1.60},
		"gpt-4.1-nano":           {0.10, 0.40},
		"gpt-4o":                 {2.50, 10},
		"gpt-4o-mini":            {0.15, 0.60},
		"gpt-4-turbo":            {10, 30},
		"gpt-4":                  {30, 60},
		"gpt-3.5-turbo":          {0.50, 1.50},
		"o1":                     {15, 60},
		"o1-mini":                {1.10, 4.40},
		"o3":                     {2, 8},
		"o3-mini":                {1.10, 4.40},
		"o4-mini":                {1.10, 4.40},
		"text-embedding-3-small": {0.02, 0},
		"text-embedding-3-large": {0.13, 0},
		"claude-opus-4":          {15, 75},
		"claude-opus-4-5":        {5, 25},
		"claude-sonnet-4":        {3, 15},
		"claude-haiku-4-5":       {1, 5},
		"claude-3-7-sonnet":      {3, 15},
		"claude-3-5-sonnet":      {3, 15},
		"claude-3-5-haiku":       {0.80, 4},
		"claude-3-opus":          {15, 75},
		"claude-3-haiku":         {0.25, 1.25},
	}
}

// NewPriceTable builds a table from entries; a zero fallback becomes the most
// expensive entry.
func NewPriceTable(entries map[string]Price, fallback Price) *PriceTable {
	t := &PriceTable{entries: make(map[string]Price, len(entries)), Fallback: fallback}
	for k, v := range entries {
		k = strings.ToLower(strings.TrimSpace(k))
		t.entries[k] = v
		t.keys = append(t.keys, k)
		if fallback == (Price{}) && v.Input+v.Output > t.Fallback.Input+t.Fallback.Output {
			t.Fallback = v
		}
	}
	sort.Slice(t.keys, func(i, j int) bool {
		if len(t.keys[i]) != len(t.keys[j]) {
			return len(t.keys[i]) > len(t.keys[j])
		}
		return t.keys[i] < t.keys[j]
	})
	return t
}

// ParsePrices reads "model=input/output,model=input/output" (USD per million
// tokens) and returns the defaults with those entries added or replaced.
func ParsePrices(spec string) (map[string]Price, error) {
	out := DefaultPrices()
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		model, prices, ok := strings.Cut(item, "=")
		in, outp, ok2 := strings.Cut(prices, "/")
		if !ok || !ok2 || strings.TrimSpace(model) == "" {
			return nil, fmt.Errorf("%w: price %q: want model=input/output", ErrInvalidRequest, item)
		}
		pi, err1 := strconv.ParseFloat(strings.TrimSpace(in), 64)
		po, err2 := strconv.ParseFloat(strings.TrimSpace(outp), 64)
		if err1 != nil || err2 != nil || pi < 0 || po < 0 || math.IsInf(pi, 0) || math.IsInf(po, 0) || math.IsNaN(pi) || math.IsNaN(po) {
			return nil, fmt.Errorf("%w: price %q: want non-negative numbers", ErrInvalidRequest, item)
		}
		out[strings.ToLower(strings.TrimSpace(model))] = Price{pi, po}
	}
	return out, nil
}

// Lookup returns the price of a model.
func (t *PriceTable) Lookup(model string) Price {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 { // "openai/gpt-4o" style names
		m = m[i+1:]
	}
	if p, ok := t.entries[m]; ok {
		return p
	}
	for _, k := range t.keys {
		if strings.HasPrefix(m, k) && (len(m) == len(k) || m[len(k)] == '-' || m[len(k)] == '@' || m[len(k)] == ':') {
			return t.entries[k]
		}
	}
	return t.Fallback
}

// Cost returns the cost in micro-dollars of the given tokens, rounded up.
func (t *PriceTable) Cost(model string, input, output int64) int64 {
	p := t.Lookup(model)
	return costOf(p, input, output)
}

func costOf(p Price, input, output int64) int64 {
	c := float64(input)*p.Input + float64(output)*p.Output
	if c <= 0 {
		return 0
	}
	if c > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(math.Ceil(c - 1e-9))
}
