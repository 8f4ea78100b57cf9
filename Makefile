# multicloud: `make render STACK=prod` (offline, no credentials) and `make test`.
STACK ?= prod
VENV ?= venv
PY := $(VENV)/bin/python
# `make up` keeps state in a local directory unless PULUMI_BACKEND_URL says otherwise.
PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state

.PHONY: render test lint typecheck unit up preview bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

render: $(VENV)/.installed
	$(PY) -m scripts.render --stack $(STACK)

test: lint typecheck unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) bench/identity_bench.py
	$(PY) bench/render_bench.py
	$(PY) bench/preflight_bench.py

preview up: $(VENV)/.installed
	@command -v pulumi >/dev/null || { echo "the Pulumi CLI is not installed: https://www.pulumi.com/docs/install/" >&2; exit 1; }
	PULUMI_BACKEND_URL=$(PULUMI_BACKEND_URL) pulumi stack select --create $(STACK)
	PULUMI_BACKEND_URL=$(PULUMI_BACKEND_URL) pulumi $@ --stack $(STACK)
