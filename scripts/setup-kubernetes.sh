#!/usr/bin/env bash
# Idempotent setup of the loopback Kubernetes API server used by the tests and by
# `portal-domains dev-cluster` (loopback/cluster.py). It provides, each part
# skipped when already present:
#   1. kube-apiserver, kube-controller-manager (only its garbage collector and
#      namespace controllers run: cert-manager's Secrets go with their
#      Certificates), kubectl (wrapper module scripts/toolchain/kubernetes) and
#      etcd (scripts/toolchain/etcd), built from the Go module proxy into
#      <cache>/toolchain/kubernetes-<KUBERNETES_VERSION>_etcd-<ETCD_VERSION>/bin;
#   2. the cert-manager and Istio CRDs, copied out of those projects' Go modules into
#      <cache>/toolchain/crds-cert-manager-<CERT_MANAGER_VERSION>_istio-<ISTIO_CRDS_VERSION>/.
# Versions come from scripts/toolchain/versions.env; <cache> is $PORTAL_DOMAINS_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/portal-domains). A cold build takes 15-40 minutes
# on 2 cores (kube-apiserver 13-35 of them, etcd and kubectl about a minute each after
# it); a warm run takes under a second and never calls go.
# PORTAL_DOMAINS_SKIP_KUBERNETES_BUILD=1 uses kube-apiserver, etcd and kubectl from
# PATH instead of building them (the CRDs are still extracted).

