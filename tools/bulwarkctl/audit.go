package main

import (
	"errors"

	"github.com/bulwarkhq/bulwark/services/audit/auditcli"
	"github.com/bulwarkhq/bulwark/services/platform"
	"github.com/spf13/cobra"
)

// audit: "bulwarkctl audit export" (evidence bundle from the audit service, with a
// progress bar) and "bulwarkctl audit verify BUNDLE" (offline; exit status 1 when the
// bundle does not verify).
func init() {
	register(func() *cobra.Command {
		cmd := auditcli.Command(auditcli.Params{HTTPClient: platform.HTTPClient()})
		for _, sub := range cmd.Commands() {
			if runE := sub.RunE; runE != nil {
				sub.RunE = func(c *cobra.Command, args []string) error {
					if err := runE(c, args); errors.Is(err, auditcli.ErrVerificationFailed) {
						return exitError{code: 1}
					} else {
						return err
					}
				}
			}
		}
		return cmd
	})
}
