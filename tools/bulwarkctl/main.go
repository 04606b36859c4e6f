// Command bulwarkctl is the Bulwark command-line tool. Each subcommand lives
// in its own file and registers itself with register, so adding one (audit,
// keys, ...) does not touch the others.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// subcommands are added by register from each subcommand's file.
var subcommands []func() *cobra.Command

// register adds a subcommand constructor; call it from an init function.
func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

// rootHooks run on the finished tree (global flags, subcommands added to
// another file's group such as "audit query"); add them from an init function.
var rootHooks []func(root *cobra.Command)

// exitError asks main to exit with a code without printing anything more,
// e.g. scan's "findings present" status 1.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// newRootCmd builds the command tree with the given streams, so tests run it in-process.
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "bulwarkctl",
		Short:         "Operate and test Bulwark, the AI governance gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	for _, c := range subcommands {
		root.AddCommand(c())
	}
	for _, h := range rootHooks {
		h(root)
	}
	return root
}

// run executes the command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "bulwarkctl:", err)
		return 2
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
