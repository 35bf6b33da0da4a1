# The two commands: `make run` (the service on embedded defaults) and
# `make test` (the whole suite). Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JS := clients/js

.PHONY: run test lint bench install influxdb chromium docs clean

$(VENV)/.installed: requirements.lock requirements-dev.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==25.3
	$(PY) -m pip install --quiet -r requirements-dev.lock
	touch $@

$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required for the JavaScript client tests (apt-get install nodejs npm)"; exit 1; }
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(JS)/node_modules/.installed

influxdb:
	scripts/influxdb.sh start

# The browser that tests/e2e/test_js_client.py drives (Playwright, with this
# executable: no browser download): Debian's chromium, installed when missing,
# apt-get update first, as scripts/influxdb.sh installs influxdb.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  [ "$$(id -u)" = 0 ] || { echo "chromium is missing; run as root or: sudo apt-get install chromium" >&2; exit 1; }; \
	  echo "==> installing Debian's chromium (apt-get update first)"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

run: $(VENV)/.installed
	scripts/run.sh

test: install influxdb chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m service.entrypoints.telemetry_doc --check
	$(PY) -m service.entrypoints.api_doc --check
	$(PY) -m service.entrypoints.config_doc --check
	$(PY) -m pytest tests/unit tests/integration tests/e2e tests/chaos

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Benchmarks are not part of `make test`: they take minutes and want a quiet machine.
$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.lock
	$(PY) -m pip install --quiet -r requirements-bench.lock
	touch $@

bench: install influxdb $(VENV)/.bench-installed
	$(PY) -m bench all

docs: $(VENV)/.installed
	$(PY) -m service.entrypoints.telemetry_doc
	$(PY) -m service.entrypoints.api_doc
	$(PY) -m service.entrypoints.config_doc

clean:
	rm -rf $(VENV) $(JS)/node_modules .pytest_cache .ruff_cache .mypy_cache
