//go:build tools

// Keeps the upstream main packages setup.sh builds (k8s.io/kubernetes/cmd/
// kube-apiserver, cmd/kube-controller-manager and cmd/kubectl) in this module's
// dependency graph.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
