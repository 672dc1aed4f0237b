#!/usr/bin/env bash
# Run the documentation notebooks of docs_src/ whose names match the arguments:
#   ./run_tests.sh                 all of docs_src
#   ./run_tests.sh 'callback*'     globs, from the repository root
#   ../run_tests.sh callback*      file names the shell expanded, from inside docs_src
#   ./run_tests.sh callback* -- -x pytest options after --
# Uses the active virtualenv or an nbtest on PATH; only when neither exists does it set up
# .venv the way `make test` does.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/nbtest" ]; then
  nbtest="$VIRTUAL_ENV/bin/nbtest"
elif command -v nbtest >/dev/null 2>&1; then
  nbtest="$(command -v nbtest)"
else
  make -s -C "$repo" dev
  nbtest="${VIRTUAL_ENV:-$repo/.venv}/bin/nbtest"
fi
exec "$nbtest" run --root "$repo/docs_src" "$@"
