# ClaimDesk: `make run` starts everything, `make test` proves it.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(VENV)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint typecheck unit bench install browser docs clean help

help:
	@echo "make run    - install what is missing, start Postgres, the broker and all four services"
	@echo "make test   - install, lint, type-check and run the whole suite against real infrastructure"
	@echo "make bench  - benchmarks (ratios against baselines measured in the same run)"

$(UV):
	@echo "==> installing uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	@echo "==> syncing .venv from uv.lock"
	@$(UV) sync --frozen --all-packages --python $(PYTHON) --quiet
	@touch $@

install: $(VENV)/.synced

# Debian's Chromium for the browser tests (Playwright cannot download its own here), and a
# small CJK font so pages and screenshots show Chinese text rather than empty boxes.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
	  echo "==> installing Debian chromium and fonts-wqy-microhei for browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	fi

run: install
	@$(VENV)/bin/claimdesk run

lint: install
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check --quiet . || { echo "ruff format: run '$(VENV)/bin/ruff format .'"; exit 1; }

typecheck: install
	@echo "==> mypy (strict for shared/)"
	@$(VENV)/bin/mypy

docs: install
	@$(VENV)/bin/claimdesk events-doc > docs/events.md

test: install browser lint typecheck
	@echo "==> pytest"
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: install
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

bench: install
	@$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
