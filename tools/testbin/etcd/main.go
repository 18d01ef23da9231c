// Command etcd is etcd's own entry point, built as a dependency so the test
// control plane gets a pinned etcd 3.6 from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
