// Command etcd runs the upstream etcd server for Breakeven's local test control plane.
//
// etcd's own go.mod carries replace lines, so `go install` of the server module fails; a main
// package in a module of our own that calls etcdmain.Main builds it at a pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
