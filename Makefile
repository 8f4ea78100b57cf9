# multicloud: `make render STACK=prod` (offline, no credentials) and `make test`.
# `make test` sets itself up on a fresh clone (venv, pip requirements, npm ci) and keeps
# stamps so a second run does not redo it. Needs python3 (3.11+) with venv, git, node/npm,
# gnupg, iproute2, util-linux (tests/components/boot/test_node_trust.py,
# tests/components/boot/test_apt_lock.py), curl (tests/scripts/test_checksums.py) and
# Go 1.26+ for the tools in tools/ (README.md).
STACK ?= prod
# ENGINE=rke2 renders the stack with the other engine than its file says (make render only).
VENV ?= venv
PY := $(VENV)/bin/python
# `make init/preview/up` keep state in a local directory unless PULUMI_BACKEND_URL says
# otherwise (in the environment or on the command line). `metadata=skip`: no fileblob
# sidecar, whose in-place rewrite the program's own StackReference read can catch
# half-written ("failed to load checkpoint: EOF", tests/engine/test_file_backend.py).
DEFAULT_BACKEND := file://$(CURDIR)/.pulumi-state?metadata=skip
PULUMI_BACKEND_URL ?= $(DEFAULT_BACKEND)

.PHONY: setup render test lint typecheck unit engine docs up preview init bench bench-suite \
	pin-checksums pin-images netpol-analyzer stack-config tools versions roll

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

# np-guard's netpol-analyzer, a NetworkPolicy evaluator nobody here wrote
# (tests/components/services/test_netpol_connectivity.py), built from the Go module proxy
# at the version tools/netpol-analyzer/go.mod pins (its go.sum checks every module's hash) into the
# git-ignored .tools/, one binary per version: a second run builds nothing. Needs Go 1.26+.
NETPOL_ANALYZER_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/np-guard/netpol-analyzer \(v[^ ]*\).*|\1|p' tools/netpol-analyzer/go.mod)
NETPOL_ANALYZER := .tools/bin/netpolicy-$(NETPOL_ANALYZER_VERSION)
GO ?= $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))

$(NETPOL_ANALYZER): tools/netpol-analyzer/go.mod tools/netpol-analyzer/go.sum
	@test -n '$(GO)' || { echo "go is not installed: the tests need it to build np-guard's netpol-analyzer (Go 1.26 or later, or go.dev's tarball in /usr/local/go)" >&2; exit 1; }
	cd tools/netpol-analyzer && '$(GO)' build -mod=readonly -trimpath \
		-o '$(CURDIR)/$@' github.com/np-guard/netpol-analyzer/cmd/netpolicy

netpol-analyzer: $(NETPOL_ANALYZER)

# The Pulumi CLI's own stack-file loader (tools/stack-config), for tests/scripts/test_stack_yaml.py:
# `make render` must read a stack file as `pulumi` does. Same caching as above.
PULUMI_SDK_VERSION := $(shell sed -n 's|^require github.com/pulumi/pulumi/sdk/v3 \(v[^ ]*\).*|\1|p' tools/stack-config/go.mod)
STACK_CONFIG := .tools/bin/stack-config-$(PULUMI_SDK_VERSION)

$(STACK_CONFIG): tools/stack-config/go.mod tools/stack-config/go.sum tools/stack-config/main.go
	@test -n '$(GO)' || { echo "go is not installed: the tests need it to build tools/stack-config (Go 1.26 or later)" >&2; exit 1; }
	cd tools/stack-config && '$(GO)' build -mod=readonly -trimpath -o '$(CURDIR)/$@' .

stack-config: $(STACK_CONFIG)

# The real Pulumi engine for tests/engine/ (docs/testing.md, "The real engine"), built from
# Go modules into .tools/pulumi-<CLI version>/bin/, never downloaded as a binary:
#  - pulumi: the CLI, github.com/pulumi/pulumi/pkg/v3 ./cmd/pulumi at the version
#    tools/pulumi/go.mod requires, with the upstream release flags (pulumi/pulumi
#    .goreleaser.yml, build "pulumi": -trimpath, tags osusergo grpcnotrace, -ldflags
#    "-w -s -X …/version.Version=v<version>"; scripts/go-wrapper.sh builds with CGO_ENABLED=0);
#  - pulumi-language-python: the project's stand-in language host (tools/pulumi-language-python,
#    the real one's module is not served), built on the SDK version requirements.lock pins;
#  - pulumi-language-python-exec, pulumi-resource-pulumi-python: the Python SDK's own scripts,
#    from that same sdk/v3 module's files (read-only in the module cache, hence install -m).
# Each file is a target named by version: a second run builds nothing. The first build
# took ~9 min on 2 shared cores (docs/testing.md).
PULUMI_CLI_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/pulumi/pulumi/pkg/v3 \(v[^ ]*\).*|\1|p' tools/pulumi/go.mod)
PULUMI_HOST_SDK_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/pulumi/pulumi/sdk/v3 \(v[^ ]*\).*|\1|p' tools/pulumi-language-python/go.mod)
ENGINE_BIN := .tools/pulumi-$(PULUMI_CLI_VERSION)/bin
ENGINE_TOOLS := $(ENGINE_BIN)/pulumi $(ENGINE_BIN)/pulumi-language-python \
	$(ENGINE_BIN)/pulumi-language-python-exec $(ENGINE_BIN)/pulumi-resource-pulumi-python
