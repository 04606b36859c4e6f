package engine

import "unicode/utf8"

// normText is the text detectors see: confusable forms folded to ASCII and
// invisible characters removed, with a map from every byte back to the rune
// of the original text that produced it.
type normText struct {
	s string
	// srcStart[i] and srcEnd[i] are the original byte offsets of the rune
	// that produced normalised byte i; nil when s is the original text.
	srcStart []int32
	srcEnd   []int32
	// hidden counts what normalisation removed, for injection scoring.
	zeroWidth, bidi, tags int
	// firstHidden is the original offset of the first removed character.
	firstHidden, firstHiddenEnd int
}

// origSpan maps a normalised span back to original byte offsets.
func (n *normText) origSpan(start, end int) (int, int) {
	if n.srcStart == nil {
		return start, end
	}
	if end <= start {
		return int(n.srcStart[start]), int(n.srcStart[start])
	}
	return int(n.srcStart[start]), int(n.srcEnd[end-1])
}

// normalize folds width variants, Unicode dashes, quotes and spaces to ASCII,
// decodes Unicode tag characters (used to smuggle hidden ASCII) and removes
// zero-width and bidi control characters. ASCII input is returned as is
// without allocating.
func normalize(text string) normText {
	ascii := true
	i := 0
	for ; i+8 <= len(text); i += 8 {
		if (text[i]|text[i+1]|text[i+2]|text[i+3]|text[i+4]|text[i+5]|text[i+6]|text[i+7])&0x80 != 0 {
			ascii = false
			break
		}
	}
	for ; ascii && i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			ascii = false
		}
	}
	if ascii {
		return normText{s: text, firstHidden: -1}
	}
	n := normText{firstHidden: -1}
	out := make([]byte, 0, len(text))
	n.srcStart = make([]int32, 0, len(text))
	n.srcEnd = make([]int32, 0, len(text))
	emit := func(b byte, i, sz int) {
		out = append(out, b)
		n.srcStart = append(n.srcStart, int32(i))
		n.srcEnd = append(n.srcEnd, int32(i+sz))
	}
	hide := func(i, sz int) {
		if n.firstHidden < 0 {
			n.firstHidden, n.firstHiddenEnd = i, i+sz
		}
	}
	prevEmoji := false
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			emit(c, i, 1)
			prevEmoji = false
			i++
			continue
		}
		r, sz := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && sz == 1 {
			// An invalid byte becomes a delimiter so nothing matches across it.
			emit(0x1a, i, 1)
			i++
			continue
		}
		switch {
		case r >= 0xFF01 && r <= 0xFF5E: // fullwidth ASCII
			emit(byte(r-0xFEE0), i, sz)
		case r == 0x3000 || r == 0x00A0 || (r >= 0x2000 && r <= 0x200A) || r == 0x202F || r == 0x205F || r == 0x1680:
			emit(' ', i, sz)
		case r == 0x200D && prevEmoji:
			// A joiner inside an emoji sequence is legitimate; keep it.
			for k := 0; k < sz; k++ {
				emit(text[i+k], i, sz)
			}
		case r == 0x200B || r == 0x200C || r == 0x200D || r == 0x2060 || r == 0xFEFF || r == 0x00AD || r == 0x180E || (r >= 0x2061 && r <= 0x2064):
			if !(r == 0xFEFF && i == 0) {
				n.zeroWidth++
				hide(i, sz)
			}
		case (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C:
			n.bidi++
			hide(i, sz)
		case r >= 0xE0020 && r <= 0xE007E: // tag characters carry invisible ASCII
			n.tags++
			hide(i, sz)
			emit(byte(r-0xE0000), i, sz)
		case r == 0xE0001 || r == 0xE007F:
			n.tags++
			hide(i, sz)
		case (r >= 0x2010 && r <= 0x2015) || r == 0x2212 || r == 0xFE58 || r == 0xFE63:
			emit('-', i, sz)
		case r == 0x2018 || r == 0x2019 || r == 0x201B:
			emit('\'', i, sz)
		case r == 0x201C || r == 0x201D:
			emit('"', i, sz)
		case r == 0xFE6B:
			emit('@', i, sz)
		case r == 0x2024 || r == 0xFE52:
			emit('.', i, sz)
		default:
			for k := 0; k < sz; k++ {
				emit(text[i+k], i, sz)
			}
		}
		prevEmoji = r >= 0x1F000 || (r >= 0x2600 && r <= 0x27BF) || r == 0xFE0F || r == 0x200D
		i += sz
	}
	n.s = string(out)
	return n
}
