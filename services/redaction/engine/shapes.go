package engine

import (
	"encoding/base64"
	"net/netip"
	"strings"
)

// Character sets for secret bodies.
const (
	csAlnum      = iota // A-Za-z0-9
	csWord              // A-Za-z0-9_-
	csWordDot           // A-Za-z0-9_.-
	csHex               // 0-9a-fA-F
	csHexLower          // 0-9a-f
	csUpperDigit        // A-Z0-9
	csAlpha             // A-Za-z
	csUnderAlnum        // A-Za-z0-9_
)

func inSet(cs int, c byte) bool {
	switch cs {
	case csAlnum:
		return isAlnum(c)
	case csWord:
		return isAlnum(c) || c == '_' || c == '-'
	case csWordDot:
		return isAlnum(c) || c == '_' || c == '-' || c == '.'
	case csHex:
		return isHex(c)
	case csHexLower:
		return isDigit(c) || (c >= 'a' && c <= 'f')
	case csUpperDigit:
		return isUpper(c) || isDigit(c)
	case csAlpha:
		return isAlpha(c)
	case csUnderAlnum:
		return isAlnum(c) || c == '_'
	}
	return false
}

// prefixRule is a provider key recognised by a literal prefix, a body
// character set and a body length, after gitleaks' rules of the same id.
type prefixRule struct {
	prefix   string
	rule     string
	cs       int
	min, max int
	// entropy, when set, is the minimum Shannon entropy of the body.
	entropy float64
}

