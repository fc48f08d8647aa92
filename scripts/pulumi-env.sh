# Source this to run the pinned `pulumi` by hand from the repo root, offline,
# against the same file backend the automation API uses:
#   source scripts/pulumi-env.sh
#   pulumi preview -s staging --policy-pack policies --policy-pack-config policies/config/staging.json
# The values come from stack/toolchain.py, so hand runs and automation agree.
_pd_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$("$_pd_root/.venv/bin/python" -m stack.toolchain --shell)"
unset _pd_root
