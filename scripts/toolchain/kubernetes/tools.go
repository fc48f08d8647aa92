//go:build tools

// Keeps the upstream main packages setup.sh builds (k8s.io/kubernetes/cmd/
// kube-apiserver and cmd/kubectl) in this module's dependency graph.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
