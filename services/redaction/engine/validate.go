package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strings"

	"golang.org/x/crypto/sha3"
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }
func isHex(c byte) bool   { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

func atoiN(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// luhn reports whether a digit string passes the Luhn check.
func luhn(d string) bool {
	sum, dbl := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if dbl {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		dbl = !dbl
	}
	return sum%10 == 0
}

// cardIIN reports whether a PAN's issuer prefix and length belong to a known scheme.
func cardIIN(d string) bool {
	n := len(d)
	p := func(k int) int { return atoiN(d[:k]) }
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720: // Mastercard
		return n == 16
	case p(2) == 34 || p(2) == 37: // Amex
		return n == 15
	case p(4) == 6011, p(3) >= 644 && p(3) <= 649, p(2) == 65, p(6) >= 622126 && p(6) <= 622925: // Discover
		return n >= 16 && n <= 19
	case p(3) >= 300 && p(3) <= 305, p(2) == 36, p(2) == 38, p(2) == 39: // Diners
		return n >= 14 && n <= 19
	case p(4) >= 3528 && p(4) <= 3589: // JCB
		return n >= 16 && n <= 19
	case p(2) == 62: // UnionPay
		return n >= 16 && n <= 19
	case d[0] == '1': // UATP
		return n == 15
	case p(2) == 50, p(2) >= 56 && p(2) <= 69: // Maestro
		return n >= 12 && n <= 19
	case p(4) == 2200 || p(4) == 2201 || p(4) == 2202 || p(4) == 2203 || p(4) == 2204: // Mir
		return n >= 16 && n <= 19
	}
	return false
}

// ssnValid applies the SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
func ssnValid(d string) bool {
	area, group, serial := atoiN(d[:3]), atoiN(d[3:5]), atoiN(d[5:])
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return false
	}
	// Repeated digits are placeholders. (123-45-6789 is kept: it is the
	// example people paste, and redacting it costs nothing.)
	if strings.Count(d, d[:1]) == 9 {
		return false
	}
	return true
}

// itinValid: 9xx-[50-65|70-88|90-92|94-99]-xxxx.
func itinValid(d string) bool {
	if d[0] != '9' {
		return false
	}
	g := atoiN(d[3:5])
	return (g >= 50 && g <= 65) || (g >= 70 && g <= 88) || (g >= 90 && g <= 92) || (g >= 94 && g <= 99)
}

// nhsValid checks the NHS number mod-11 check digit.
func nhsValid(d string) bool {
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(d[i]-'0') * (10 - i)
	}
	chk := 11 - sum%11
	if chk == 11 {
		chk = 0
	}
	if chk == 10 {
		return false
	}
	return chk == int(d[9]-'0') && strings.Count(d, d[:1]) != 10
}

// abaValid checks an ABA routing number's prefix and 3-7-1 checksum.
func abaValid(d string) bool {
	pfx := atoiN(d[:2])
	if !((pfx <= 12) || (pfx >= 21 && pfx <= 32) || (pfx >= 61 && pfx <= 72) || pfx == 80) {
		return false
	}
	v := func(i int) int { return int(d[i] - '0') }
	sum := 3*(v(0)+v(3)+v(6)) + 7*(v(1)+v(4)+v(7)) + (v(2) + v(5) + v(8))
	return sum%10 == 0 && d != "000000000"
}

// deaValid checks a DEA registration number: registrant letter, name letter, 7 digits with check digit.
func deaValid(s string) bool {
	if len(s) != 9 || !strings.ContainsRune("ABCDEFGHJKLMPRSTUX", rune(s[0])) || !(isUpper(s[1]) || s[1] == '9') || !allDigits(s[2:]) {
		return false
	}
	d := s[2:]
	v := func(i int) int { return int(d[i] - '0') }
	sum := v(0) + v(2) + v(4) + 2*(v(1)+v(3)+v(5))
	return sum%10 == v(6)
}

// ninoValid checks the UK National Insurance number prefix and suffix rules on 9 compact characters.
func ninoValid(s string) bool {
	if len(s) != 9 || !isUpper(s[0]) || !isUpper(s[1]) || !allDigits(s[2:8]) || s[8] < 'A' || s[8] > 'D' {
		return false
	}
	if strings.IndexByte("DFIQUV", s[0]) >= 0 || strings.IndexByte("DFIOQUV", s[1]) >= 0 {
		return false
	}
	switch s[:2] {
	case "BG", "GB", "KN", "NK", "NT", "TN", "ZZ":
		return false
	}
	return true
}

// ibanLengths is the ISO 13616 registry length per country.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
	"MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
	"QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
	"ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
	"BI": 27, "DJ": 27, "FK": 18, "MN": 20, "NI": 28, "OM": 23, "RU": 33, "SO": 23, "YE": 30,
}

