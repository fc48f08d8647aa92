#!/usr/bin/env bash
# Idempotent setup of the real certificate pipeline used by the certificate e2e tests
# (loopback/acme.py). It provides, each part skipped when already present:
#   1. cert-manager-controller: our small main (scripts/toolchain/cert-manager/main.go)
#      running cert-manager's own ACME controllers, built from the Go module proxy;
#   2. pebble, Let's Encrypt's ACME test server (scripts/toolchain/pebble);
#      both into <cache>/toolchain/cert-manager-<CERT_MANAGER_VERSION>_pebble-<PEBBLE_VERSION>/bin;
#   3. BIND 9's `named` (Debian package bind9), the authoritative DNS server that
#      serves the test zones and accepts TSIG-signed RFC 2136 updates.
# Versions come from scripts/toolchain/versions.env; <cache> is $PORTAL_DOMAINS_CACHE
# (default ${XDG_CACHE_HOME:-~/.cache}/portal-domains). A cold run takes about 4-7
# minutes on 2 cores (402 s measured with an empty Go build cache: the controller 340 s,
# Pebble 62 s of which most is the standard library, built first); a warm run
# takes under a second and never calls go or apt-get.
# The cluster these controllers talk to comes from scripts/setup-kubernetes.sh.

# A subshell body, so that `exit` and the shell options stay inside this script
# even when someone sources it.
main() (
  set -euo pipefail

  local root versions cache bin started tc
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  versions="$root/scripts/toolchain/versions.env"
  # shellcheck source=toolchain/versions.env
  source "$versions"
  SETUP_NAME="setup-certificates"
  # shellcheck source=lib/toolchain-steps.sh
  source "$root/scripts/lib/toolchain-steps.sh"
  require_pins "$versions" CERT_MANAGER_VERSION PEBBLE_VERSION
  trap on_exit EXIT
  cache="${PORTAL_DOMAINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-domains}"
  bin="$cache/toolchain/cert-manager-${CERT_MANAGER_VERSION}_pebble-${PEBBLE_VERSION}/bin"
  tc="$root/scripts/toolchain"
  started=$(date +%s)

  # pinned_in <go.mod> <module> <version>: the wrapper must build what versions.env says.
  pinned_in() {
    grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+v$3([[:space:]]|$)" "$1" \
      || fail "$1 does not require $2 v$3 (versions.env); update the wrapper module to match"
  }

  # ------------------------------------------------------------ Go binaries
  step "cert-manager-controller and pebble -> $bin"
  pinned_in "$tc/cert-manager/go.mod" github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION"
  pinned_in "$tc/pebble/go.mod" github.com/letsencrypt/pebble/v2 "$PEBBLE_VERSION"
  mkdir -p "$bin"

  if [ ! -x "$bin/pebble" ]; then
    step "build pebble v$PEBBLE_VERSION (about a minute cold)"
    go_build "$tc/pebble" "$bin/pebble" github.com/letsencrypt/pebble/v2/cmd/pebble \
      "-X main.version=v$PEBBLE_VERSION"
  fi
  CURRENT_STEP="check pebble version"
  expect_version "$bin/pebble" "Pebble version: v$PEBBLE_VERSION" -version

  # The controller is our own main: a change to its source rebuilds it even though the
  # pinned versions (the cache key) stay the same.
  local source_digest
  source_digest="$(cat "$tc/cert-manager/main.go" "$tc/cert-manager/go.mod" "$tc/cert-manager/go.sum" \
    | sha256sum | cut -c1-16)"
  if [ ! -x "$bin/cert-manager-controller" ] \
      || [ "$(cat "$bin/cert-manager-controller.source" 2>/dev/null)" != "$source_digest" ]; then
    step "build cert-manager-controller (cert-manager v$CERT_MANAGER_VERSION; 3-6 min cold)"
    go_build "$tc/cert-manager" "$bin/cert-manager-controller" . \
      "-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v$CERT_MANAGER_VERSION"
    echo "$source_digest" > "$bin/cert-manager-controller.source"
  fi
  CURRENT_STEP="check cert-manager-controller version"
  expect_version "$bin/cert-manager-controller" "v$CERT_MANAGER_VERSION" --version

  # ------------------------------------------------------------ DNS server
  # named lives in /usr/sbin, which is not on every user's PATH.
  local named=""
  named="$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v named || true)"
  if [ -n "$named" ]; then
    step "DNS server present: $named"
  else
    step "install BIND 9 (Debian package bind9) for named"
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      # The package index may be stale or absent on a fresh machine: update once on failure.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q bind9 >/dev/null \
        || { apt-get update -q >/dev/null \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bind9 >/dev/null; } \
        || fail "apt-get install bind9 failed"
      named="$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v named || true)"
      [ -n "$named" ] || fail "apt-get installed bind9 but named is still missing"
    else
      fail "named (BIND 9) is missing and this is not root with apt-get: install the bind9 package"
    fi
  fi
  CURRENT_STEP="check named version"
  expect_version "$named" "BIND 9." -v

  CURRENT_STEP="done"
  step "certificate setup complete in $(( $(date +%s) - started ))s"
)

main "$@"
