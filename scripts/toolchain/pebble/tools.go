//go:build tools

// Keeps Pebble's command (github.com/letsencrypt/pebble/v2/cmd/pebble) in this
// module's dependency graph, so scripts/setup-certificates.sh can build it with
// -mod=readonly from the versions pinned in go.mod/go.sum.
package tools

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
)
