package engine

import (
	"sort"
	"strings"
	"sync"
)

// cand is a finding in normalised offsets.
type cand struct {
	start, end int
	typ, rule  string
	score      float64
	class      string
}

type kwHit struct {
	pos, end int32
	bits     uint32
}

const maxGroups = 16

type grp struct{ s, e int }

// numRun is a sequence of digit groups joined by separators such as "-", " ", "." or "(...)".
type numRun struct {
	plus bool
	g    []grp // a window of scanner.groups
	n    int
}

// scannerPool recycles scanners so their slices are reused across calls.
var scannerPool = sync.Pool{New: func() any { return new(scanner) }}

func getScanner(s string) *scanner {
	sc := scannerPool.Get().(*scanner)
	sc.s = s
	sc.out, sc.inj, sc.kws, sc.nums, sc.groups, sc.ctxTok = sc.out[:0], sc.inj[:0], sc.kws[:0], sc.nums[:0], sc.groups[:0], sc.ctxTok[:0]
	return sc
}

func putScanner(sc *scanner) {
	if cap(sc.out) > 1<<15 || cap(sc.tmp) > 1<<15 || cap(sc.groups) > 1<<16 || cap(sc.kws) > 1<<16 {
		return // do not keep what a huge input grew
	}
	sc.s = ""
	scannerPool.Put(sc)
}

// scanner holds the state of one detection pass over one normalised text.
type scanner struct {
	s      string
	out    []cand
	inj    []cand
	kws    []kwHit
	nums   []numRun
	groups []grp
	// scratch for overlap resolution
	keys     []uint64
	tmp      []cand
	resolved []cand
	ctxTok   []grp
	low      [160]byte
}

// delim marks bytes that end a token.
var delim = func() [256]bool {
	var t [256]bool
	for _, c := range " \t\r\n\f\v\"'`<>()[]{},;|\\\x00\x1a" {
		t[c] = true
	}
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	return t
}()

func (sc *scanner) add(start, end int, typ, rule string, score float64) {
	sc.out = append(sc.out, cand{start: start, end: end, typ: typ, rule: rule, score: score})
}

func (sc *scanner) addSecret(start, end int, rule string) {
	sc.out = append(sc.out, cand{start: start, end: end, typ: Secret, rule: rule, score: 0.95})
}

// run is the single pass: tokens are split on delimiters, digit sequences go to
// the numeric collector, other tokens are dispatched on their first bytes and
// letter runs are looked up as context words.
func (sc *scanner) run() {
	s := sc.s
	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		if c >= 0x80 || delim[c] {
			if c == '<' || c == '[' {
				sc.templateToken(i)
			}
			i++
			continue
		}
		if isDigit(c) || (c == '+' && i+1 < n && isDigit(s[i+1])) {
			if end, ok := sc.numeric(i); ok {
				i = end
				continue
			}
		}
		i = sc.token(i)
	}
	sc.phase2()
}

// numeric collects a run of digit groups starting at i. It declines (ok=false)
// when the first group is glued to letters or other token characters, so the
// token path sees things like "0x…", "1A1zP…", "2001:db8::1" or "a1@b.com".
func (sc *scanner) numeric(i int) (int, bool) {
	s := sc.s
	n := len(s)
	var r numRun
	base := len(sc.groups)
	if s[i] == '+' {
		r.plus = true
		i++
	}
	start := i
	if i+17 <= n && macShape(s[i:i+17]) && (i+17 == n || !isAlnum(s[i+17])) {
		return start, false
	}
	for r.n < maxGroups {
		j := i
		for j < n && isDigit(s[j]) {
			j++
		}
		if j == i {
			break
		}
		if j-i > 24 {
			if r.n == 0 {
				return j, true // a long digit string: nothing to find, skip it
			}
			break
		}
		if j < n && !numBoundary(s, j) && !(r.n > 0 && s[j] == ':') {
			if r.n == 0 {
				return start, false
			}
			break
		}
		sc.groups = append(sc.groups, grp{i, j})
		r.n++
		k := j
		for k < n && k-j < 3 && isNumSep(s[k]) {
			k++
		}
		if k == j || k >= n || !isDigit(s[k]) || !okSep(s[j:k]) {
			break
		}
		i = k
	}
	if r.n == 0 {
		return start, false
	}
	r.g = sc.groups[base : base+r.n]
	sc.nums = append(sc.nums, r)
	return r.g[r.n-1].e, true
}

