# multicloud: `make render STACK=prod` (offline, no credentials) and `make test`.
# `make test` sets itself up on a fresh clone (venv, pip requirements, npm ci) and keeps
# stamps so a second run does not redo it. Needs python3 (3.11+) with venv, git, node/npm,
# and gnupg, iproute2, util-linux for tests/test_node_trust.py (README.md).
STACK ?= prod
# ENGINE=rke2 renders the stack with the other engine than its file says (make render only).
VENV ?= venv
PY := $(VENV)/bin/python
# `make init/preview/up` keep state in a local directory unless PULUMI_BACKEND_URL says
# otherwise (in the environment or on the command line).
DEFAULT_BACKEND := file://$(CURDIR)/.pulumi-state
PULUMI_BACKEND_URL ?= $(DEFAULT_BACKEND)

.PHONY: setup render test lint typecheck unit docs up preview init bench bench-suite

# venv/ is also what `pulumi up` runs the program from (Pulumi.yaml runtime.options): its
# runtime packages come from requirements.lock, every file checked against its sha256 and
# wheels only, as CI's deploy jobs install them; the test tools go on top (pinned by
# version; the program never imports them).
$(VENV)/.installed: requirements.lock requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
		--require-hashes --only-binary :all: -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# No install scripts: puppeteer (for mermaid-cli) would download a browser; the diagram
# test uses Debian's /usr/bin/chromium.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is not installed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

render: $(VENV)/.installed
	$(PY) -m scripts.render --stack $(STACK) $(if $(ENGINE),--engine $(ENGINE))

test: lint typecheck unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest

# Regenerate docs/config-reference.md from Pulumi.yaml and the config models.
docs: $(VENV)/.installed
	$(PY) -m scripts.config_reference

bench: $(VENV)/.installed
	$(PY) bench/identity_bench.py
	$(PY) bench/render_bench.py
	$(PY) bench/render_bench.py --engine rke2
	$(PY) bench/preflight_bench.py

# How long `make test` takes: pytest's wall and CPU time, its slowest tests, ruff, mypy.
bench-suite: setup
	VENV=$(VENV) sh bench/suite_time.sh 10

# Never creates a stack implicitly: `make init` does, on the backend it names.
init preview up: $(VENV)/.installed
	@PULUMI_BACKEND_URL='$(PULUMI_BACKEND_URL)' $(PY) -m scripts.stack $@ --stack '$(STACK)' \
		--default-backend '$(DEFAULT_BACKEND)'
