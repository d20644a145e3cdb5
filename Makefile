# The one place for developer commands. `make up` and `make test` install what they need
# (Debian servers and a virtual environment) idempotently, then run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SRC := loglog inference httpkit agent hardware dashboards alerts stack report fleet setup.py

.PHONY: up test test-fast lint fmt bench deps debs generate clean

# pytest-xdist workers for `make test`. The slow tier mostly waits on servers and
# subprocesses, so more workers than this machine's 2 cores still pay.
TEST_WORKERS ?= 4

up: deps  ## run the embedded stack (Prometheus, Alertmanager, inference, agent) with a demo workload
	$(VENV)/bin/loglog up $(ARGS)

test: deps lint  ## linters, then the whole suite in parallel, slow end-to-end tests included (what CI runs)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: $(STAMP)  ## ruff, then the unit tier (no servers, no subprocesses): run it while you work
	$(VENV)/bin/ruff check $(SRC) tests bench
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

deps: debs $(STAMP)

# chromium and poppler-utils: the report tests open the HTML in a browser and read the PDF.
# gcc and python3-dev: the logger's C hot path (loglog/_speedups.c) compiles at install.
debs:  ## Debian's prometheus, promtool, alertmanager, amtool, pushgateway, chromium, poppler-utils, rabbitmq-server, redis, gcc, python3-dev (when missing)
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v prometheus-pushgateway >/dev/null 2>&1 || missing="$$missing prometheus-pushgateway"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pdfinfo >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# setup.py and the C source: an edited loglog/_speedups.c is rebuilt by the next make.
# Everything: `all` (every extra but the host-dependent engines), `dev` (linters, pytest)
# and `torch` (the pinned CPU build: the PyTorch engine's tests). `pip install .` alone
# is the logger with no third-party package (pyproject.toml).
$(STAMP): pyproject.toml setup.py loglog/_speedups.c
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[all,dev,torch]'
	touch $(STAMP)

lint: $(STAMP)  ## ruff (lint + format check) and mypy on the packages
	$(VENV)/bin/ruff check $(SRC) tests bench
	$(VENV)/bin/ruff format --check $(SRC) tests bench
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format $(SRC) tests bench
	$(VENV)/bin/ruff check --fix $(SRC) tests bench

generate: $(STAMP)  ## regenerate committed alert rules and dashboards from their Python sources
	$(PY) -m alerts.generate
	$(PY) -m dashboards.generate
	$(PY) -m stack.compose

bench: $(STAMP)  ## benchmarks (not tests): print tables, write JSON under bench/results/
	$(PY) -m bench.logging_bench
	$(PY) -m bench.pipeline_bench
	$(PY) -m bench.agent_bench
	$(PY) -m bench.fleet_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
