# Two commands for a new user: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup lock test lint format demo bench infra-check infra-lint clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the `acsd365` command
	@touch $@

# The locks: exact versions with hashes, for Python 3.11 on Linux (Azure's Flex Consumption runtime),
# compiled from the ranges in requirements.in / requirements-dev.in. Existing pins are kept; to move
# every pin to the newest version the ranges allow: `make lock LOCK_ARGS=--upgrade`.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

lock: $(VENV)/.installed
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "lock with Python 3.11, as on Azure")'
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The Bicep checks are part of the suite: parse + checkov here, the settings ↔ Bicep test in pytest.
test: setup infra-lint
	$(PY) -m pytest

demo: setup
	$(PY) -m emulators.demo

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache

# Bicep checks, offline: every file parses (pycep), checkov's Bicep policies pass (skips are justified
# inline), and the app settings match the settings model. checkov and pycep live in their own
# environment inside .venv (checkov pins packaging<24, which pytest 9 refuses).
INFRA_VENV := $(VENV)/infra-check

$(INFRA_VENV)/.installed: infra/requirements-check.txt | $(VENV)/.installed
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-check.txt
	@touch $@

infra-lint: $(VENV)/.installed $(INFRA_VENV)/.installed
	$(INFRA_VENV)/bin/python infra/parse_bicep.py
	$(INFRA_VENV)/bin/checkov --directory infra --framework bicep --skip-download --compact --quiet

infra-check: infra-lint
	$(PY) -m pytest -q tests/infra
