# Agency CVM platform: developer entry points.
#   make run    first run on the embedded defaults (SQLite + filesystem broker)
#   make test   full test suite against a throwaway PostgreSQL and Redis
SHELL := /bin/bash

PYTHON      ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS  ?=
SCORING_BENCH_ARGS ?=
AUDIENCES_BENCH_ARGS ?=
CAMPAIGNS_BENCH_ARGS ?=
FUZZ_EXAMPLES ?= 100
FUZZ_SECONDS  ?= 900

.DEFAULT_GOAL := help
.PHONY: help venv install run test test-services test-browser fuzz lint format bench bench-ingest bench-scoring bench-audiences bench-campaigns bench-recommendations bench-measurement clean distclean

help:
	@echo "make run        migrate, seed a demo client, start web + Celery worker + beat (SQLite)"
	@echo "make test       run pytest against a throwaway PostgreSQL and Redis (PYTEST_ARGS=...)"
	@echo "make fuzz       fuzz every API operation from its OpenAPI schema (FUZZ_EXAMPLES=100 per operation)"
	@echo "make lint       ruff check, ruff format --check, the layer contract (import-linter)"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make bench      run bench/ingest.py and bench/scoring.py against a throwaway PostgreSQL and Redis"
	@echo "make bench-scoring  only the scoring pipeline bench (SCORING_BENCH_ARGS=--sizes 10000,...)"
	@echo "make bench-audiences  only the audience sync bench (AUDIENCES_BENCH_ARGS=--sizes 10000,...)"
	@echo "make bench-campaigns  trigger chains: enrolment tick and dispatch rates (CAMPAIGNS_BENCH_ARGS=--size 100000 ...)"
	@echo "make bench-recommendations  only the recommendations bench (RECOMMENDATIONS_BENCH_ARGS=--sizes 10000,...)"
	@echo "make bench-measurement  KPIs, attribution, chain results at 1M/10M/20M (MEASUREMENT_BENCH_ARGS=--customers 100000)"
	@echo "make venv       create $(VENV) and install the project with dev extras"
	@echo "make clean      remove caches and build artefacts (distclean: also $(VENV) and var/)"

venv install: $(STAMP)

# Re-installs only when pyproject.toml changes. On Debian, `python3 -m venv` needs the
# python3-venv package; install it when running as root and it is missing.
$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  if ! $(PYTHON) -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      DEBIAN_FRONTEND=noninteractive apt-get update && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv && \
	      $(PYTHON) -m venv $(VENV); \
	    else \
	      echo "cannot create $(VENV): install python3-venv (sudo apt-get install python3-venv)" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	fi
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

run: $(STAMP)
	scripts/run_embedded.sh

# PostgreSQL and Redis servers for the throwaway test services: installed from Debian
# packages only when missing, and only when running as root.
test-services:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    || ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing postgresql and redis-server (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	      postgresql redis-server; \
	  else \
	    echo "PostgreSQL and redis-server are needed: sudo apt-get install postgresql redis-server" >&2; \
	    exit 1; \
	  fi; \
	fi

# Debian's chromium for the cookie-banner browser tests (tests/e2e, driven by Playwright from the
# dev extras; `playwright install` is never needed): installed only when missing and only when
# running as root, as CI does. Otherwise those tests skip and say why.
test-browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
	  else \
	    echo "note: /usr/bin/chromium is missing, tests/e2e will be skipped (sudo apt-get install chromium)" >&2; \
	  fi; \
	fi

test: $(STAMP) test-services test-browser
	scripts/with_test_services.sh $(PY) -m pytest $(PYTEST_ARGS)

# The schema fuzzer of `make test` (tests/test_api_fuzz.py, 15 cases per operation there) with
# more cases per operation; prints operations, cases, statuses and any 5xx.
fuzz: $(STAMP) test-services
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  scripts/with_test_services.sh $(PY) -m pytest tests/test_api_fuzz.py -s -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	python3 scripts/app_imports.py >/dev/null || python3 scripts/app_imports.py --files

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: bench-ingest bench-scoring bench-audiences bench-campaigns bench-recommendations bench-measurement

bench-ingest: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings \
	  scripts/with_test_services.sh $(PY) bench/ingest.py $(BENCH_ARGS)

# Builds var/bench-venv (lifetimes, bench only) on first use; see bench/scoring.py.
bench-scoring: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings \
	  scripts/with_test_services.sh $(PY) bench/scoring.py $(SCORING_BENCH_ARGS)

# Audience sync end to end against the loopback stubs (AUDIENCES_BENCH_ARGS=--sizes 10000,...).
bench-audiences: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings scripts/with_test_services.sh \
	  bash -c '$(PY) manage.py migrate -v0 && $(PY) bench/audiences.py $(AUDIENCES_BENCH_ARGS)'

# Trigger chains: the enrolment tick over 1M customers and dispatch into a local SMTP server and
# the SMS.ru stub (CAMPAIGNS_BENCH_ARGS=--size 100000 --skip-dispatch ...).
bench-campaigns: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings scripts/with_test_services.sh \
	  bash -c '$(PY) manage.py migrate -v0 && $(PY) bench/campaigns.py $(CAMPAIGNS_BENCH_ARGS)'
# Hit rate@5 against best sellers and compute time (no database), then the scoring run's
# recommendation step on PostgreSQL (--db) (RECOMMENDATIONS_BENCH_ARGS=--sizes 10000,...).
bench-recommendations: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings scripts/with_test_services.sh \
	  bash -c '$(PY) manage.py migrate -v0 && $(PY) bench/recommendations.py --db $(RECOMMENDATIONS_BENCH_ARGS)'

# KPIs, attribution and chain results over 1M customers / 10M orders / 20M events, next to the
# same KPIs with pandas (MEASUREMENT_BENCH_ARGS=--customers 100000 for a quick run).
bench-measurement: $(STAMP) test-services
	DJANGO_SETTINGS_MODULE=config.settings \
	  scripts/with_test_services.sh $(PY) bench/measurement.py $(MEASUREMENT_BENCH_ARGS)

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -type f -name '*.py[co]' -exec rm -f {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis *.egg-info build dist

distclean: clean
	rm -rf $(VENV) var