# A subshell body, so that `exit` and the shell options below stay inside this
# script even when someone sources it.
main() (
  set -euo pipefail

  local root versions cache bin crds started
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  versions="$root/scripts/toolchain/versions.env"
  # shellcheck source=toolchain/versions.env
  source "$versions"
  SETUP_NAME="setup-kubernetes"
  # shellcheck source=lib/toolchain-steps.sh
  source "$root/scripts/lib/toolchain-steps.sh"
  require_pins "$versions" KUBERNETES_VERSION ETCD_VERSION CERT_MANAGER_VERSION ISTIO_CRDS_VERSION
  trap on_exit EXIT
  cache="${PORTAL_DOMAINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-domains}"
  bin="$cache/toolchain/kubernetes-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}/bin"
  crds="$cache/toolchain/crds-cert-manager-${CERT_MANAGER_VERSION}_istio-${ISTIO_CRDS_VERSION}"
  started=$(date +%s)

  need_go() {  # need_go <what Go is needed for, and the way around it>
    command -v go >/dev/null || fail "Go is required $1"
  }

  # ------------------------------------------------------------ binaries
  local k8s_ldflags="-X k8s.io/component-base/version.gitVersion=v${KUBERNETES_VERSION}"
  k8s_ldflags+=" -X k8s.io/component-base/version.gitMajor=${KUBERNETES_VERSION%%.*}"
  local minor="${KUBERNETES_VERSION#*.}"
  k8s_ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
  k8s_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local tc="$root/scripts/toolchain"

  if [ "${PORTAL_DOMAINS_SKIP_KUBERNETES_BUILD:-}" = "1" ] \
      && command -v kube-apiserver >/dev/null && command -v etcd >/dev/null \
      && command -v kube-controller-manager >/dev/null && command -v kubectl >/dev/null; then
    step "kubernetes binaries: using PATH ($(command -v kube-apiserver))"
    expect_version "$(command -v etcd)" "etcd Version: $ETCD_VERSION" --version
    expect_version "$(command -v kube-apiserver)" "Kubernetes v$KUBERNETES_VERSION" --version
    expect_version "$(command -v kube-controller-manager)" "Kubernetes v$KUBERNETES_VERSION" --version
    expect_version "$(command -v kubectl)" "Client Version: v$KUBERNETES_VERSION" version --client
  else
    if [ "${PORTAL_DOMAINS_SKIP_KUBERNETES_BUILD:-}" = "1" ]; then
      echo "PORTAL_DOMAINS_SKIP_KUBERNETES_BUILD=1 but kube-apiserver, kube-controller-manager, etcd or kubectl is not on PATH: building"
    fi
    step "kubernetes binaries -> $bin"
    mkdir -p "$bin"
    if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] \
        || [ ! -x "$bin/kubectl" ] || [ ! -x "$bin/etcd" ]; then
      need_go "to build them (or put kube-apiserver, kube-controller-manager, etcd and kubectl on PATH and set PORTAL_DOMAINS_SKIP_KUBERNETES_BUILD=1)"
      echo "first build: roughly 15-40 minutes on 2 cores; later runs reuse $bin"
    fi

    if [ ! -x "$bin/etcd" ]; then
      step "build etcd v$ETCD_VERSION (1-3 min cold)"
      go_build "$tc/etcd" "$bin/etcd" . ""
    fi
    CURRENT_STEP="check etcd version"
    expect_version "$bin/etcd" "etcd Version: $ETCD_VERSION" --version

    if [ ! -x "$bin/kube-apiserver" ]; then
      step "build kube-apiserver v$KUBERNETES_VERSION (the longest step: 13-35 min cold)"
      go_build "$tc/kubernetes" "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
    fi
    CURRENT_STEP="check kube-apiserver version"
    expect_version "$bin/kube-apiserver" "Kubernetes v$KUBERNETES_VERSION" --version

    if [ ! -x "$bin/kube-controller-manager" ]; then
      # Most packages are shared with kube-apiserver, so this reuses its build cache.
      step "build kube-controller-manager v$KUBERNETES_VERSION"
      go_build "$tc/kubernetes" "$bin/kube-controller-manager" \
        k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
    fi
    CURRENT_STEP="check kube-controller-manager version"
    expect_version "$bin/kube-controller-manager" "Kubernetes v$KUBERNETES_VERSION" --version

    if [ ! -x "$bin/kubectl" ]; then
      # Most packages are shared with kube-apiserver, so this reuses its build cache.
      step "build kubectl v$KUBERNETES_VERSION"
      go_build "$tc/kubernetes" "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
    fi
    CURRENT_STEP="check kubectl version"
    expect_version "$bin/kubectl" "Client Version: v$KUBERNETES_VERSION" version --client
  fi

  # ------------------------------------------------------------ CRDs
  if [ -d "$crds" ]; then
    step "CRDs present: $crds"
  else
    step "extract CRDs (cert-manager v$CERT_MANAGER_VERSION, istio $ISTIO_CRDS_VERSION) -> $crds"
    need_go "to download the cert-manager and Istio modules from the Go module proxy"
    local scratch tmp cm_dir istio_dir
    # Outside any module, so neither wrapper's go.mod constrains the download.
    scratch="$(mktemp -d)"
    tmp="$crds.tmp.$$"
    CLEANUP+=("$scratch" "$tmp")
    rm -rf "$tmp"
    mkdir -p "$tmp"

    # module_dir <module@version>: its (read-only) folder in the Go module cache.
    # Prints nothing on failure; the caller reports it (this runs in a subshell).
    module_dir() {
      local json dir
      json="$(cd "$scratch" && go mod download -json "$1" 2>&1)" || true
      dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
      if [ -n "$dir" ] && [ -d "$dir" ]; then
        echo "$dir"
      else
        printf '%s\n' "$json" >&2
      fi
    }

    CURRENT_STEP="download github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION"
    cm_dir="$(module_dir "github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION")"
    [ -n "$cm_dir" ] || fail "go mod download failed (output above)"
    CURRENT_STEP="download istio.io/istio@$ISTIO_CRDS_VERSION"
    istio_dir="$(module_dir "istio.io/istio@$ISTIO_CRDS_VERSION")"
    [ -n "$istio_dir" ] || fail "go mod download failed (output above)"

    CURRENT_STEP="copy CRDs"
    local cm_files=("$cm_dir"/deploy/crds/*.yaml)
    [ -e "${cm_files[0]}" ] || fail "no CRDs in $cm_dir/deploy/crds"
    local istio_file="$istio_dir/manifests/charts/base/files/crd-all.gen.yaml"
    [ -f "$istio_file" ] || fail "$istio_file is missing"
    # Copies are writable (module cache files are not) and keep their upstream names;
    # the istio file gets a prefix so the folder says where it came from.
    install -m 0644 "${cm_files[@]}" "$tmp/"
    install -m 0644 "$istio_file" "$tmp/istio-crd-all.gen.yaml"
    grep -q '^  name: gateways.networking.istio.io$' "$tmp/istio-crd-all.gen.yaml" \
      || fail "$istio_file has no Gateway CRD"
    {
      echo "# CRDs installed by loopback/cluster.py; written by scripts/setup-kubernetes.sh"
      echo "github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION deploy/crds/*.yaml"
      echo "istio.io/istio@$ISTIO_CRDS_VERSION manifests/charts/base/files/crd-all.gen.yaml"
    } > "$tmp/SOURCES"
    rm -rf "$crds"
    # Renaming the finished folder makes "the folder exists" mean "complete".
    mv "$tmp" "$crds"
    echo "$(cat "$crds"/*.yaml | grep -c '^kind: CustomResourceDefinition$') CRDs in $crds"
  fi

  CURRENT_STEP="done"
  step "kubernetes setup complete in $(( $(date +%s) - started ))s"
)

main "$@"