var prefixRules = []prefixRule{
	{"AKIA", "aws-access-key-id", csUpperDigit, 16, 16, 0},
	{"ASIA", "aws-access-key-id", csUpperDigit, 16, 16, 0},
	{"ABIA", "aws-access-key-id", csUpperDigit, 16, 16, 0},
	{"ACCA", "aws-access-key-id", csUpperDigit, 16, 16, 0},
	{"A3T", "aws-access-key-id", csUpperDigit, 17, 17, 0},
	{"AIza", "gcp-api-key", csWord, 35, 35, 0},
	{"AGE-SECRET-KEY-1", "age-secret-key", csUpperDigit, 58, 58, 0},
	{"GR1348941", "gitlab-runner-registration-token", csWord, 20, 40, 0},
	{"PMAK-", "postman-api-token", csWord, 50, 70, 0},
	{"SG.", "sendgrid-api-token", csWordDot, 60, 80, 0},
	{"SK", "twilio-api-key", csHexLower, 32, 32, 0},
	{"sk-ant-", "anthropic-api-key", csWord, 32, 200, 3.0},
	{"sk-", "openai-api-key", csWord, 20, 300, 3.5},
	{"sk_live_", "stripe-access-token", csAlnum, 10, 99, 0},
	{"sk_test_", "stripe-access-token", csAlnum, 10, 99, 0},
	{"rk_live_", "stripe-access-token", csAlnum, 10, 99, 0},
	{"rk_test_", "stripe-access-token", csAlnum, 10, 99, 0},
	{"shpat_", "shopify-access-token", csHex, 32, 32, 0},
	{"shpca_", "shopify-custom-access-token", csHex, 32, 32, 0},
	{"shppa_", "shopify-private-app-access-token", csHex, 32, 32, 0},
	{"shpss_", "shopify-shared-secret", csHex, 32, 32, 0},
	{"sntrys_", "sentry-org-token", csWord, 40, 200, 0},
	{"sntryu_", "sentry-user-token", csHexLower, 64, 64, 0},
	{"sq0atp-", "square-access-token", csWord, 22, 60, 0},
	{"sq0csp-", "square-secret", csWord, 40, 60, 0},
	{"secret_", "notion-api-token", csAlnum, 43, 43, 0},
	{"ghp_", "github-pat", csAlnum, 36, 36, 0},
	{"gho_", "github-oauth", csAlnum, 36, 36, 0},
	{"ghu_", "github-app-token", csAlnum, 36, 36, 0},
	{"ghs_", "github-app-token", csAlnum, 36, 36, 0},
	{"ghr_", "github-refresh-token", csAlnum, 36, 36, 0},
	{"github_pat_", "github-fine-grained-pat", csUnderAlnum, 70, 100, 0},
	{"glpat-", "gitlab-pat", csWordDot, 20, 80, 0},
	{"glptt-", "gitlab-ptt", csHex, 40, 40, 0},
	{"gldt-", "gitlab-deploy-token", csWord, 20, 40, 0},
	{"glrt-", "gitlab-runner-authentication-token", csWord, 20, 40, 0},
	{"glc_", "grafana-cloud-api-token", csWord, 32, 400, 0},
	{"glsa_", "grafana-service-account-token", csUnderAlnum, 41, 41, 0},
	{"gsk_", "groq-api-key", csAlnum, 40, 60, 0},
	{"xoxb-", "slack-bot-token", csWord, 20, 200, 0},
	{"xoxp-", "slack-user-token", csWord, 20, 200, 0},
	{"xoxa-", "slack-legacy-token", csWord, 20, 200, 0},
	{"xoxr-", "slack-legacy-token", csWord, 20, 200, 0},
	{"xoxs-", "slack-legacy-token", csWord, 20, 200, 0},
	{"xoxe-", "slack-config-access-token", csWord, 20, 200, 0},
	{"xapp-", "slack-app-token", csWord, 20, 200, 0},
	{"xkeysib-", "sendinblue-api-token", csWord, 60, 90, 0},
	{"xai-", "xai-api-key", csAlnum, 60, 100, 0},
	{"npm_", "npm-access-token", csAlnum, 36, 36, 0},
	{"pypi-AgEIcHlwaS5vcmc", "pypi-upload-token", csWord, 50, 300, 0},
	{"pplx-", "perplexity-api-key", csAlnum, 40, 60, 0},
	{"pscale_tkn_", "planetscale-api-token", csWordDot, 32, 64, 0},
	{"pul-", "pulumi-api-token", csHexLower, 40, 40, 0},
	{"hf_", "huggingface-access-token", csAlpha, 34, 34, 0},
	{"hvs.", "vault-service-token", csWord, 24, 200, 0},
	{"hvb.", "vault-batch-token", csWord, 24, 300, 0},
	{"dop_v1_", "digitalocean-pat", csHexLower, 64, 64, 0},
	{"doo_v1_", "digitalocean-access-token", csHexLower, 64, 64, 0},
	{"dor_v1_", "digitalocean-refresh-token", csHexLower, 64, 64, 0},
	{"dp.pt.", "doppler-api-token", csAlnum, 43, 43, 0},
	{"dapi", "databricks-api-token", csHexLower, 32, 32, 0},
	{"key-", "mailgun-private-api-token", csHexLower, 32, 32, 0},
	{"lin_api_", "linear-api-key", csAlnum, 40, 40, 0},
	{"ya29.", "gcp-oauth-access-token", csWord, 20, 400, 0},
	{"r8_", "replicate-api-token", csAlnum, 37, 40, 0},
	{"fo1_", "flyio-access-token", csWord, 40, 60, 0},
	{"ops_eyJ", "1password-service-account-token", csWordDot, 100, 1000, 0},
	{"rubygems_", "rubygems-api-token", csHexLower, 48, 48, 0},
	{"FLWSECK-", "flutterwave-secret-key", csWord, 32, 40, 0},
	{"NRAK-", "new-relic-user-api-key", csUpperDigit, 27, 27, 0},
	{"NRJS-", "new-relic-browser-api-token", csHexLower, 19, 19, 0},
	{"NRII-", "new-relic-insert-key", csWord, 32, 32, 0},
	{"dt0c01.", "dynatrace-api-token", csWordDot, 80, 90, 0},
	{"EZAK", "easypost-api-token", csAlnum, 54, 54, 0},
	{"duffel_live_", "duffel-api-token", csWord, 43, 43, 0},
	{"duffel_test_", "duffel-api-token", csWord, 43, 43, 0},
	{"tfp_", "typeform-api-token", csWordDot, 59, 59, 0},
	{"fio-u-", "frameio-api-token", csWord, 64, 64, 0},
	{"shippo_live_", "shippo-api-token", csHexLower, 40, 40, 0},
	{"shippo_test_", "shippo-api-token", csHexLower, 40, 40, 0},
	{"dnkey-", "defined-networking-api-token", csWord, 60, 80, 0},
	{"CLOJARS_", "clojars-api-token", csAlnum, 60, 60, 0},
	{"pnu_", "prefect-api-token", csAlnum, 36, 36, 0},
	{"rdme_", "readme-api-token", csAlnum, 70, 70, 0},
	{"sha256~", "openshift-user-token", csWord, 43, 43, 0},
	{"ATATT3", "atlassian-api-token", csWordDot, 180, 200, 0},
	{"HRKU-", "heroku-api-key-v2", csWord, 60, 70, 0},
	{"EAAC", "facebook-access-token", csAlnum, 100, 400, 0},
	{"EAAG", "facebook-access-token", csAlnum, 100, 400, 0},
	{"AAAAAAAAAAAAAAAAAAAAA", "twitter-bearer-token", csWordDot, 80, 150, 0},
	{"ghe_", "github-enterprise-token", csAlnum, 36, 36, 0},
	{"oy2", "nuget-api-key", csHexLower, 43, 43, 0},
	{"bkua_", "buildkite-agent-token", csHexLower, 40, 40, 0},
	{"lip_", "lithic-api-key", csWord, 36, 64, 0},
	{"phc_", "posthog-project-token", csWord, 43, 43, 0},
	{"phx_", "posthog-personal-api-key", csWord, 43, 43, 0},
	{"sgp_", "sourcegraph-access-token", csHexLower, 40, 60, 0},
	{"AKCp", "jfrog-api-key", csAlnum, 69, 69, 0},
}

