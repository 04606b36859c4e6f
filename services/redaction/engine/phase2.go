package engine

import (
	"encoding/base64"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// phase2 validates what the single pass collected, now that every context
// word in the text is known.
func (sc *scanner) phase2() {
	for x := range sc.nums {
		r := &sc.nums[x]
		for a := 0; a < r.n; a++ {
			for b := r.n - 1; b >= a; b-- {
				if sc.classify(r, a, b) {
					a = b
					break
				}
			}
		}
	}
	for _, t := range sc.ctxTok {
		sc.contextToken(t.s, t.e)
	}
	for x := range sc.kws {
		sc.keywordDetectors(sc.kws[x])
	}
	// Context raises the confidence of shape-only matches.
	for x := range sc.out {
		c := &sc.out[x]
		var bits uint32
		switch c.typ {
		case MedicalLicense:
			bits = kwDEA
		case UKNINO:
			bits = kwNINO
		case CreditCard:
			bits = kwCard
		}
		if bits != 0 && c.score < 0.95 && sc.ctx(c.start, c.end, bits) {
			c.score = 0.95
		}
	}
}

func (sc *scanner) sep(r *numRun, x int) string { return sc.s[r.g[x].e:r.g[x+1].s] }

// classify tries every numeric detector on groups a..b of a run and keeps the best.
func (sc *scanner) classify(r *numRun, a, b int) bool {
	s := sc.s
	k := b - a + 1
	var dbuf [24]byte
	nd := 0
	for x := a; x <= b; x++ {
		g := r.g[x]
		if nd+g.e-g.s > len(dbuf) {
			return false
		}
		nd += copy(dbuf[nd:], s[g.s:g.e])
	}
	glen := func(x int) int { return r.g[a+x].e - r.g[a+x].s }
	uniform := ""
	if k > 1 {
		uniform = sc.sep(r, a)
		for x := a + 1; x < b; x++ {
			if sc.sep(r, x) != uniform {
				uniform = "mixed"
				break
			}
		}
	}
	start, end := r.g[a].s, r.g[b].e
	plus := a == 0 && r.plus
	if plus {
		start--
	} else if start > 0 && s[start-1] == '(' && k > 1 && strings.HasPrefix(sc.sep(r, a), ")") {
		start--
	}
	best := cand{}
	consider := func(typ, rule string, score float64) {
		if score > best.score {
			best = cand{start: start, end: end, typ: typ, rule: rule, score: score}
		}
	}
	neg := sc.ctx(start, end, kwNeg)

	// IPv4: four dotted octets not part of a longer dotted sequence.
	if k == 4 && uniform == "." && (a == 0 || sc.sep(r, a-1) != ".") && (b == r.n-1 || sc.sep(r, b) != ".") {
		ok := true
		for x := 0; x < 4; x++ {
			g := s[r.g[a+x].s:r.g[a+x].e]
			if len(g) > 3 || (len(g) > 1 && g[0] == '0') || atoiN(g) > 255 {
				ok = false
			}
		}
		if ok && !plus {
			consider(IPAddress, "ipv4", map[bool]float64{true: 0.5, false: 0.9}[neg])
		}
	}
	// Dates of birth (numeric forms) when birth context is near.
	if k == 3 && (uniform == "/" || uniform == "-" || uniform == ".") && sc.ctx(start, end, kwDOB) {
		g0, g1, g2 := atoiN(s[r.g[a].s:r.g[a].e]), atoiN(s[r.g[a+1].s:r.g[a+1].e]), atoiN(s[r.g[a+2].s:r.g[a+2].e])
		ok := false
		switch {
		case glen(0) == 4 && glen(1) <= 2 && glen(2) <= 2:
			ok = validDate(g0, g1, g2)
		case glen(0) <= 2 && glen(1) <= 2 && (glen(2) == 4 || glen(2) == 2):
			y := g2
			if glen(2) == 2 {
				y += 1900
				if y < 1930 {
					y += 100
				}
			}
			ok = validDate(y, g0, g1) || validDate(y, g1, g0)
		}
		if ok {
			consider(DateTime, "date-of-birth", 0.85)
		}
	}
	if nd < 7 {
		if best.score > 0 {
			sc.out = append(sc.out, best)
			return true
		}
		return false
	}
	d := string(dbuf[:nd])
	// Payment cards: Luhn and a known issuer range, separated consistently.
	if nd >= 13 && nd <= 19 && (k == 1 || ((uniform == " " || uniform == "-") && glen(0) == 4 && cardGroups(r, a, b))) {
		if luhn(d) && cardIIN(d) {
			sc1 := 0.9
			if k == 1 {
				sc1 = 0.8
			}
			if neg && !sc.ctx(start, end, kwCard) {
				sc1 = 0.4
			}
			consider(CreditCard, "luhn", sc1)
		}
	}
	// SSN / ITIN.
	if nd == 9 {
		formatted := k == 3 && glen(0) == 3 && glen(1) == 2 && glen(2) == 4 && (uniform == "-" || uniform == " " || uniform == ".")
		if formatted || k == 1 {
			ssnCtx := sc.ctx(start, end, kwSSN)
			switch {
			case itinValid(d):
				switch {
				case formatted || sc.ctx(start, end, kwTax|kwSSN):
					consider(USITIN, "itin", 0.85)
				default:
					consider(USITIN, "itin", 0.3)
				}
			case ssnValid(d):
				switch {
				case ssnCtx:
					consider(USSSN, "ssn", 0.95)
				case formatted && uniform == "-" && !neg:
					consider(USSSN, "ssn", 0.85)
				case formatted && !neg:
					consider(USSSN, "ssn", 0.6)
				default:
					consider(USSSN, "ssn", 0.3)
				}
			}
		}
		if k == 1 {
			if abaValid(d) {
				if sc.ctx(start, end, kwRouting) {
					consider(ABARouting, "aba-checksum", 0.95)
				} else {
					consider(ABARouting, "aba-checksum", 0.25)
				}
			}
		}
	}
	// UK NHS number: mod-11.
	if nd == 10 && (k == 1 || (k == 3 && glen(0) == 3 && glen(1) == 3 && glen(2) == 4 && (uniform == " " || uniform == "-"))) && nhsValid(d) {
		switch {
		case sc.ctx(start, end, kwNHS):
			consider(UKNHS, "nhs-mod11", 0.95)
		case !neg:
			consider(UKNHS, "nhs-mod11", 0.5)
		default:
			consider(UKNHS, "nhs-mod11", 0.3)
		}
	}
	// Phone numbers, validated against libphonenumber metadata.
	ssnShape := nd == 9 && k == 3 && glen(0) == 3 && glen(1) == 2 && glen(2) == 4
	if best.score < 0.9 && !ssnShape && (nd >= 7 && nd <= 15 && uniform != "/" && uniform != "mixed" || (uniform == "mixed" && nd >= 10 && nd <= 15)) {
		if score := sc.phone(d, plus, k, start, end, neg); score > 0 {
			consider(PhoneNumber, "phonenumbers", score)
		}
	}
	// Context-only numeric identifiers.
	if k == 1 {
		switch {
		case nd >= 8 && nd <= 17 && sc.ctx(start, end, kwAccount) && !sc.ctx(start, end, kwCard):
			consider(USBankNumber, "account-context", 0.7)
		}
		dp, dd := sc.ctxDist(start, end, kwPassport), sc.ctxDist(start, end, kwDriver)
		if nd >= 8 && nd <= 9 && dp >= 0 && (dd < 0 || dp < dd) {
			consider(USPassport, "passport-context", 0.8)
		}
		if nd >= 7 && nd <= 13 && dd >= 0 && (dp < 0 || dd < dp) {
			consider(USDriverLicense, "licence-context", 0.75)
		}
	}
	if best.score > 0 {
		sc.out = append(sc.out, best)
		return true
	}
	return false
}

func cardGroups(r *numRun, a, b int) bool {
	for x := a; x <= b; x++ {
		l := r.g[x].e - r.g[x].s
		if l < 3 || l > 6 {
			return false
		}
	}
	return true
}

// nationalRegions are tried, in order, for numbers written with a trunk '0'.
var nationalRegions = []string{"GB", "DE", "FR", "IN", "AU", "IE", "NL", "ES", "IL", "BR", "IT"}

// phoneValid checks a number against libphonenumber's metadata without the
// cost of Parse: the caller already knows the country code and the digits.
func phoneValid(cc int, national string, possibleOnly bool) bool {
	if len(national) == 0 || len(national) > 17 {
		return false
	}
	key := phoneKey{cc: int32(cc), national: national, possible: possibleOnly}
	if v, ok := phoneMemo.Load(key); ok {
		return v.(bool)
	}
	if cc == 1 && !possibleOnly && len(national) == 10 && national[0] >= '2' && national[3] >= '2' {
		switch nanpAreaCodes[atoiN(national[:3])-200] {
		case 'V':
			return true
		case 'I':
			return false
		}
	}
	v := phoneValidUncached(cc, national, possibleOnly)
	if phoneMemoSize.Add(1) > 8192 {
		resetPhoneMemo() // bounded: start over rather than grow without limit
	}
	phoneMemo.Store(phoneKey{cc: int32(cc), national: strings.Clone(national), possible: possibleOnly}, v)
	return v
}

type phoneKey struct {
	cc       int32
	national string
	possible bool
}

// phoneMemo remembers libphonenumber's verdicts: its checks run dozens of
// regular expressions, and the same numbers (support lines, signatures)
// recur across prompts.
var (
	phoneMemo     sync.Map
	phoneMemoSize atomic.Int64
)

func resetPhoneMemo() {
	phoneMemo.Clear()
	phoneMemoSize.Store(0)
}

func phoneValidUncached(cc int, national string, possibleOnly bool) bool {
	var nn uint64
	for i := 0; i < len(national); i++ {
		nn = nn*10 + uint64(national[i]-'0')
	}
	num := &phonenumbers.PhoneNumber{CountryCode: proto.Int32(int32(cc)), NationalNumber: proto.Uint64(nn)}
	if national[0] == '0' {
		z := 0
		for z < len(national) && national[z] == '0' {
			z++
		}
		num.ItalianLeadingZero = proto.Bool(true)
		num.NumberOfLeadingZeros = proto.Int32(int32(z))
	}
	if possibleOnly {
		return phonenumbers.IsPossibleNumber(num)
	}
	// Checking the main region first avoids libphonenumber's walk over every
	// region that shares the calling code (25 for +1) in the common case.
	if main := phonenumbers.GetRegionCodeForCountryCode(cc); main != "ZZ" && phonenumbers.IsValidNumberForRegion(num, main) {
		return true
	}
	return phonenumbers.IsValidNumber(num)
}

// phone returns a score for a digit string as a phone number, or 0.
func (sc *scanner) phone(d string, plus bool, k, start, end int, neg bool) float64 {
	ctx := sc.ctx(start, end, kwPhone)
	if !plus && len(d) > 10 && d[0] == '0' && d[1] == '0' {
		// "0044 20 …": the international call prefix stands for '+'.
		plus, d = true, d[2:]
	}
	if plus {
		for l := 1; l <= 3 && l < len(d); l++ {
			cc := atoiN(d[:l])
			if phonenumbers.GetRegionCodeForCountryCode(cc) == "ZZ" {
				continue
			}
			switch {
			case phoneValid(cc, d[l:], false):
				if ctx {
					return 0.95
				}
				return 0.9
			case ctx && phoneValid(cc, d[l:], true):
				return 0.6
			}
			return 0
		}
		return 0
	}
	if neg && !ctx {
		return 0
	}
	score := func(valid bool) float64 {
		switch {
		case !valid:
			if ctx && k > 1 {
				return 0.6
			}
			return 0
		case ctx:
			return 0.9
		case k > 1:
			return 0.8
		}
		return 0.4
	}
	switch {
	case d[0] == '0':
		if len(d) < 9 || len(d) > 12 {
			return 0
		}
		for _, reg := range nationalRegions {
			if phoneValid(phonenumbers.GetCountryCodeForRegion(reg), d[1:], false) {
				return score(true)
			}
		}
		return 0
	case len(d) == 11 && d[0] == '1':
		d = d[1:]
		fallthrough
	case len(d) == 10:
		// NANP: area code and exchange start with 2-9.
		if d[0] < '2' || d[3] < '2' {
			return 0
		}
		if phoneValid(1, d, false) {
			return score(true)
		}
		return score(false)
	}
	return 0
}

// contextToken handles mixed letter/digit tokens that are identifiers only in context.
func (sc *scanner) contextToken(a, b int) {
	t := sc.s[a:b]
	digits := 0
	for i := 0; i < len(t); i++ {
		if isDigit(t[i]) {
			digits++
		}
	}
	dp, dd := sc.ctxDist(a, b, kwPassport), sc.ctxDist(a, b, kwDriver)
	switch {
	case dp >= 0 && (dd < 0 || dp < dd) && len(t) >= 6 && len(t) <= 9 && digits >= 6 && isAlpha(t[0]):
		sc.add(a, b, USPassport, "passport-context", 0.8)
	case dd >= 0 && len(t) >= 5 && len(t) <= 15 && digits >= 4:
		sc.add(a, b, USDriverLicense, "licence-context", 0.75)
	}
}

var (
	months          = `(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?`
	reDOBWord       = regexp.MustCompile(`(?i)^[^0-9a-z]{0,4}(?:(?:is|was|on|date|of|:)[^0-9a-z]{1,3}){0,3}(\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?` + months + `,?\s+\d{4}|` + months + `\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})`)
	reStreet        = regexp.MustCompile(`\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][a-zA-Z'.-]*\s+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Parkway|Pkwy|Highway|Hwy|Circle|Square|Sq|Crescent|Close)\b(?:\.,)?(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*[A-Za-z0-9-]+)?(?:,\s+[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)?)?(?:,\s+[A-Z]{2})?(?:,?\s+\d{5}(?:-\d{4})?)?`)
	reIgnore        = regexp.MustCompile(`^(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|my|of|previous|prior|above|earlier|preceding|former|original|initial|system|safety|every|these|those|everything)\s+){0,4}(?:instructions?|prompts?|rules|directions|guidelines|context|commands|orders|constraints|restrictions|guardrails|messages?|programming|policies|you\s+were\s+told|said|above)`)
	reNoLimits      = regexp.MustCompile(`^without\s+(?:any\s+)?(?:restrictions|filters|limitations|censorship|content\s+polic(?:y|ies)|safety\s+guidelines|ethical\s+guidelines|rules)`)
	reStopFollowing = regexp.MustCompile(`^stop\s+(?:following|obeying)\s+(?:your|the|all|any)\s+(?:\w+\s+)?(?:instructions|rules|guidelines|programming)`)
	reWhatPrompt    = regexp.MustCompile(`^what\s+(?:is|was|are|were)\s+(?:your|the)\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)|original\s+instructions|hidden\s+instructions)`)
	reYourNew       = regexp.MustCompile(`^your\s+new\s+(?:role|task|instructions|objective|persona)\s+(?:is|are)`)
	reForeignIgnore = regexp.MustCompile(`^(?:ignorez|ignoriere|ignora|ignorare|oublie|vergiss|olvida)\s+(?:\S+\s+){0,3}(?:instructions|anweisungen|instrucciones|istruzioni|consignes|regeln|reglas)`)
	reRole          = regexp.MustCompile(`^(?:pretend|act|behave|roleplay)\s+(?:to\s+be|as|like|you\s+are|that\s+you\s+are)\s+(?:an?\s+|the\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|dan\b|different|ai\s+(?:with|without)|model\s+without|developer|hacker|rogue|free)`)
)

var notNameWords = map[string]bool{"The": true, "A": true, "An": true, "I": true, "My": true, "Your": true, "Our": true, "This": true,
	"That": true, "Please": true, "Thanks": true, "Thank": true, "Hi": true, "Hello": true, "Dear": true, "Best": true,
	"Regards": true, "Sincerely": true, "Team": true, "All": true, "Everyone": true, "Sir": true, "Madam": true, "Customer": true,
	"Support": true, "Monday": true, "Tuesday": true, "Wednesday": true, "Thursday": true, "Friday": true, "Saturday": true,
	"Sunday": true, "January": true, "February": true, "March": true, "April": true, "June": true, "July": true,
	"August": true, "September": true, "October": true, "November": true, "December": true, "Is": true, "And": true, "Or": true,
	"We": true, "You": true, "He": true, "She": true, "They": true, "It": true, "In": true, "On": true, "At": true, "To": true,
	// Organisation suffixes: "Customer: Acme Corp" names a company, not a person.
	"Inc": true, "Corp": true, "Corporation": true, "Company": true, "Co": true, "Ltd": true, "Limited": true, "LLC": true,
	"Group": true, "Holdings": true, "Bank": true, "Foundation": true, "University": true, "Hospital": true, "Services": true,
	"Partners": true, "Associates": true, "Institute": true, "School": true, "College": true, "Clinic": true, "Agency": true,
	// Parts of an organisation: "Recipient: Finance Department".
	"Department": true, "Dept": true, "Office": true, "Desk": true, "Center": true, "Centre": true, "Division": true, "Unit": true}

// capWords reads up to max capitalised words (or initials) starting at p
// after skipping spaces, returning the end of the last one and how many.
func (sc *scanner) capWords(p, max int) (int, int) {
	s := sc.s
	end, count := p, 0
	for count < max {
		q := end
		for q < len(s) && q-end < 2 && s[q] == ' ' {
			q++
		}
		if q >= len(s) || !isUpper(s[q]) || (count > 0 && q == end) {
			break
		}
		w := q + 1
		for w < len(s) && (isLower(s[w]) || s[w] == '\'' || (s[w] == '-' && w+1 < len(s) && isUpper(s[w+1])) || isUpper(s[w]) && s[w-1] == '-') {
			w++
		}
		if w < len(s) && isUpper(s[w]) { // ALLCAPS words are not names here
			break
		}
		if w == q+1 && w < len(s) && s[w] == '.' { // initial
			w++
		} else if w == q+1 {
			break
		}
		if notNameWords[s[q:w]] {
			break
		}
		end = w
		count++
	}
	return end, count
}

// keywordDetectors runs the detectors anchored on a context word.
func (sc *scanner) keywordDetectors(h kwHit) {
	s := sc.s
	pos, end := int(h.pos), int(h.end)
	capitalised := isUpper(s[pos])
	if h.bits&kwDOB != 0 {
		w := s[end:min(len(s), end+60)]
		if m := reDOBWord.FindStringSubmatchIndex(w); m != nil {
			sc.add(end+m[2], end+m[3], DateTime, "date-of-birth", 0.85)
		}
	}
	if h.bits&kwInj != 0 {
		sc.injection(pos, end)
	}
	if h.bits&kwAuthScheme != 0 && end < len(s) && s[end] == ' ' {
		sc.authHeader(pos, end)
	}
	if h.bits&kwTitle != 0 && capitalised {
		p := end
		if p < len(s) && s[p] == '.' {
			p++
		}
		if e, c := sc.capWords(p, 3); c > 0 && p < len(s) && s[p] == ' ' {
			sc.add(p+1, e, Person, "title-context", 0.85)
		}
	}
	if h.bits&(kwNameTrigger|kwGreeting) != 0 {
		sc.nameAfterTrigger(pos, end, h.bits)
	}
	if h.bits&kwFirstName != 0 && capitalised && !isUpper(s[min(len(s)-1, pos+1)]) {
		if e, c := sc.capWords(end, 2); c > 0 {
			sc.add(pos, e, Person, "name-dictionary", 0.7)
		}
	}
	if h.bits&kwStreet != 0 && capitalised {
		lo := max(0, pos-80)
		w := s[lo:min(len(s), end+80)]
		for _, m := range reStreet.FindAllStringIndex(w, -1) {
			if lo+m[0] <= pos && lo+m[1] >= end {
				sc.add(lo+m[0], lo+m[1], Location, "street-address", 0.8)
				break
			}
		}
	}
	if h.bits&kwAddr != 0 {
		p := end
		for _, prep := range []string{" in ", " at ", " to ", " is ", ": ", " - "} {
			if strings.HasPrefix(s[p:], prep) {
				p += len(prep) - 1
				if m := reStreet.FindStringIndex(s[p+1 : min(len(s), p+160)]); m != nil && m[0] == 0 {
					sc.add(p+1, p+1+m[1], Location, "street-address", 0.8)
				} else if e, c := sc.capWords(p, 3); c > 0 {
					sc.add(p+1, e, Location, "address-context", 0.7)
				}
				break
			}
		}
	}
	if h.bits&kwCity != 0 && capitalised && !isUpper(s[min(len(s)-1, pos+1)]) {
		sc.add(pos, end, Location, "place-dictionary", 0.6)
	}
	if h.bits&kwCity2 != 0 && capitalised && end+1 < len(s) && s[end] == ' ' && isUpper(s[end+1]) {
		w := end + 2
		for w < len(s) && isLower(s[w]) {
			w++
		}
		if twoWordPlaces[strings.ToLower(s[pos:w])] {
			sc.add(pos, w, Location, "place-dictionary", 0.7)
		}
	}
}

// nameAfterTrigger reports a name after "my name is", "Dear", "Regards," and similar.
func (sc *scanner) nameAfterTrigger(pos, end int, bits uint32) {
	s := sc.s
	word := strings.ToLower(s[pos:end])
	p := end
	need := 1
	score := 0.8
	switch word {
	case "name":
		if p = skipSep(s, p, nameSeps); p == end {
			return
		}
		score = 0.85
	case "named":
		score = 0.8
	case "dear", "hi", "hello", "hey":
	case "sincerely", "regards", "thanks", "cheers", "signed":
		for p < len(s) && (s[p] == ',' || s[p] == ':' || s[p] == '\n' || s[p] == '\r' || s[p] == ' ') && p-end < 4 {
			p++
		}
		if p == end {
			return
		}
		p--
		if s[p] != ' ' && s[p] != '\n' {
			return
		}
	case "patient", "customer", "employee", "from", "client", "applicant", "claimant", "tenant", "guest", "caller",
		"requester", "requestor", "recipient", "sender", "beneficiary", "borrower", "policyholder", "cardholder",
		"insured", "student", "candidate", "spouse", "guardian":
		// A role, then a name of two capitalised words, also as a form field:
		// "customer Jane Doe", "Customer: Jane Doe", "Patient - Jane Doe".
		p = skipSep(s, p, fieldSeps)
		need = 2
		score = 0.7
	default:
		return
	}
	if p >= len(s) || (s[p] != ' ' && s[p] != '\n') {
		return
	}
	e, c := sc.capWords(p+1-1, 3)
	if s[p] == '\n' {
		e, c = sc.capWords(p+1, 3)
	}
	if c < need {
		return
	}
	first := p + 1
	for first < len(s) && s[first] == ' ' {
		first++
	}
	if bits&kwGreeting != 0 && bits&kwNameTrigger == 0 {
		// A greeting only counts when the next word is a known given name.
		h, ok := keywords[strings.ToLower(s[first:wordEnd(s, first)])]
		if !ok || h&kwFirstName == 0 {
			return
		}
	}
	sc.add(first, e, Person, "name-context", score)
}

// fieldSeps join a form field's label to its value ("Customer: Jane Doe");
// after "name", " is" does too.
var (
	fieldSeps = []string{":", " -", " ="}
	nameSeps  = append([]string{" is"}, fieldSeps...)
)

// skipSep returns p past the first of seps that s has at p, else p.
func skipSep(s string, p int, seps []string) int {
	for _, sep := range seps {
		if strings.HasPrefix(s[p:], sep) {
			return p + len(sep)
		}
	}
	return p
}

func wordEnd(s string, p int) int {
	for p < len(s) && isAlpha(s[p]) {
		p++
	}
	return p
}

// injection scores well-known injection and jailbreak phrases anchored at a trigger word.
func (sc *scanner) injection(pos, end int) {
	s := sc.s
	n := min(len(s)-pos, len(sc.low))
	for i := 0; i < n; i++ {
		c := s[pos+i]
		if isUpper(c) {
			c += 'a' - 'A'
		} else if c == '\n' || c == '\t' {
			c = ' '
		}
		sc.low[i] = c
	}
	// w aliases the scanner's scratch buffer: nothing below retains it, and
	// copying it for every common trigger word ("your", "you") would cost
	// an allocation per word on clean text.
	w := unsafe.String(&sc.low[0], n)
	hit := func(l int, rule string, score float64) {
		sc.inj = append(sc.inj, cand{start: pos, end: pos + l, typ: PromptInjection, rule: rule, score: score})
	}
	switch w[:end-pos] {
	case "ignore", "disregard", "forget", "override", "bypass":
		if m := reIgnore.FindStringIndex(w); m != nil {
			hit(m[1], "ignore-previous-instructions", 0.9)
		}
	case "you":
		for _, p := range []string{"you are now", "you're now", "you will now", "you must now", "you are no longer", "you are dan", "you are going to act"} {
			if strings.HasPrefix(w, p) {
				sc2 := 0.75
				if strings.Contains(w, "dan") || strings.Contains(w, "unrestricted") || strings.Contains(w, "jailbr") || strings.Contains(w, "no restrictions") || strings.Contains(w, "unfiltered") || strings.Contains(w, "without any") || strings.Contains(w, "evil") {
					sc2 = 0.85
				}
				hit(len(p), "role-reassignment", sc2)
				return
			}
		}
	case "from":
		if strings.HasPrefix(w, "from now on") {
			if strings.Contains(w, "you are") || strings.Contains(w, "you will") || strings.Contains(w, "you're") {
				hit(11, "role-reassignment", 0.75)
			} else {
				hit(11, "role-reassignment", 0.5)
			}
		}
	case "pretend", "act", "behave", "roleplay":
		if m := reRole.FindStringIndex(w); m != nil {
			hit(m[1], "role-reassignment", 0.8)
		}
	case "jailbreak", "jailbroken":
		hit(end-pos, "jailbreak-keyword", 0.6)
	case "developer", "dan", "god":
		if strings.HasPrefix(w[end-pos:], " mode") {
			hit(end-pos+5, "jailbreak-mode", 0.85)
		}
	case "do":
		if strings.HasPrefix(w, "do anything now") {
			hit(15, "jailbreak-mode", 0.85)
		}
	case "reveal", "print", "show", "repeat", "output", "display", "leak":
		win := w[:min(len(w), 60)]
		for _, p := range []string{"system prompt", "your instructions", "initial instructions", "hidden instructions", "your prompt", "the prompt above", "everything above", "your rules"} {
			if k := strings.Index(win, p); k >= 0 {
				hit(k+len(p), "prompt-leak", 0.8)
				return
			}
		}
	case "new":
		for _, p := range []string{"new instructions:", "new instructions follow", "new system prompt", "new rules:"} {
			if strings.HasPrefix(w, p) {
				hit(len(p), "instruction-injection", 0.7)
				break
			}
		}
	case "without":
		if m := reNoLimits.FindStringIndex(w); m != nil {
			hit(m[1], "restriction-removal", 0.6)
		}
	case "uncensored", "unfiltered":
		if strings.HasPrefix(w[end-pos:], " mode") || strings.HasPrefix(w[end-pos:], " ai") || strings.HasPrefix(w[end-pos:], " response") || strings.HasPrefix(w[end-pos:], " version") {
			rest := w[end-pos+1:]
			k := strings.IndexAny(rest, " .,;:!?")
			if k < 0 {
				k = len(rest)
			}
			hit(end-pos+1+k, "jailbreak-mode", 0.7)
		}
	case "stop":
		if m := reStopFollowing.FindStringIndex(w); m != nil {
			hit(m[1], "ignore-previous-instructions", 0.8)
		}
	case "break":
		if strings.HasPrefix(w, "break character") || strings.HasPrefix(w, "break out of character") || strings.HasPrefix(w, "break free of") {
			hit(15, "role-reassignment", 0.6)
		}
	case "what":
		if m := reWhatPrompt.FindStringIndex(w); m != nil {
			hit(m[1], "prompt-leak", 0.7)
		}
	case "your":
		if m := reYourNew.FindStringIndex(w); m != nil {
			hit(m[1], "instruction-injection", 0.7)
		}
	case "simulate":
		if len(w) > 9 {
			if m := reRole.FindStringIndex("act as " + w[len("simulate "):]); m != nil {
				hit(m[1]-len("act as ")+len("simulate "), "role-reassignment", 0.7)
			}
		}
	case "ignorez", "ignoriere", "ignora", "ignorare", "oublie", "vergiss", "olvida":
		if m := reForeignIgnore.FindStringIndex(w); m != nil {
			hit(m[1], "ignore-previous-instructions", 0.85)
		}
	case "system":
		switch {
		case strings.HasPrefix(w, "system override"):
			hit(15, "instruction-injection", 0.8)
		case strings.HasPrefix(w, "system prompt:") || (strings.HasPrefix(w, "system:") && (pos == 0 || s[pos-1] == '\n')):
			hit(7, "instruction-injection", 0.6)
		}
	}
}

// authHeader reports the credential after "Bearer" or "Basic" (as in an
// Authorization header). JWTs are already found on their own; this catches
// opaque tokens and base64 user:password pairs.
func (sc *scanner) authHeader(pos, end int) {
	s := sc.s
	v := end + 1
	ve := v
	for ve < len(s) && (isAlnum(s[ve]) || strings.IndexByte("._~+/-=", s[ve]) >= 0) {
		ve++
	}
	val := s[v:ve]
	switch strings.ToLower(s[pos:end]) {
	case "bearer":
		if len(val) >= 20 && entropy(val) >= 3.5 && tokenLike(val) {
			sc.out = append(sc.out, cand{start: v, end: ve, typ: Secret, rule: "authorization-bearer", score: 0.85})
		}
	case "basic":
		if len(val) >= 8 {
			if dec, err := base64.StdEncoding.DecodeString(val); err == nil && strings.IndexByte(string(dec), ':') > 0 {
				sc.out = append(sc.out, cand{start: v, end: ve, typ: Secret, rule: "authorization-basic", score: 0.9})
			}
		}
	}
}
