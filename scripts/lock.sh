#!/usr/bin/env bash
# Resolve requirements-dev.in in a throw-away venv and write the exact versions it got.
set -euo pipefail
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python_bin=$(ls "$(pyenv root 2>/dev/null)"/versions/"${PYTHON_VERSION}".*/bin/python"${PYTHON_VERSION}" 2>/dev/null | sed -n 1p)
"${python_bin:-python${PYTHON_VERSION}}" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet -r requirements-dev.in
{ echo "# Locked development environment (Python ${PYTHON_VERSION}). Regenerate with \`make lock\`."
  "$tmp/venv/bin/pip" freeze | grep -vE '^(-e|#)'; } > requirements-dev.txt
echo "wrote requirements-dev.txt"
