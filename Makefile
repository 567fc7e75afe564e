# Two commands matter: `make run` starts the connector, `make test` runs every check CI runs.
# Both create .venv on first use. Variables: PY=python3.12 picks the interpreter for a new .venv;
# ARGS=... is passed to `claw serve` (run), to pytest (test) or to each benchmark (bench).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip install --quiet --disable-pip-version-check
# The first of python3.11 and python3 that is Python 3.11 or newer.
PY ?= $(shell for p in python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
ARGS ?=
# The real OpenClaw gateway the integration tests run (tests/support/openclaw_install.py; keep the versions in step).
OPENCLAW_VERSION := 2026.9.6
OPENCLAW_STAMP := .cache/openclaw/.installed-$(OPENCLAW_VERSION)

.PHONY: help run test lint typecheck pytest bench clean distclean
.NOTPARALLEL:  # `test` runs its steps in order: lint, typecheck, pytest

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: $(VENV)/.installed ## start the connector (claw serve ARGS)
	$(VENV)/bin/claw serve $(ARGS)

test: lint typecheck pytest ## lint, type-check, then the whole test suite

lint: $(VENV)/.installed-dev ## ruff check and ruff format --check
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev ## mypy --strict over src (config in pyproject.toml)
	$(VENV)/bin/mypy

pytest: $(VENV)/.installed-dev $(OPENCLAW_STAMP) ## the test suite alone (pytest -q ARGS)
	$(VENV)/bin/pytest -q $(ARGS)

bench: $(VENV)/.installed-dev ## run every bench/*.py
	@found=0; for script in bench/*.py; do \
		[ -e "$$script" ] || continue; case "$$(basename $$script)" in _*) continue;; esac; found=1; \
		echo "== $$script"; $(VENV_PY) "$$script" $(ARGS) || exit 1; \
	done; [ $$found = 1 ] || echo "no benchmarks in bench/ yet"

clean: ## remove caches and build output (keeps .venv)
	rm -rf build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)

$(VENV_PY):
	@[ -n "$(PY)" ] || { echo "make: Python 3.11 or newer is needed (python3.11 or python3); pass PY=/path/to/python3.x" >&2; exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PY) is older than Python 3.11" >&2; exit 1; }
	$(PY) -m venv $(VENV)

# Stamps: reinstall only when pyproject.toml is newer (the package itself is installed editable).
$(VENV)/.installed: pyproject.toml | $(VENV_PY)
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV_PY)
	$(PIP) -e '.[dev]'
	@touch $@ $(VENV)/.installed

# Node 24 (PyPI wheel) and openclaw from npm into .cache/openclaw, once (about 650 MB); later runs return at once.
$(OPENCLAW_STAMP): $(VENV)/.installed-dev
	$(VENV_PY) -m tests.support.openclaw_install
	@touch $@