func isNumSep(c byte) bool {
	return c == ' ' || c == '-' || c == '.' || c == '/' || c == '(' || c == ')'
}

func okSep(sep string) bool {
	switch sep {
	case " ", "-", ".", "/", ") ", ")", " (", ")-", " - ", "(":
		return true
	}
	return false
}

// numBoundary reports whether a digit group may end before s[j].
func numBoundary(s string, j int) bool {
	c := s[j]
	if isAlnum(c) || c == '_' || c == '@' || c == '=' || c == '%' {
		return false
	}
	if c == ':' {
		return !(j+1 < len(s) && isHex(s[j+1]))
	}
	return true
}

// tokenFlags summarise the bytes of a token.
const (
	fDigit = 1 << iota
	fUpper
	fLower
	fAt
	fColon
	fEq
	fDot
	fDash
	fUnder
	fSlash
	fPlus
	fOther
)

var byteFlag = func() [256]uint16 {
	var t [256]uint16
	for c := 0; c < 256; c++ {
		b := byte(c)
		switch {
		case isDigit(b):
			t[c] = fDigit
		case isUpper(b):
			t[c] = fUpper
		case isLower(b):
			t[c] = fLower
		case b == '@':
			t[c] = fAt
		case b == ':':
			t[c] = fColon
		case b == '=':
			t[c] = fEq
		case b == '.':
			t[c] = fDot
		case b == '-':
			t[c] = fDash
		case b == '_':
			t[c] = fUnder
		case b == '/':
			t[c] = fSlash
		case b == '+':
			t[c] = fPlus
		default:
			t[c] = fOther
		}
	}
	return t
}()

// token scans the token starting at i, looks up its letter runs as context
// words, runs the detectors its shape allows, and returns where to resume.
func (sc *scanner) token(i int) int {
	s := sc.s
	n := len(s)
	j := i
	var f uint16
	op := -1
	for j < n {
		c := s[j]
		if c >= 0x80 || delim[c] {
			break
		}
		bf := byteFlag[c]
		f |= bf
		if bf&(fUpper|fLower) != 0 {
			k := j + 1
			for k < n && isAlpha(s[k]) {
				k++
			}
			f |= sc.lookupWord(j, k)
			j = k
			continue
		}
		if op < 0 && bf&(fEq|fColon) != 0 {
			op = j
		}
		j++
	}
	// Trim trailing sentence punctuation for matching.
	e := j
	for e > i && strings.IndexByte(".,!?:;-", s[e-1]) >= 0 {
		e--
	}
	if e <= i {
		if op >= 0 { // a lone ":" as in `"password": "…"`
			sc.assignment(op)
		}
		return j
	}
	t := s[i:e]
	if e < j {
		f = 0
		for k := 0; k < len(t); k++ {
			f |= byteFlag[t[k]]
		}
	}
	if f&fAt != 0 && f&fColon == 0 || f&fAt != 0 && !strings.Contains(t, "://") {
		sc.email(i, e)
	}
	if f&fColon != 0 {
		if k := strings.Index(t, "://"); k > 0 {
			sc.url(i, e, i+k)
			return j
		}
	}
	if len(t) > 4 && t[3] == '.' && (t[0]|0x20) == 'w' && (t[1]|0x20) == 'w' && (t[2]|0x20) == 'w' {
		sc.url(i, e, -1)
		return j
	}
	if end := sc.shapes(i, e, j, t, f); end > 0 {
		return end
	}
	if op >= 0 {
		if end := sc.assignment(op); end > 0 {
			return end
		}
		return op + 1
	}
	if f&fAt != 0 {
		// "admin@10.0.0.1": rescan what follows the '@'.
		return i + strings.IndexByte(t, '@') + 1
	}
	return j
}

