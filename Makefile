# Everything runs on Python 3.13, the Lambda runtime's version.
#   make demo    a full rotation against a throwaway PostgreSQL and a local Secrets Manager
#   make test    lint, types, `sam validate --lint`, checkov, then the whole test suite
#   make bench   calls, connections, import time, wall time and memory of a rotation; a fleet of
#                FLEET secrets (default 100) rotated at once under Secrets Manager's quotas; and
#                the fleet audit over 10,000 secrets (make bench-audit)
#   make sandbox throwaway PostgreSQL, MariaDB and a local Secrets Manager with ready secrets, until Ctrl-C
SHELL := /bin/bash
# Python 3.13 (scripts/python313.sh). Without it, every target but clean stops here with the
# script's one message (not a second, confusing failure from venv or sam build later).
PYTHON313 := $(shell scripts/python313.sh 2>/dev/null)
ifeq ($(PYTHON313),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),all)),)
$(error $(shell scripts/python313.sh 2>&1 >/dev/null))
endif
endif
PY_BIN := $(dir $(PYTHON313))
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
CHECKOV := $(CHECKOV_VENV)/bin/checkov
FUNCTIONS := $(wildcard functions/*/app.py)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# pip: quiet, and no warnings about this machine's optional local package folders
PIP_QUIET := -q --disable-pip-version-check

.PHONY: all venv sam-venv checkov-venv system-deps lint typecheck validate checkov unit test demo sandbox bench bench-audit audit-sample build clean

all: test

$(VENV)/.installed: requirements-dev.txt layers/rotation_core/requirements.txt $(wildcard functions/*/requirements.txt)
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import psycopg2, moto, aws_lambda_powertools, pytest, mypy, ruff"
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements-sam.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(SAM) --version
	touch $@

# checkov pins dozens of packages of its own: it lives in its own virtual environment too.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements-checkov.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(CHECKOV) --version
	touch $@

venv: $(VENV)/.installed
sam-venv: $(SAM_VENV)/.installed
checkov-venv: $(CHECKOV_VENV)/.installed

system-deps:
	scripts/system-deps.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy layers/rotation_core/rotation_core
	@for f in $(FUNCTIONS); do echo "mypy $$f"; $(VENV)/bin/mypy $$f || exit 1; done
	$(VENV)/bin/mypy rotation_cli

validate: sam-venv
	$(SAM) validate --lint --region $(AWS_DEFAULT_REGION)
	$(SAM) validate --lint --region $(AWS_DEFAULT_REGION) --template attach.yaml

# Every check must pass, except those suppressed in template.yaml with the reason
# (Metadata: checkov: skip). --skip-download: no call to Prisma Cloud for guidelines.
checkov: checkov-venv
	$(CHECKOV) --file template.yaml --file attach.yaml --framework cloudformation --skip-download --compact --quiet

test: system-deps venv sam-venv lint typecheck validate checkov
	PATH="$(PY_BIN):$$PATH" $(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

demo: system-deps venv
	$(PY) scripts/demo.py

# Prints the environment to export and the `bin/rotate` commands to try (devtools/sandbox.py).
sandbox: system-deps venv
	@$(PY) -m devtools.sandbox

# Then the fleet (bench/fleet.py): FLEET secrets rotated at once under Secrets Manager's
# quotas, e.g. `make bench FLEET=1000`, or several sizes: `make bench FLEET=100,1000,5000`.
FLEET ?= 100
bench: system-deps venv bench-audit
	$(PY) bench/bench.py
	$(PY) bench/fleet.py --secrets $(FLEET)

# The fleet audit over 10,000 secrets in moto: calls by operation, wall time (unpaced, and at
# the default rates, about 4 minutes), memory; exits 1 over budget (bench/audit.py).
bench-audit: venv
	$(PY) bench/audit.py

# Rewrites the sample report in docs/audit.md from a real audit of a sample fleet in moto
# (tests/audit/test_audit_docs.py fails when the document is stale).
audit-sample: venv
	$(PY) -m devtools.audit_fleet --write docs/audit.md

# sam build; then Amazon RDS's CA bundle into the built layer, so that TLS to RDS and Aurora
# verifies without DbCaBundle (scripts/fetch_rds_ca.py: verified HTTPS from AWS's trust store
# host; a failed fetch fails the build; docs/tls.md); then the check of every built package
# against the hash locks (requirements.lock; scripts/deploy_lock.py says why it is checked
# after the build). Offline: `make build FETCH_RDS_CA=0` builds without the bundle, and says so.
# ARCH: the functions' Architecture (x86_64 or arm64: build for the one you deploy), e.g.
# `make build ARCH=arm64`; sam build runs with python3.13 on PATH, as it needs without a container.
FETCH_RDS_CA ?= 1
ARCH ?= x86_64
ARCHES := x86_64 arm64
build: sam-venv venv
	$(if $(filter-out 1,$(words $(filter $(ARCH),$(ARCHES)))),$(error ARCH must be x86_64 or arm64, not '$(ARCH)'))
	PATH="$(PY_BIN):$$PATH" $(SAM) build --parameter-overrides Architecture=$(ARCH)
	$(PY) scripts/fetch_rds_ca.py $(if $(filter 0,$(FETCH_RDS_CA)),--without) .aws-sam/build
	$(PY) scripts/deploy_lock.py verify .aws-sam/build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