// prefixIndex groups rules by first byte; longer prefixes come first so
// "sk-ant-" wins over "sk-".
var prefixIndex = func() [256][]prefixRule {
	var idx [256][]prefixRule
	for _, r := range prefixRules {
		idx[r.prefix[0]] = append(idx[r.prefix[0]], r)
	}
	for c := range idx {
		rs := idx[c]
		for a := 1; a < len(rs); a++ {
			for b := a; b > 0 && len(rs[b].prefix) > len(rs[b-1].prefix); b-- {
				rs[b], rs[b-1] = rs[b-1], rs[b]
			}
		}
	}
	return idx
}()

// shapes runs the detectors chosen by the token's first bytes and flags. It
// returns a resume position when a match spans past the token, else 0.
func (sc *scanner) shapes(i, e, j int, t string, f uint16) int {
	s := sc.s
	c := t[0]
	if len(t) < 18 {
		// Shorter than any provider key: only the short shapes below apply.
		goto short
	}
	for _, r := range prefixIndex[c] {
		if !strings.HasPrefix(t, r.prefix) {
			continue
		}
		k := i + len(r.prefix)
		m := k
		for m < len(s) && m-k <= r.max && inSet(r.cs, s[m]) {
			m++
		}
		body := m - k
		if body >= r.min && body <= r.max && (r.entropy == 0 || entropy(s[k:m]) >= r.entropy) {
			sc.addSecret(i, m, r.rule)
			return 0
		}
		break
	}
short:
	switch {
	case c == '-' && strings.HasPrefix(t, "-----BEGIN"):
		if end := sc.pem(i); end > 0 {
			return end
		}
	case c == 'e' && strings.HasPrefix(t, "eyJ"):
		sc.jwt(i, e)
	case c == '0' && len(t) == 42 && (t[1] == 'x' || t[1] == 'X'):
		if ok, sum := ethValid(t); ok {
			sc.add(i, e, Crypto, "ethereum-address", map[bool]float64{true: 0.95, false: 0.85}[sum])
		}
	case (c == '1' || c == '3') && len(t) >= 26 && len(t) <= 35 && f&^(fDigit|fUpper|fLower) == 0:
		if base58check(t) {
			sc.add(i, e, Crypto, "bitcoin-address", 0.95)
		}
	case (c == 'b' || c == 'B') && len(t) >= 14 && (strings.HasPrefix(t, "bc1") || strings.HasPrefix(t, "BC1")):
		if bech32Valid(t) {
			sc.add(i, e, Crypto, "bitcoin-bech32-address", 0.95)
		}
	}
	if isUpper(c) && len(t) >= 2 && isUpper(t[1]) {
		if end := sc.ukOrIBAN(i, e, t); end > 0 {
			return end
		}
	}
	if f&fColon != 0 && len(t) >= 3 {
		if len(t) == 17 && macShape(t) {
			sc.add(i, e, MACAddress, "mac", 0.85)
			return 0
		}
		sc.ipv6(i, e, t)
	}
	if f&fDot != 0 && len(t) == 14 && t[4] == '.' && t[9] == '.' && allHex(t[:4]) && allHex(t[5:9]) && allHex(t[10:]) {
		sc.add(i, e, MACAddress, "mac", 0.75)
	}
	if f&fDash != 0 && len(t) == 17 && macShape(t) {
		sc.add(i, e, MACAddress, "mac", 0.85)
	}
	// Mailchimp: 32 hex + "-us" + datacenter.
	if len(t) >= 36 && len(t) <= 37 && t[32] == '-' && t[33] == 'u' && t[34] == 's' && allHex(t[:32]) && allDigits(t[35:]) {
		sc.addSecret(i, e, "mailchimp-api-key")
	}
	// Telegram bot tokens: bot id, ':', "AA" and 33 more characters.
	if isDigit(c) && f&fColon != 0 && len(t) >= 43 && len(t) <= 48 {
		if k := strings.IndexByte(t, ':'); k >= 8 && k <= 10 && allDigits(t[:k]) && strings.HasPrefix(t[k+1:], "AA") && len(t)-k-1 == 35 {
			sc.addSecret(i, e, "telegram-bot-api-token")
		}
	}
	// Terraform Cloud tokens: 14 chars ".atlasv1." 60-70 chars.
	if len(t) > 80 && len(t) < 100 && strings.Contains(t, ".atlasv1.") {
		sc.addSecret(i, e, "hashicorp-tf-api-token")
	}
	// Bare domain names with a common TLD are reported as URL at low confidence.
	if f&fDot != 0 && f&(fAt|fColon|fEq) == 0 && len(t) >= 4 {
		sc.domain(i, e, t)
	}
	// Azure AD client secrets carry "Q~" after a 3-char prefix and a digit.
	if len(t) >= 37 && len(t) <= 40 && t[4] == 'Q' && t[5] == '~' && isDigit(t[3]) {
		sc.addSecret(i, e, "azure-ad-client-secret")
	}
	if len(t) >= 24 && f&^(fDigit|fUpper|fLower|fPlus|fSlash|fEq) == 0 && f&(fUpper|fLower) != 0 {
		sc.base64Instruction(i, e, t)
	}
	// Letters and digits mixed: a passport or licence number if context says so.
	if f&fDigit != 0 && f&(fUpper|fLower) != 0 && len(t) >= 5 && len(t) <= 16 && alnumDash(t) {
		sc.ctxTok = append(sc.ctxTok, grp{i, e})
	}
	return 0
}

