package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonOpts print protobuf messages with their proto field names, so scripts
// see the names documented in the .proto files.
var jsonOpts = protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: "  "}

// printJSON writes m as one JSON document.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(toAny(header)...)
	return t
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (t *table) row(cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		s := fmt.Sprint(c)
		if s == "" {
			s = "-"
		}
		parts[i] = strings.ReplaceAll(s, "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// kv prints "name: value" lines for one object.
func kv(w io.Writer, pairs ...any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		v := fmt.Sprint(pairs[i+1])
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], v)
	}
	return tw.Flush()
}

// ts formats a timestamp for tables; unset is "-".
func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

func dur(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Millisecond).String()
}

func join(s []string) string { return strings.Join(s, ",") }

// enumName strips an enum's type prefix: PRINCIPAL_KIND_SERVICE -> service.
func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}

// parseEnum maps a short, case-insensitive name to an enum value.
func parseEnum(name, prefix string, values map[string]int32) (int32, error) {
	if name == "" {
		return 0, nil
	}
	full := prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if v, ok := values[full]; ok {
		return v, nil
	}
	var names []string
	for k, v := range values {
		if v != 0 {
			names = append(names, enumName(k, prefix))
		}
	}
	return 0, fmt.Errorf("unknown value %q (one of: %s)", name, strings.Join(sortStrings(names), ", "))
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// parseTime accepts RFC 3339 or a duration back from now ("24h", "7d").
func parseTime(s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return timestamppb.New(t), nil
	}
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && n >= 0 {
			return timestamppb.New(now.Add(-time.Duration(n) * 24 * time.Hour)), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return timestamppb.New(now.Add(-d)), nil
	}
	return nil, fmt.Errorf("time %q is neither RFC 3339 (2026-01-02T15:04:05Z) nor a duration back from now (90m, 24h, 7d)", s)
}

// out returns the command's stdout.
func out(cmd *cobra.Command) io.Writer { return cmd.OutOrStdout() }

// isTerminal reports whether f is an interactive terminal (prompts and progress bars go there only).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func jsonMarshalIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