// ibanValid checks the mod-97 remainder of a compact IBAN.
func ibanValid(s string) bool {
	if len(s) < 15 || ibanLengths[s[:2]] != len(s) || !isDigit(s[2]) || !isDigit(s[3]) {
		return false
	}
	rem := 0
	add := func(c byte) bool {
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case isUpper(c):
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		default:
			return false
		}
		return true
	}
	for i := 4; i < len(s); i++ {
		if !add(s[i]) {
			return false
		}
	}
	for i := 0; i < 4; i++ {
		add(s[i])
	}
	return rem == 1
}

const b58alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var b58index = func() [256]int8 {
	var t [256]int8
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(b58alphabet); i++ {
		t[b58alphabet[i]] = int8(i)
	}
	return t
}()

// base58check reports whether s is a Base58Check string with a P2PKH or P2SH version byte.
func base58check(s string) bool {
	if len(s) < 26 || len(s) > 35 {
		return false
	}
	var buf [40]byte // big-endian accumulator, 25 bytes needed
	for i := 0; i < len(s); i++ {
		v := b58index[s[i]]
		if v < 0 {
			return false
		}
		carry := int(v)
		for j := len(buf) - 1; j >= 0; j-- {
			carry += int(buf[j]) * 58
			buf[j] = byte(carry)
			carry >>= 8
		}
		if carry != 0 {
			return false
		}
	}
	lead := 0
	for lead < len(s) && s[lead] == '1' {
		lead++
	}
	// Locate the payload: leading zero bytes correspond to leading '1's.
	start := 0
	for start < len(buf) && buf[start] == 0 {
		start++
	}
	payload := append(make([]byte, lead, 25), buf[start:]...)
	if len(payload) != 25 {
		return false
	}
	if payload[0] != 0x00 && payload[0] != 0x05 {
		return false
	}
	h1 := sha256.Sum256(payload[:21])
	h2 := sha256.Sum256(h1[:])
	return h2[0] == payload[21] && h2[1] == payload[22] && h2[2] == payload[23] && h2[3] == payload[24]
}

const bech32charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

// bech32Valid checks a segwit address (bech32 for v0, bech32m for v1+) with the "bc" prefix.
func bech32Valid(s string) bool {
	if len(s) < 14 || len(s) > 74 {
		return false
	}
	lower := strings.ToLower(s)
	if lower != s && strings.ToUpper(s) != s {
		return false
	}
	pos := strings.LastIndexByte(lower, '1')
	if pos != 2 || lower[:2] != "bc" || len(lower)-pos-1 < 6 {
		return false
	}
	values := make([]int, 0, len(lower))
	for i := pos + 1; i < len(lower); i++ {
		k := strings.IndexByte(bech32charset, lower[i])
		if k < 0 {
			return false
		}
		values = append(values, k)
	}
	gen := [5]int{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := 1
	step := func(v int) {
		b := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ v
		for i := 0; i < 5; i++ {
			if (b>>i)&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	for i := 0; i < pos; i++ {
		step(int(lower[i]) >> 5)
	}
	step(0)
	for i := 0; i < pos; i++ {
		step(int(lower[i]) & 31)
	}
	for _, v := range values {
		step(v)
	}
	if len(values) == 0 {
		return false
	}
	ver := values[0]
	if ver == 0 {
		return chk == 1 && (len(lower) == 42 || len(lower) == 62)
	}
	return chk == 0x2bc830a3 && ver <= 16
}

// ethValid accepts 0x + 40 hex; mixed case must carry a valid EIP-55 checksum.
func ethValid(s string) (ok bool, checksummed bool) {
	if len(s) != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !allHex(s[2:]) {
		return false, false
	}
	body := s[2:]
	lower, upper := strings.ToLower(body), strings.ToUpper(body)
	if body == lower || body == upper {
		return strings.Trim(body, "0") != "", false
	}
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(lower))
	sum := hex.EncodeToString(h.Sum(nil))
	for i := 0; i < 40; i++ {
		c := body[i]
		if c >= '0' && c <= '9' {
			continue
		}
		up := sum[i] >= '8'
		if up != isUpper(c) {
			return false, false
		}
	}
	return true, true
}

// entropy is the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if len(s) == 0 {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	e := 0.0
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			e -= p * math.Log2(p)
		}
	}
	return e
}

// validDate reports whether y-m-d is a calendar date in a plausible birth range.
func validDate(y, m, d int) bool {
	if y < 1900 || y > 2030 || m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	if d > days[m] {
		return false
	}
	if m == 2 && d == 29 && !(y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		return false
	}
	return true
}
