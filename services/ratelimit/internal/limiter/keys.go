package limiter

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// Partition says which subject descriptors form the Redis Cluster hash tag.
// Every key one Reserve touches carries the same tag, so the script runs on one
// node of a cluster. Limits that share state must therefore share a partition.
type Partition string

const (
	// PartitionTeam (the default) tags keys with environment and team: every
	// limit keyed on an API key, principal or team of that team, alone or with a
	// model or provider, lives in one slot. A limit keyed only on model, provider
	// or environment is counted per team under this partition.
	PartitionTeam Partition = "team"
	// PartitionEnvironment tags keys with the environment only, so limits shared
	// across teams (a global cap per provider) are exact too, at the price of one
	// slot (one cluster node) per environment.
	PartitionEnvironment Partition = "environment"
)

// esc makes a subject value safe inside a key: no braces (hash tags), colons
// (our separator) or bars (reservation members).
func esc(s string) string {
	return keyEscaper.Replace(url.PathEscape(s))
}

var keyEscaper = strings.NewReplacer("{", "%7B", "}", "%7D", ":", "%3A", "|", "%7C")

func (l *Limiter) tag(s Subject) string {
	if l.partition == PartitionEnvironment {
		return esc(s.Environment)
	}
	return esc(s.Environment) + "/" + esc(s.TeamID)
}

func kindCode(k Kind) string {
	switch k {
	case KindRequests:
		return "q"
	case KindTokens:
		return "t"
	case KindSpend:
		return "s"
	default:
		return "c"
	}
}

// limitKeys returns the state key and reservation set key of one limit for one subject.
func limitKeys(prefix, tag string, s Subject, lim Limit) (state, set string) {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("{")
	b.WriteString(tag)
	b.WriteString("}:")
	b.WriteString(kindCode(lim.Kind))
	b.WriteString(":")
	b.WriteString(esc(lim.Name))
	for _, d := range lim.Dimensions {
		fmt.Fprintf(&b, ":%d=%s", d, esc(s.value(d)))
	}
	base := b.String()
	return base, base + ":res"
}

func (l *Limiter) recordKey(tag, requestID string) string {
	return l.prefix + "{" + tag + "}:rec:" + esc(requestID)
}

const (
	remotePrefix = "r1."
	localPrefix  = "l1."
)

// reservationID encodes the hash tag and request id so that Settle finds the
// record in one round trip without any other lookup.
func reservationID(prefix, tag, requestID string) string {
	return prefix + base64.RawURLEncoding.EncodeToString([]byte(tag+"\x00"+requestID))
}

func parseReservationID(id string) (prefix, tag, requestID string, err error) {
	switch {
	case strings.HasPrefix(id, remotePrefix):
		prefix = remotePrefix
	case strings.HasPrefix(id, localPrefix):
		prefix = localPrefix
	default:
		return "", "", "", ErrInvalidReservation
	}
	raw, err := base64.RawURLEncoding.DecodeString(id[len(prefix):])
	if err != nil {
		return "", "", "", ErrInvalidReservation
	}
	tag, requestID, ok := strings.Cut(string(raw), "\x00")
	if !ok || requestID == "" || strings.ContainsAny(tag, "{}") {
		return "", "", "", ErrInvalidReservation
	}
	return prefix, tag, requestID, nil
}
