#!/usr/bin/env bash
# The test command (README): set up if needed, then lint, type-check and run
# every test against real services (PostgreSQL, the Temporal dev server and the
# Pulumi engine are started by the tests themselves; see tests/support/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"

echo "==> ruff check"; ruff check .
echo "==> ruff format --check"; ruff format --check .
echo "==> mypy --strict"; mypy
echo "==> import contracts (lint-imports)"; lint-imports
echo "==> policy check (fixture tenants) for staging and prod"
for env in staging prod; do portal-domains policy check --env "$env"; done
echo "==> pytest"
# pytest exits 5 when it collects nothing; that is a failure here, not a pass.
set +e
pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