func macShape(t string) bool {
	sep := t[2]
	if sep != ':' && sep != '-' {
		return false
	}
	for k := 0; k < 17; k++ {
		if k%3 == 2 {
			if t[k] != sep {
				return false
			}
		} else if !isHex(t[k]) {
			return false
		}
	}
	return true
}

func (sc *scanner) ipv6(i, e int, t string) {
	if strings.Count(t, ":") < 2 {
		return
	}
	if p := strings.IndexByte(t, '/'); p > 0 {
		t = t[:p]
	}
	for k := 0; k < len(t); k++ {
		if !(isHex(t[k]) || t[k] == ':' || t[k] == '.' || t[k] == '%') {
			return
		}
	}
	a, err := netip.ParseAddr(t)
	if err != nil || !a.Is6() || a.IsUnspecified() {
		return
	}
	sc.add(i, i+len(t), IPAddress, "ipv6", 0.85)
}

// pem reports a PEM private-key block through its END line (or to the end of
// a truncated text) and returns where to resume.
func (sc *scanner) pem(i int) int {
	s := sc.s
	hdrEnd := strings.Index(s[i+10:min(len(s), i+80)], "-----")
	if hdrEnd < 0 {
		return 0
	}
	label := s[i+10 : i+10+hdrEnd]
	if !strings.Contains(label, "PRIVATE KEY") {
		return 0
	}
	end := len(s)
	if k := strings.Index(s[i:], "-----END"); k > 0 {
		if m := strings.Index(s[i+k+8:], "-----"); m >= 0 {
			end = i + k + 8 + m + 5
		}
	}
	sc.addSecret(i, end, "private-key")
	return end
}

func (sc *scanner) jwt(i, e int) {
	t := sc.s[i:e]
	p1 := strings.IndexByte(t, '.')
	if p1 < 10 {
		return
	}
	p2 := strings.IndexByte(t[p1+1:], '.')
	if p2 < 10 {
		return
	}
	sig := t[p1+1+p2+1:]
	end := 0
	for end < len(sig) && (isAlnum(sig[end]) || sig[end] == '_' || sig[end] == '-') {
		end++
	}
	hdr, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(t[:p1], "="))
	if err != nil || !strings.Contains(string(hdr), `"alg"`) && !strings.Contains(string(hdr), `"typ"`) {
		return
	}
	sc.addSecret(i, i+p1+1+p2+1+end, "jwt")
}

