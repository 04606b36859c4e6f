// Command vault is HashiCorp Vault built from its Go module, so that tests and
// the dev stack run a real Vault dev server on machines where no package ships
// the binary. It is kept out of go.work so that Vault's dependency graph never
// touches the services, which depend only on github.com/hashicorp/vault/api.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
