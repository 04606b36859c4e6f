package engine

import "strings"

// TokenMap maps the placeholders of one request back to their originals.
type TokenMap struct {
	m      map[string]string
	maxLen int
}

// NewTokenMap builds a TokenMap from Redact's entries. Entries whose
// placeholder is not a well-formed ⟨…⟩ token are ignored.
func NewTokenMap(entries []TokenMapEntry) *TokenMap {
	t := &TokenMap{m: make(map[string]string, len(entries))}
	for _, e := range entries {
		p := e.Placeholder
		if len(p) < len(phOpen)+len(phClose)+1 || !strings.HasPrefix(p, phOpen) || !strings.HasSuffix(p, phClose) ||
			strings.Count(p, phOpen) != 1 || strings.Count(p, phClose) != 1 {
			continue
		}
		t.m[p] = e.Original
		t.maxLen = max(t.maxLen, len(p))
	}
	return t
}

// Len is the number of placeholders in the map.
func (t *TokenMap) Len() int { return len(t.m) }

// Restore replaces every placeholder of the map in text by its original.
// Anything else, including placeholders the model altered or invented, is
// left exactly as it is.
func Restore(text string, t *TokenMap) (string, int) {
	if t == nil || len(t.m) == 0 || !strings.Contains(text, phOpen) {
		return text, 0
	}
	var b strings.Builder
	b.Grow(len(text))
	_, n := t.step(&b, text, true)
	return b.String(), n
}

// step restores buf into b. When final is false it stops before anything that
// could still become a placeholder once more bytes arrive, and returns how
// many bytes of buf it consumed. The decision at every '⟨' depends only on the
// maxLen bytes after it, so any chunking gives the same output as one call.
func (t *TokenMap) step(b *strings.Builder, buf string, final bool) (consumed, restored int) {
	i := 0
	for {
		k := strings.Index(buf[i:], phOpen)
		if k < 0 {
			rest := buf[i:]
			hold := 0
			if !final {
				hold = partialSuffix(rest, phOpen)
			}
			b.WriteString(rest[:len(rest)-hold])
			return len(buf) - hold, restored
		}
		p := i + k
		b.WriteString(buf[i:p])
		limit := min(len(buf), p+t.maxLen)
		c := strings.Index(buf[p+len(phOpen):limit], phClose)
		if c < 0 {
			if !final && len(buf)-p < t.maxLen {
				return p, restored
			}
			b.WriteString(phOpen)
			i = p + len(phOpen)
			continue
		}
		end := p + len(phOpen) + c + len(phClose)
		if orig, ok := t.m[buf[p:end]]; ok {
			b.WriteString(orig)
			restored++
			i = end
			continue
		}
		b.WriteString(phOpen)
		i = p + len(phOpen)
	}
}

// partialSuffix returns the length of the longest proper prefix of tok that s ends with.
func partialSuffix(s, tok string) int {
	for l := min(len(tok)-1, len(s)); l > 0; l-- {
		if strings.HasSuffix(s, tok[:l]) {
			return l
		}
	}
	return 0
}

// Restorer restores a streamed answer chunk by chunk. It holds back only a
// possible placeholder prefix (at most the longest placeholder's length), so
// text reaches the client as soon as it cannot be part of a placeholder.
type Restorer struct {
	t        *TokenMap
	pending  string
	restored int
}

// NewRestorer returns a Restorer for one answer.
func NewRestorer(t *TokenMap) *Restorer { return &Restorer{t: t} }

// Feed takes the next chunk and returns the text that is safe to emit now.
func (r *Restorer) Feed(chunk string) string {
	if r.t == nil || len(r.t.m) == 0 {
		return chunk
	}
	buf := chunk
	if r.pending != "" {
		buf = r.pending + chunk
	}
	if r.pending == "" && !strings.Contains(chunk, phOpen) && partialSuffix(chunk, phOpen) == 0 {
		return chunk
	}
	var b strings.Builder
	n, c := r.t.step(&b, buf, false)
	r.restored += c
	r.pending = strings.Clone(buf[n:])
	return b.String()
}

// Flush returns whatever is held back; call it once at the end of the stream.
func (r *Restorer) Flush() string {
	if r.pending == "" {
		return ""
	}
	var b strings.Builder
	_, c := r.t.step(&b, r.pending, true)
	r.restored += c
	r.pending = ""
	return b.String()
}

// Restored counts the placeholders restored so far.
func (r *Restorer) Restored() int { return r.restored }

// Holding reports whether text is held back, waiting for the next chunk.
func (r *Restorer) Holding() bool { return r.pending != "" }
