# Shared by scripts/setup-kubernetes.sh and scripts/setup-certificates.sh (sourced
# inside their main, after SETUP_NAME is set): progress lines, a failure that
# names its step, cleanup of half-written outputs, and the Go build and version
# checks every toolchain binary goes through.
# shellcheck shell=bash

CURRENT_STEP="start"
REPORTED=""
CLEANUP=()

step() { CURRENT_STEP="$1"; printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

fail() {
  REPORTED=1
  printf '\n%s FAILED in step "%s": %s\n' "$SETUP_NAME" "$CURRENT_STEP" "$*" >&2
  exit 1
}

on_exit() {
  local rc=$?
  # Half-written outputs go, so the next run starts that part over.
  if [ ${#CLEANUP[@]} -gt 0 ]; then rm -rf "${CLEANUP[@]}"; fi
  if [ $rc -ne 0 ] && [ -z "$REPORTED" ]; then
    printf '\n%s FAILED in step "%s" (exit %s); the output above says why\n' \
      "$SETUP_NAME" "$CURRENT_STEP" "$rc" >&2
  fi
}

# require_pins <versions.env> VAR...: each pin must be set.
require_pins() {
  local file="$1" var
  shift
  for var in "$@"; do
    if [ -z "${!var:-}" ]; then
      printf '%s FAILED: %s is not set in %s\n' "$SETUP_NAME" "$var" "$file" >&2
      exit 1
    fi
  done
}

# go_build <wrapper module dir> <output binary> <package> <extra ldflags>
# Builds to a private temporary name and renames it, so an interrupted build
# never leaves a truncated binary that a later run would take as done.
go_build() {
  local dir="$1" out="$2" pkg="$3" ldflags="$4" tmp="$2.tmp.$$" t0
  command -v go >/dev/null || fail "Go is required to build $(basename "$out")"
  CLEANUP+=("$tmp")
  rm -f "$tmp"
  t0=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath \
    -ldflags "-s -w $ldflags" -o "$tmp" "$pkg") || fail "go build $pkg failed (output above)"
  mv -f "$tmp" "$out"
  echo "built $(basename "$out") in $(( $(date +%s) - t0 ))s"
}

# expect_version <binary> <text its output must contain> <version args...>
expect_version() {
  local binary="$1" want="$2" got
  shift 2
  got="$("$binary" "$@" 2>&1)" || fail "$binary $* failed: $got"
  case "$got" in
    *"$want"*) echo "$(basename "$binary"): $(printf '%s' "$got" | head -n 1)" ;;
    *) fail "$binary reports '$(printf '%s' "$got" | head -n 1)', expected $want (delete it to rebuild)" ;;
  esac
}
