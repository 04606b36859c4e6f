package main

// The incident runbooks in docs/runbooks may only use commands that exist:
// every "bulwarkctl ..." line in a shell block, and every `bulwarkctl ...`
// inline command, must resolve to a runnable command of the real cobra tree
// with flags that parse, required flags present and arguments accepted.

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const runbookDir = "../../docs/runbooks"

// shellFields splits a command line the way sh does for the simple forms used
// in the runbooks: whitespace, single and double quotes, and a trailing comment.
func shellFields(line string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return out
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

var inlineCmd = regexp.MustCompile("`(bulwarkctl [^`]+)`")

// runbookCommands returns every bulwarkctl command line of a Markdown file.
func runbookCommands(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			if strings.HasPrefix(trimmed, "bulwarkctl ") {
				// Drop a redirection: it belongs to the shell.
				if i := strings.Index(trimmed, " > "); i > 0 {
					trimmed = trimmed[:i]
				}
				cmds = append(cmds, trimmed)
			}
			continue
		}
		for _, m := range inlineCmd.FindAllStringSubmatch(line, -1) {
			// Inline mentions of a bare command group name ("bulwarkctl audit export") count too.
			cmds = append(cmds, m[1])
		}
	}
	return cmds
}

// checkCommandLine parses line against a fresh command tree without running it.
func checkCommandLine(line string) (string, bool) {
	args := shellFields(line)[1:]
	var o, e bytes.Buffer
	root := newRootCmd(strings.NewReader(""), &o, &e)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return "unknown command: " + err.Error(), false
	}
	if cmd == root || !cmd.Runnable() {
		return "not a runnable command: " + cmd.CommandPath(), false
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return "flags: " + err.Error(), false
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return "arguments: " + err.Error(), false
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return "required flags: " + err.Error(), false
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return "flag groups: " + err.Error(), false
	}
	if missing := usageRequiredMissing(cmd); missing != "" {
		return "the usage line requires " + missing, false
	}
	return cmd.CommandPath(), true
}

var (
	bracketed = regexp.MustCompile(`\[[^\]]*\]`)
	usageFlag = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)
)

// usageRequiredMissing enforces the flags a command's usage line shows outside
// brackets (e.g. "disable NAME --reason TEXT"), which some commands check in
// RunE rather than with MarkFlagRequired. Alternatives separated by " | "
// pass when any one of them is satisfied.
func usageRequiredMissing(cmd *cobra.Command) string {
	var missing []string
	for _, alt := range strings.Split(cmd.Use, " | ") {
		missing = missing[:0]
		for _, m := range usageFlag.FindAllStringSubmatch(bracketed.ReplaceAllString(alt, ""), -1) {
			if f := cmd.Flags().Lookup(m[1]); f != nil && !f.Changed {
				missing = append(missing, "--"+m[1])
			}
		}
		if len(missing) == 0 {
			return ""
		}
	}
	return strings.Join(missing, " ")
}

func TestRunbooks_EveryBulwarkctlCommandParsesAgainstTheCommandTree(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(runbookDir, "*.md"))
	if err != nil || len(files) < 6 {
		t.Fatalf("runbooks: %v (%d files)", err, len(files))
	}
	used := map[string]bool{}
	total := 0
	for _, f := range files {
		cmds := runbookCommands(t, f)
		if !strings.HasSuffix(f, "README.md") && len(cmds) < 5 {
			t.Errorf("%s: only %d commands; a runbook's steps are backed by commands", filepath.Base(f), len(cmds))
		}
		for _, c := range cmds {
			total++
			path, ok := checkCommandLine(c)
			if !ok {
				t.Errorf("%s: %q: %s", filepath.Base(f), c, path)
				continue
			}
			used[path] = true
			if strings.Contains(c, "--provider") && strings.HasPrefix(path, "bulwarkctl keys rotate") {
				used["bulwarkctl keys rotate --provider"] = true
			}
		}
	}
	for _, want := range []string{"bulwarkctl provider disable", "bulwarkctl keys rotate --provider", "bulwarkctl audit query",
		"bulwarkctl keys revoke", "bulwarkctl principals disable", "bulwarkctl audit export", "bulwarkctl evidence", "bulwarkctl dataflow"} {
		if !used[want] {
			t.Errorf("no runbook uses %s", want)
		}
	}
	t.Logf("%d command lines checked", total)
}

func TestRunbooks_CheckerRejectsCommandsThatDoNotExist(t *testing.T) {
	for _, bad := range []string{
		"bulwarkctl provider remove openai",                    // no such subcommand
		"bulwarkctl provider disable openai",                   // --reason is required
		"bulwarkctl keys rotate --provider openai --region eu", // no such flag
		"bulwarkctl audit query --key-id",                      // flag without its value
		"bulwarkctl keys",                                      // a group, not a command
		"bulwarkctl changes promote CH1",                       // --env is required
	} {
		if path, ok := checkCommandLine(bad); ok {
			t.Errorf("%q was accepted as %s", bad, path)
		}
	}
	if path, ok := checkCommandLine(`bulwarkctl provider disable openai --reason "INC-1 vendor breach" # now`); !ok {
		t.Errorf("a valid line was refused: %s", path)
	}
	if got := shellFields(`bulwarkctl a "b c" 'd e' f # g`); strings.Join(got, "|") != "bulwarkctl|a|b c|d e|f" {
		t.Errorf("shellFields: %q", got)
	}
}
