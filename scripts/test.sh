#!/usr/bin/env bash
# The README's test command: install the project with its test extra into a virtual
# environment (default ./.venv, or $VENV) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test]'
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treated as a failure" >&2
  exit 1
fi
exit "$rc"
