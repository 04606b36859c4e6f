// Package tools pins the versions of the code generators and probes that the
// project runs with `go tool`. It is kept out of go.work so that the tools'
// dependencies never mix with the services'.
package tools