pulumi_build = cd $(1) && CGO_ENABLED=0 '$(GO)' build -mod=readonly -trimpath \
	-tags osusergo,grpcnotrace \
	-ldflags '-w -s -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$(2)' \
	-o '$(CURDIR)/$@.tmp' $(3) && mv '$(CURDIR)/$@.tmp' '$(CURDIR)/$@'
need_go = @test -n '$(GO)' || { echo "go is not installed: the engine tests need it to build the Pulumi CLI (Go 1.26 or later)" >&2; exit 1; }

$(ENGINE_BIN)/pulumi: tools/pulumi/go.mod tools/pulumi/go.sum
	$(need_go)
	@mkdir -p $(@D)
	$(call pulumi_build,tools/pulumi,$(PULUMI_CLI_VERSION),github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

$(ENGINE_BIN)/pulumi-language-python: tools/pulumi-language-python/go.mod \
		tools/pulumi-language-python/go.sum tools/pulumi-language-python/main.go
	$(need_go)
	@mkdir -p $(@D)
	$(call pulumi_build,tools/pulumi-language-python,$(PULUMI_HOST_SDK_VERSION),.)

# The SDK's scripts, from the module directory of sdk/v3 at the version the host requires.
$(ENGINE_BIN)/pulumi-language-python-exec: SDK_FILE := python/cmd/pulumi-language-python-exec
$(ENGINE_BIN)/pulumi-resource-pulumi-python: SDK_FILE := python/dist/pulumi-resource-pulumi-python
$(ENGINE_BIN)/pulumi-language-python-exec $(ENGINE_BIN)/pulumi-resource-pulumi-python: \
		tools/pulumi-language-python/go.mod tools/pulumi-language-python/go.sum
	$(need_go)
	@mkdir -p $(@D)
	cd tools/pulumi-language-python && '$(GO)' mod download github.com/pulumi/pulumi/sdk/v3
	dir=$$(cd tools/pulumi-language-python && '$(GO)' list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3) \
		&& install -m 0755 "$$dir/$(SDK_FILE)" $@

tools: netpol-analyzer stack-config $(ENGINE_TOOLS)

setup: $(VENV)/.installed node_modules/.installed

render: $(VENV)/.installed
	$(PY) -m scripts.render --stack $(STACK) $(if $(ENGINE),--engine $(ENGINE))

test: lint typecheck unit engine

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The unit suite: tests/ but tests/engine/, on PYTEST_JOBS processes (pytest-xdist;
# worksteal: each process takes a contiguous share of the tests, so a file's tests and its
# module fixtures mostly stay in one, and an idle one takes tests over from the other).
# Of the Go tools it needs only the two its tests run
# (tests/components/services/test_netpol_connectivity.py, tests/scripts/test_stack_yaml.py).
# PYTHONDONTWRITEBYTECODE (set in some shells) is cleared for the run: without bytecode
# caches each pytest process and every Python child the tests start compile the project
# again, and pytest rewrites every test module's asserts again, each run (5-8 s of CPU;
# the caches go to the git-ignored __pycache__ folders).
PYTEST_JOBS ?= 2
unit: setup netpol-analyzer stack-config
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -p xdist -n $(PYTEST_JOBS) --dist worksteal \
		--ignore=tests/engine

# The real engine's scenarios (tests/engine/, docs/testing.md): the whole of `make tools`.
engine: setup tools
	$(VENV)/bin/pytest tests/engine

# Regenerate docs/config-reference.md from Pulumi.yaml and the config models.
docs: $(VENV)/.installed
	$(PY) -m scripts.config_reference

# Record the rke and RKE2 release checksums (reference/rke-binary.json,
# reference/rke2-release.json) from each release's published sha256 file, over https.
# Needs internet; review `git diff reference/` and commit it (docs/first-deploy.md).
pin-checksums: $(VENV)/.installed
	$(PY) -m scripts.pin_checksums

# The registry digest of each image the program deploys (reference/images.json); standard
# library only. Review and commit the file: the Deployments then pull by digest.
pin-images:
	python3 -m scripts.pin_images

# What the cluster runs against its upstream support windows (reference/versions.json), a
# status per row as of the table's as_of date; ARGS=--today for today's (docs/operations.md,
# "Keeping versions supported"). Standard library only: no setup needed.
versions:
	python3 -m scripts.versions $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/identity_bench.py
	$(PY) bench/render_bench.py
	$(PY) bench/render_bench.py --engine rke2
	$(PY) bench/preflight_bench.py

# How long `make test` takes: the unit suite's wall and CPU time (as `make unit` runs it),
# its slowest tests, ruff, mypy.
bench-suite: setup netpol-analyzer stack-config
	VENV=$(VENV) PYTEST_JOBS=$(PYTEST_JOBS) sh bench/suite_time.sh 10

# Replace the nodes behind the code, one `pulumi up` each (docs/operations.md, "Rolling
# nodes onto new images"); ARGS='--dry-run', '--only <node>', '--site <site>'.
roll: $(VENV)/.installed
	@PULUMI_BACKEND_URL='$(PULUMI_BACKEND_URL)' $(PY) -m roll --stack '$(STACK)' $(ARGS)

# Never creates a stack implicitly: `make init` does, on the backend it names.
init preview up: $(VENV)/.installed
	@PULUMI_BACKEND_URL='$(PULUMI_BACKEND_URL)' $(PY) -m scripts.stack $@ --stack '$(STACK)' \
		--default-backend '$(DEFAULT_BACKEND)'