// ukOrIBAN handles tokens that start with two capitals: IBAN (possibly split
// into groups of four), UK NINO (possibly spaced) and DEA numbers.
func (sc *scanner) ukOrIBAN(i, e int, t string) int {
	s := sc.s
	if len(t) >= 4 && isDigit(t[2]) && isDigit(t[3]) {
		if want, ok := ibanLengths[t[:2]]; ok {
			var buf [40]byte
			nb := 0
			k := i
			last := k
			grpLen := 0
			for k < len(s) && nb < want {
				ch := s[k]
				if isDigit(ch) || isUpper(ch) || isLower(ch) {
					if isLower(ch) {
						ch -= 'a' - 'A'
					}
					buf[nb] = ch
					nb++
					grpLen++
					k++
					last = k
					continue
				}
				if ch == ' ' && grpLen == 4 && k+1 < len(s) && isAlnum(s[k+1]) {
					grpLen = 0
					k++
					continue
				}
				break
			}
			if nb == want && (last >= len(s) || !isAlnum(s[last])) && ibanValid(string(buf[:nb])) {
				sc.add(i, last, IBANCode, "iban", 0.95)
				return last
			}
		}
	}
	if len(t) == 9 && ninoValid(t) {
		sc.add(i, e, UKNINO, "nino", 0.85)
		return 0
	}
	if len(t) == 2 && e+11 <= len(s) {
		// "AB 12 34 56 C"
		w := s[i : e+11]
		if w[2] == ' ' && w[5] == ' ' && w[8] == ' ' && w[11] == ' ' && (e+11 == len(s) || !isAlnum(s[e+11])) {
			compact := w[:2] + w[3:5] + w[6:8] + w[9:11] + w[12:13]
			if ninoValid(compact) {
				sc.add(i, e+11, UKNINO, "nino", 0.85)
				return e + 11
			}
		}
	}
	if len(t) == 9 && deaValid(t) {
		sc.add(i, e, MedicalLicense, "dea", 0.6)
	}
	return 0
}

// base64Instruction decodes a base64 token and reports it when the decoded
// text carries an injection phrase.
func (sc *scanner) base64Instruction(i, e int, t string) {
	var dec []byte
	var err error
	if strings.HasSuffix(t, "=") {
		dec, err = base64.StdEncoding.DecodeString(t)
	} else {
		dec, err = base64.RawStdEncoding.DecodeString(t)
	}
	if err != nil || len(dec) < 12 {
		return
	}
	for _, b := range dec {
		if b < 0x20 && b != '\n' && b != '\t' || b >= 0x7f {
			return
		}
	}
	low := strings.ToLower(string(dec))
	for _, p := range injectionNeedles {
		if strings.Contains(low, p) {
			sc.inj = append(sc.inj, cand{start: i, end: e, typ: PromptInjection, rule: "base64-instruction", score: 0.9})
			return
		}
	}
}

var injectionNeedles = []string{"ignore previous", "ignore all", "ignore the above", "ignore your", "disregard", "forget your",
	"you are now", "system prompt", "jailbreak", "developer mode", "do anything now", "new instructions", "override"}

func alnumDash(t string) bool {
	for i := 0; i < len(t); i++ {
		if !isAlnum(t[i]) && t[i] != '-' {
			return false
		}
	}
	return true
}

var commonTLDs = map[string]bool{"com": true, "org": true, "net": true, "edu": true, "gov": true, "io": true, "co": true,
	"uk": true, "de": true, "fr": true, "ai": true, "app": true, "info": true, "biz": true, "us": true, "ca": true,
	"au": true, "jp": true, "cn": true, "in": true, "eu": true, "site": true, "xyz": true, "nl": true, "es": true, "it": true,
	"ch": true, "se": true, "no": true, "br": true, "ru": true, "cloud": true, "online": true, "store": true, "tech": true}

// domain reports a bare host name such as "example.com" (as Presidio's URL
// recognizer does). File names are excluded by requiring a common TLD and
// letters in every label.
func (sc *scanner) domain(i, e int, whole string) {
	t := whole
	if k := strings.IndexByte(t, '/'); k >= 0 {
		t = t[:k]
	}
	dot := strings.LastIndexByte(t, '.')
	tld := t[dot+1:]
	if dot <= 0 || len(tld) < 2 || len(tld) > 6 {
		return
	}
	var buf [6]byte
	for k := 0; k < len(tld); k++ {
		if !isLower(tld[k]) { // "ASP.NET", "Socket.IO" are names, not hosts
			return
		}
		buf[k] = tld[k]
	}
	if !commonTLDs[string(buf[:len(tld)])] {
		return
	}
	prev := byte('.')
	for k := 0; k < len(t); k++ {
		c := t[k]
		switch {
		case c == '.':
			if prev == '.' || prev == '-' {
				return
			}
		case c == '-':
			if prev == '.' {
				return
			}
		case !isAlnum(c):
			return
		}
		prev = c
	}
	letters := false
	for k := 0; k < dot; k++ {
		if isAlpha(t[k]) {
			letters = true
			break
		}
	}
	if !letters {
		return
	}
	sc.add(i, e, URL, "domain", 0.5)
}
