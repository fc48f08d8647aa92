// etcd's server entry point; upstream's main module (go.etcd.io/etcd/v3) is
// not what the proxy serves for this release, so call etcdmain directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
