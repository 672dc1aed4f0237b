#!/usr/bin/env bash
# The installs users get, not the dev one (`make test-install` runs all three):
#   .ci/check_install.sh build     build the sdist and the wheel into build/dist, check their
#                                  metadata (twine check --strict)
#   .ci/check_install.sh minimal   that wheel with its required dependencies only (no extras,
#                                  no pytest-xdist), in a clean venv
#   .ci/check_install.sh lowest    the same at the lowest versions pyproject.toml allows
#                                  (constraints-lowest.txt)
# minimal and lowest each run one notebook with `nbtest execute` and with pytest, then a
# focused subset of the suite (tests that need an extra skip with a reason). The suite runs
# from the checkout's tests/ against the installed package: `python -P` keeps the checkout's
# nbtest/ off sys.path.
set -euo pipefail
kind="${1:?usage: .ci/check_install.sh build|minimal|lowest}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dev_python="${DEV_PYTHON:-$repo/.venv/bin/python}"
dist="$repo/build/dist"
venv="$repo/.venv-$kind"
subset=(tests/test_plugin_hooks.py tests/test_plugin_items.py tests/test_registry_session.py
        tests/test_affected.py tests/test_execute.py tests/test_cli_execute.py
        tests/test_fixture.py tests/test_fixture_testbook.py)

case "$kind" in
  build)
    rm -rf "$dist"
    "$dev_python" -m build --sdist --wheel --outdir "$dist" . >/dev/null
    "$dev_python" -m twine check --strict "$dist"/*
    exit 0 ;;
  minimal) constraints=() ;;
  lowest) constraints=(-c "$repo/constraints-lowest.txt") ;;
  *) echo "check_install.sh: unknown kind '$kind' (build, minimal or lowest)" >&2; exit 2 ;;
esac
ls "$dist"/*.whl >/dev/null 2>&1 || { echo "check_install.sh: no wheel in $dist: run" \
  "'.ci/check_install.sh build' first" >&2; exit 2; }

echo "== $kind: install the wheel in a clean venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install -q "${constraints[@]}" "$dist"/*.whl 2>&1 \
  | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip show -q pytest-nbtest >/dev/null
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
TMPDIR="$tmp" "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
if "$venv/bin/python" -c "import xdist" 2>/dev/null; then
  echo "check_install.sh: pytest-xdist is in the $kind install; it must not be" >&2; exit 1
fi
"$venv/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(pytest|nbclient|jupyter_client|jupyter-client|nbformat|ipykernel)=='

echo "== $kind: one notebook through the installed nbtest"
"$venv/bin/python" - "$tmp/one.ipynb" <<'EOF'
import sys

import nbformat

cells = [nbformat.v4.new_code_cell("from nbtest import this_tests\nthis_tests('na')\nx = 6 * 7"),
         nbformat.v4.new_code_cell("assert x == 42")]
nbformat.write(nbformat.v4.new_notebook(cells=cells), sys.argv[1])
EOF
(cd "$tmp" && "$venv/bin/nbtest" execute one.ipynb --no-progress)
(cd "$tmp" && "$venv/bin/python" -m pytest -p no:cacheprovider --nbtest -q one.ipynb)

echo "== $kind: the focused subset of the suite against the installed package"
"$venv/bin/python" -P - <<'EOF'
import pathlib
import nbtest
where = pathlib.Path(nbtest.__file__).resolve()
assert "site-packages" in where.parts, f"nbtest imported from {where}, not from the install"
print(f"nbtest imported from {where.parent}")
EOF
rc=0
"$venv/bin/python" -P -m pytest -p no:cacheprovider -q -rs --durations=10 "${subset[@]}" || rc=$?
exit "$rc"
