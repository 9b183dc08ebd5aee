# Every routine command of the project. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.12
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
TOOLS := .tools
# Offline AWS settings for the template checks: dummy credentials, a region, no metadata calls.
OFFLINE_AWS := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
	AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0
# The layer's package, the CLI package and the dev tools import from the source tree (as pytest's pythonpath does).
export PYTHONPATH := $(CURDIR)/layers/dynamo_ecs:$(CURDIR)/cli:$(CURDIR)
PYTEST_ARGS ?=
REPLAY_ARGS ?=
DECISIONS_ARGS ?=

.PHONY: help setup test test-unit test-integration test-template test-e2e lint format typecheck \
	bench build validate checkov demo replay decisions install-check lock clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv, install pinned dev dependencies, nats-server, etcd, checkov, the AWS CLI, Dynamo (idempotent)

$(STAMP): requirements-dev.txt requirements-checkov.txt requirements-awscli.txt requirements-dynamo.txt requirements-dynamo-nodeps.txt scripts/setup.sh devtools/local_ecs/tiny_model.py
	PYTHON_VERSION=$(PYTHON_VERSION) VENV=$(VENV) bash scripts/setup.sh
	@touch $(STAMP)

test: setup ## All tiers: unit, integration (moto server, nats-server, etcd), template, e2e
	$(OFFLINE_AWS) $(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-unit: setup ## Pure logic only, no network
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Handlers against moto server, nats-server and etcd
	$(OFFLINE_AWS) $(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-template: setup ## cfn-lint, sam validate --lint, checkov, sam build, template structure, moto CloudFormation
	$(OFFLINE_AWS) $(BIN)/pytest tests/template $(PYTEST_ARGS)

test-e2e: setup ## The demo's scenarios as tests
	$(OFFLINE_AWS) $(BIN)/pytest tests/e2e $(PYTEST_ARGS)

lint: setup ## ruff (format check and lint) and mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy layers/dynamo_ecs cli functions devtools bench tests

format: setup ## Apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup ## Print the benchmark figures (figure: NAME VALUE UNIT)
	$(OFFLINE_AWS) $(PY) -m bench

validate: setup ## cfn-lint, sam validate --lint and checkov, offline
	$(OFFLINE_AWS) $(BIN)/cfn-lint template.yaml
	$(OFFLINE_AWS) $(BIN)/sam validate --lint --template-file template.yaml
	$(MAKE) --no-print-directory checkov

checkov: setup ## Security scan of template.yaml (checkov in .tools/checkov; skips carry their reason inline)
	$(TOOLS)/checkov/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

build: setup ## sam build (python3.12 from .venv on PATH)
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE_AWS) $(BIN)/sam build --template-file template.yaml

demo: setup ## Local end-to-end run of the operator (moto server, nats-server, etcd)
	$(OFFLINE_AWS) $(PY) -m devtools.demo

replay: setup ## Replay load traces through the scaling policy and baselines (table + PNG in out/replay)
	$(PY) -m dynamo_ecs_cli replay $(REPLAY_ARGS)

decisions: setup ## A deployed stack's decision log, newest first (DECISIONS_ARGS="--table NAME ...")
	$(PY) -m dynamo_ecs_cli decisions $(DECISIONS_ARGS)

install-check: ## pip install . into a fresh venv and run the installed dynamo-ecs (needs the package index)
	PYTHON_VERSION=$(PYTHON_VERSION) bash scripts/install_check.sh

lock: ## Re-resolve requirements-dev.in into requirements-dev.txt
	PYTHON_VERSION=$(PYTHON_VERSION) bash scripts/lock.sh

clean: ## Remove build output and caches (keeps .venv)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis out
