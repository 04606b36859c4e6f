package engine

import "strings"

// assignment looks at "key = value" / "key: value" around the operator at op
// and reports the value when the key names a credential. It returns 0 so the
// value is still scanned as a token (a provider prefix there wins with a more
// specific rule id).
func (sc *scanner) assignment(op int) int {
	s := sc.s
	// Key: identifier before the operator, skipping a closing quote and spaces.
	k := op
	for skip := 0; k > 0 && skip < 3 && (s[k-1] == ' ' || s[k-1] == '"' || s[k-1] == '\'' || s[k-1] == '`'); skip++ {
		k--
	}
	ke := k
	for k > 0 && ke-k < 64 && (isAlnum(s[k-1]) || s[k-1] == '_' || s[k-1] == '-' || s[k-1] == '.') {
		k--
	}
	if ke-k < 2 || ke-k > 64 {
		return 0
	}
	var buf [64]byte
	key := buf[:ke-k]
	for x := range key {
		c := s[k+x]
		if isUpper(c) {
			c += 'a' - 'A'
		}
		key[x] = c
	}
	kind, rule := secretKeyKind(string(key))
	if kind == 0 {
		return 0
	}
	// Value: after the operator (":=", "=>", "==" tolerated), spaces and an optional quote.
	v := op + 1
	if v < len(s) && (s[v] == '=' || s[v] == '>') {
		v++
	}
	for v < len(s) && s[v] == ' ' {
		v++
	}
	if v >= len(s) {
		return 0
	}
	ve := v
	if q := s[v]; q == '"' || q == '\'' || q == '`' {
		v++
		end := strings.IndexByte(s[v:min(len(s), v+512)], q)
		if end < 0 {
			return 0
		}
		ve = v + end
	} else {
		for ve < len(s) && ve-v < 512 && !valueStop(s[ve]) {
			ve++
		}
		for ve > v && (s[ve-1] == '.' || s[ve-1] == ',') {
			ve--
		}
	}
	val := s[v:ve]
	if placeholder(val) || strings.ContainsAny(val, " \t\n") {
		return 0
	}
	switch kind {
	case keyPassword:
		if len(val) < 4 || len(val) > 128 || !passwordLike(val) {
			return 0
		}
		sc.out = append(sc.out, cand{start: v, end: ve, typ: Secret, rule: rule, score: 0.85})
	case keyToken:
		if len(val) < 16 || !tokenLike(val) || entropy(val) < 3.5 {
			return 0
		}
		sc.out = append(sc.out, cand{start: v, end: ve, typ: Secret, rule: rule, score: 0.8})
	}
	return 0
}

func valueStop(c byte) bool {
	return c <= ' ' || c >= 0x80 || c == ';' || c == ',' || c == '"' || c == '\'' || c == '`' || c == ')' || c == '}' || c == ']' || c == '<' || c == '>'
}

const (
	keyPassword = 1 + iota
	keyToken
)

// secretKeyKind classifies an assignment key as gitleaks' generic rule does
// (keywords access, auth, api, credential, key, password, secret, token).
func secretKeyKind(k string) (int, string) {
	switch {
	case k == "accountkey" || k == "sharedaccesskey":
		return keyToken, "azure-storage-account-key"
	case strings.Contains(k, "aws") && strings.Contains(k, "secret"):
		return keyToken, "aws-secret-access-key"
	case strings.Contains(k, "password") || strings.Contains(k, "passwd") || strings.HasSuffix(k, "pwd") ||
		strings.HasSuffix(k, "_pass") || strings.HasSuffix(k, "-pass") || strings.HasSuffix(k, ".pass") || k == "pass" || k == "pw":
		return keyPassword, "password-assignment"
	case strings.Contains(k, "secret") || strings.Contains(k, "token") || strings.Contains(k, "apikey") ||
		strings.Contains(k, "api_key") || strings.Contains(k, "api-key") || strings.Contains(k, "accesskey") ||
		strings.Contains(k, "access_key") || strings.Contains(k, "private_key") || strings.Contains(k, "privatekey") ||
		strings.Contains(k, "credential") || strings.Contains(k, "auth") || strings.HasSuffix(k, "_key") || strings.HasSuffix(k, "-key") || k == "key":
		return keyToken, "generic-api-key"
	}
	return 0, ""
}

func passwordLike(v string) bool {
	var dig, up, lowc, sym bool
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isDigit(c):
			dig = true
		case isUpper(c):
			up = true
		case isLower(c):
			lowc = true
		default:
			sym = true
		}
	}
	if !dig && !sym && !(up && lowc) {
		return false
	}
	// Identifiers and calls such as self.password or getPassword() are code, not values.
	if strings.Contains(v, "(") || strings.HasPrefix(v, "self.") || strings.HasPrefix(v, "this.") || strings.HasPrefix(v, "config.") {
		return false
	}
	switch strings.ToLower(v) {
	case "true", "false", "null", "none", "nil", "undefined", "string", "str", "required", "optional":
		return false
	}
	return true
}

func tokenLike(v string) bool {
	var dig, alpha bool
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isDigit(c):
			dig = true
		case isAlpha(c):
			alpha = true
		case c == '+' || c == '/' || c == '=' || c == '_' || c == '-' || c == '.' || c == '~' || c == ':':
		default:
			return false
		}
	}
	return dig && alpha
}