// lookupWord records a context word hit for s[a:b] and returns no flags.
func (sc *scanner) lookupWord(a, b int) uint16 {
	l := b - a
	if l < 2 || l > 14 {
		return 0
	}
	first, last := sc.s[a]|0x20, sc.s[b-1]|0x20
	if kwBloom[l][first-'a']&(1<<(last-'a')) == 0 {
		return 0
	}
	var buf [14]byte
	for k := 0; k < l; k++ {
		c := sc.s[a+k]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		buf[k] = c
	}
	bits, ok := keywords[string(buf[:l])]
	if !ok {
		return 0
	}
	sc.kws = append(sc.kws, kwHit{pos: int32(a), end: int32(b), bits: bits})
	return 0
}

// ctx reports whether a context word of the given classes is near [start,end).
func (sc *scanner) ctx(start, end int, bits uint32) bool {
	lo, hi := int32(start-64), int32(end+48)
	k := sort.Search(len(sc.kws), func(x int) bool { return sc.kws[x].pos >= lo })
	for ; k < len(sc.kws) && sc.kws[k].pos <= hi; k++ {
		if sc.kws[k].bits&bits != 0 && (sc.kws[k].end <= int32(start) || sc.kws[k].pos >= int32(end)) {
			return true
		}
	}
	return false
}

// ctxDist returns the distance in bytes to the nearest context word of the
// given classes around [start,end), or -1 when there is none.
func (sc *scanner) ctxDist(start, end int, bits uint32) int {
	lo, hi := int32(start-64), int32(end+48)
	best := -1
	k := sort.Search(len(sc.kws), func(x int) bool { return sc.kws[x].pos >= lo })
	for ; k < len(sc.kws) && sc.kws[k].pos <= hi; k++ {
		h := sc.kws[k]
		if h.bits&bits == 0 {
			continue
		}
		d := -1
		switch {
		case h.end <= int32(start):
			d = start - int(h.end)
		case h.pos >= int32(end):
			d = int(h.pos) - end
		}
		if d >= 0 && (best < 0 || d < best) {
			best = d
		}
	}
	return best
}

