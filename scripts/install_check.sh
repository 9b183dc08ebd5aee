#!/usr/bin/env bash
# `pip install .` into a fresh virtual environment, then run the installed `dynamo-ecs` from
# outside the source tree: proves the package, its data files, its declared dependencies and
# the console script (what a user gets from `pip install .` or `pipx install .`).
set -euo pipefail
unset PYTHONPATH  # the installed package, not the source tree (the Makefile exports PYTHONPATH)
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
here=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python_bin=$(ls "$(pyenv root 2>/dev/null)"/versions/"${PYTHON_VERSION}".*/bin/python"${PYTHON_VERSION}" 2>/dev/null | sed -n 1p)
"${python_bin:-python${PYTHON_VERSION}}" -m venv "$tmp/venv"
start=$(date +%s)
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$here"
echo "install-check: pip install . took $(( $(date +%s) - start )) s"
cd "$tmp"
"$tmp/venv/bin/dynamo-ecs" --version
"$tmp/venv/bin/dynamo-ecs" doctor --help >/dev/null
"$tmp/venv/bin/dynamo-ecs" replay --trace step --hours 1 --policies ours,static --out "$tmp/out" >/dev/null
test -s "$tmp/out/step-seed1.png"
"$tmp/venv/bin/python" - <<'PY'
import importlib.resources, sys
import dynamo_ecs_cli.main  # noqa: F401
import dynamo_ecs
assert "site-packages" in dynamo_ecs.__file__, dynamo_ecs.__file__
assert importlib.resources.files("dynamo_ecs.specs").joinpath("frontend.json").is_file()
assert "aws_lambda_powertools" not in sys.modules, "the CLI must not need the layer's Powertools"
print(f"install-check: dynamo-ecs works from a fresh venv ({dynamo_ecs.__file__})")
PY
