package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulwarkhq/bulwark/services/redaction/engine"
	"github.com/spf13/cobra"
)

func init() { register(newScanCmd) }

type scanOptions struct {
	profile string
	format  string
}

func newScanCmd() *cobra.Command {
	var o scanOptions
	cmd := &cobra.Command{
		Use:   "scan [--profile P] [--format text|json|jsonl] [FILE...]",
		Short: "Scan files or stdin for PII, secrets and prompt injection",
		Long: `scan runs the redaction engine over each FILE (or stdin when none is given, or for "-").

Entity types follow Presidio's names (EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, ...);
secrets are type SECRET with the rule id in "rule"; injection markers are PROMPT_INJECTION.
Offsets are UTF-8 byte offsets.

  --format text   one line per finding: source:line:col TYPE rule score (values are never printed)
  --format json   one JSON document with the findings of every source
  --format jsonl  one output line per input line; a line holding a JSON object {"text": "..."}
                  is scanned as that text, any other line as itself:
                  {"findings":[{"type":"EMAIL_ADDRESS","start":12,"end":29,"rule":"email","score":0.95}]}

Exit status: 0 when nothing was found, 1 when anything was found, 2 on errors.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runScan(cmd, o, args) },
	}
	cmd.Flags().StringVar(&o.profile, "profile", "default", "redaction profile (default, strict, audit-only, mask)")
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text, json or jsonl")
	return cmd
}

// jsonFinding is one finding in json and jsonl output.
type jsonFinding struct {
	Type      string  `json:"type"`
	Start     int     `json:"start"`
	End       int     `json:"end"`
	Rule      string  `json:"rule"`
	Score     float64 `json:"score"`
	DataClass string  `json:"data_class,omitempty"`
}

func toJSON(fs []engine.Finding, withClass bool) []jsonFinding {
	out := make([]jsonFinding, 0, len(fs))
	for _, f := range fs {
		j := jsonFinding{Type: f.EntityType, Start: f.Start, End: f.End, Rule: f.Rule, Score: f.Score}
		if withClass {
			j.DataClass = f.DataClass
		}
		out = append(out, j)
	}
	return out
}

var errFound = exitError{code: 1}

func runScan(cmd *cobra.Command, o scanOptions, args []string) error {
	if o.format != "text" && o.format != "json" && o.format != "jsonl" {
		return fmt.Errorf("unknown --format %q (want text, json or jsonl)", o.format)
	}
	eng, err := engine.New(engine.Params{HashKey: []byte("bulwarkctl-scan-does-not-hash")})
	if err != nil {
		return err
	}
	if _, err := eng.Profile(o.profile); err != nil {
		return err
	}
	if len(args) == 0 {
		args = []string{"-"}
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	found := false
	type source struct {
		Source      string        `json:"source"`
		Findings    []jsonFinding `json:"findings"`
		DataClasses []string      `json:"data_classes"`
	}
	var doc struct {
		Sources []source `json:"sources"`
	}
	for _, name := range args {
		var r io.Reader = cmd.InOrStdin()
		label := "<stdin>"
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r, label = f, name
		}
		if o.format == "jsonl" {
			n, err := scanJSONL(eng, o.profile, r, out)
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			found = found || n > 0
			continue
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		text := string(b)
		res, err := eng.Inspect(text, o.profile)
		if err != nil {
			return err
		}
		found = found || len(res.Findings) > 0
		if o.format == "json" {
			doc.Sources = append(doc.Sources, source{Source: label, Findings: toJSON(res.Findings, true), DataClasses: append([]string{}, res.DataClasses...)})
			continue
		}
		for _, f := range res.Findings {
			line, col := lineCol(text, f.Start)
			fmt.Fprintf(out, "%s:%d:%d: %s %s score=%.2f bytes=%d-%d\n", label, line, col, f.EntityType, f.Rule, f.Score, f.Start, f.End)
		}
	}
	if o.format == "json" {
		if doc.Sources == nil {
			doc.Sources = []source{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if found {
		return errFound
	}
	return nil
}

// scanJSONL writes exactly one output line per input line and returns how
// many findings it reported.
func scanJSONL(eng *engine.Engine, profile string, r io.Reader, out io.Writer) (int, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	total := 0
	for {
		line, err := br.ReadString('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return total, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		text := line
		var obj struct {
			Text *string `json:"text"`
		}
		if strings.HasPrefix(strings.TrimSpace(line), "{") && json.Unmarshal([]byte(line), &obj) == nil && obj.Text != nil {
			text = *obj.Text
		}
		res, ierr := eng.Inspect(text, profile)
		if ierr != nil {
			return total, ierr
		}
		total += len(res.Findings)
		b, merr := json.Marshal(struct {
			Findings []jsonFinding `json:"findings"`
		}{toJSON(res.Findings, false)})
		if merr != nil {
			return total, merr
		}
		if _, werr := fmt.Fprintf(out, "%s\n", b); werr != nil {
			return total, werr
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
	}
}

// lineCol returns the 1-based line and byte column of offset off.
func lineCol(text string, off int) (int, int) {
	line := 1 + strings.Count(text[:off], "\n")
	col := off - strings.LastIndexByte(text[:off], '\n')
	return line, col
}