// email validates an address around the first usable '@' in s[a:b].
func (sc *scanner) email(a, b int) {
	s := sc.s
	for at := strings.IndexByte(s[a:b], '@'); at >= 0; {
		p := a + at
		l := p
		for l > a && isLocalChar(s[l-1]) {
			l--
		}
		for l < p && s[l] == '.' {
			l++
		}
		r := p + 1
		for r < b && (isAlnum(s[r]) || s[r] == '.' || s[r] == '-') {
			r++
		}
		for r > p+1 && (s[r-1] == '.' || s[r-1] == '-') {
			r--
		}
		if l < p && validDomain(s[p+1:r]) && s[p-1] != '.' {
			sc.add(l, r, EmailAddress, "email", 0.95)
			return
		}
		next := strings.IndexByte(s[p+1:b], '@')
		if next < 0 {
			return
		}
		at = p + 1 - a + next
	}
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func validDomain(d string) bool {
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 || len(d)-dot-1 < 2 || len(d) > 253 {
		return false
	}
	for k := dot + 1; k < len(d); k++ {
		if !isAlpha(d[k]) {
			return false
		}
	}
	return !strings.Contains(d, "..") && d[0] != '-' && d[0] != '.'
}

var tokenParams = map[string]bool{"token": true, "access_token": true, "api_key": true, "apikey": true, "key": true,
	"sig": true, "signature": true, "password": true, "pass": true, "pwd": true, "secret": true, "client_secret": true,
	"auth": true, "x-amz-signature": true, "x-amz-credential": true, "refresh_token": true, "id_token": true, "session": true}

// url reports a URL, and secrets inside it: userinfo passwords, token query
// parameters and webhook URLs. sep is the index of "://" or -1 for "www.".
func (sc *scanner) url(a, b, sep int) {
	s := sc.s
	start := a
	hostStart := a
	if sep >= 0 {
		start = sep
		for start > a && (isAlnum(s[start-1]) || s[start-1] == '+' || s[start-1] == '.' || s[start-1] == '-') {
			start--
		}
		if start == sep {
			return
		}
		hostStart = sep + 3
	}
	for b > start && strings.IndexByte(".,;:!?'\")]", s[b-1]) >= 0 {
		b--
	}
	authEnd := hostStart
	for authEnd < b && s[authEnd] != '/' && s[authEnd] != '?' && s[authEnd] != '#' {
		authEnd++
	}
	auth := s[hostStart:authEnd]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		ui := auth[:at]
		if c := strings.IndexByte(ui, ':'); c >= 0 && c+1 < len(ui) && !placeholder(ui[c+1:]) {
			sc.addSecret(hostStart+c+1, hostStart+at, "url-password")
		}
		hostStart += at + 1
	}
	host := strings.ToLower(s[hostStart:authEnd])
	path := s[authEnd:b]
	switch {
	case host == "hooks.slack.com" && strings.HasPrefix(path, "/services/") && len(path) > 20:
		sc.addSecret(start, b, "slack-webhook-url")
		return
	case (host == "discord.com" || host == "discordapp.com") && strings.HasPrefix(path, "/api/webhooks/"):
		sc.addSecret(start, b, "discord-webhook-url")
		return
	}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		qs := path[q+1:]
		off := authEnd + q + 1
		for len(qs) > 0 {
			amp := strings.IndexByte(qs, '&')
			kv := qs
			if amp >= 0 {
				kv = qs[:amp]
			}
			if eq := strings.IndexByte(kv, '='); eq > 0 {
				v := kv[eq+1:]
				if tokenParams[strings.ToLower(kv[:eq])] && len(v) >= 8 && !placeholder(v) {
					sc.addSecret(off+eq+1, off+len(kv), "url-token")
				}
			}
			if amp < 0 {
				break
			}
			qs = qs[amp+1:]
			off += amp + 1
		}
	}
	if len(host) >= 3 && strings.IndexByte(host, '.') > 0 || strings.HasPrefix(host, "localhost") {
		sc.add(start, b, URL, "url", 0.6)
	}
}

// placeholder recognises values that stand for a secret rather than being one.
func placeholder(v string) bool {
	if len(v) == 0 {
		return true
	}
	switch v[0] {
	case '$', '%', '{', '<', '*', '#':
		return true
	}
	l := strings.ToLower(v)
	for _, p := range placeholderWords {
		if strings.Contains(l, p) {
			return true
		}
	}
	return false
}

var placeholderWords = []string{"xxx", "***", "...", "${", "{{", "<", "your_", "your-", "yourpass", "example", "placeholder",
	"redacted", "dummy", "changeit", "process.env", "os.environ", "getenv", "env(", "secrets.", "vault:"}

// templateToken flags chat-template control tokens pasted into user text.
func (sc *scanner) templateToken(i int) {
	s := sc.s[i:]
	for _, t := range [...]string{"<|im_start|>", "<|im_end|>", "<|system|>", "<|endoftext|>", "<|assistant|>", "[INST]", "<<SYS>>", "<|start_header_id|>"} {
		if strings.HasPrefix(s, t) {
			sc.inj = append(sc.inj, cand{start: i, end: i + len(t), typ: PromptInjection, rule: "chat-template-token", score: 0.8})
			return
		}
	}
}
