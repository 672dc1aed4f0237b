# Developer entry points. `make test` works from a fresh clone: it creates .venv when no
# virtualenv is active, installs the project with its dev extras, and runs the whole suite.
SHELL := /bin/bash
VENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.nbtest-dev-installed
PYTEST_ARGS ?= -n 2
LOGDIR ?= .ci-logs

.PHONY: dev test test-install test-install-minimal test-install-lowest test-gpu test-fast coverage bench \
	lint lint-types clean

$(PYTHON):
	python3 -m venv $(VENV)

# Reinstall only when the dependency declarations change.
$(STAMP): pyproject.toml constraints-dev.txt | $(PYTHON)
	$(PYTHON) -m pip install -q --upgrade pip
	@# A venv made before the rename to pytest-nbtest holds the old dist: two would load the plugin twice.
	$(PYTHON) -m pip uninstall -q -y nbtest 2>/dev/null || true
	$(PYTHON) -m pip install -q -c constraints-dev.txt -e '.[dev]'
	@# ipykernel stages the spec in a temporary folder and leaves that folder behind: ours goes.
	tmp=$$(mktemp -d) && TMPDIR=$$tmp $(PYTHON) -m ipykernel install --sys-prefix --name python3 \
	  --display-name "Python 3 (nbtest)" >/dev/null; rc=$$?; rm -rf "$$tmp"; exit $$rc
	touch $@

dev: $(STAMP)

# pytest's exit 5 (nothing collected) is reported loudly but does not fail the build. The type
# check comes first: CI runs `make test` and nothing else.
test: $(STAMP) lint-types
	@rc=0; $(PYTHON) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): nothing was tested" >&2; exit 0; fi; \
	exit $$rc

# The tests that start no process (no kernel, no `nbtest` or pytest subprocess), in under a
# minute on two cores; the others are marked `spawns` (tests/conftest.py), and a test not so
# marked fails if it starts a process, in every run. One process: xdist's workers would each
# collect the whole suite again, which costs more than these tests take.
FAST_ARGS ?=
test-fast: $(STAMP)
	$(PYTHON) -m pytest $(FAST_ARGS) -m "not spawns" tests

# The installs users get (.ci/check_install.sh): the sdist and wheel built and checked, then the
# wheel in clean venvs with its required dependencies only (no extras, no xdist) and at the
# lowest versions pyproject.toml allows, each running one notebook and a focused subset of the
# suite. The two installs run side by side (mostly one core each).
test-install: $(STAMP)
	DEV_PYTHON=$(PYTHON) .ci/check_install.sh build
	$(MAKE) -j2 --output-sync=target test-install-minimal test-install-lowest

test-install-minimal test-install-lowest: $(STAMP)
	DEV_PYTHON=$(PYTHON) .ci/check_install.sh $(@:test-install-%=%)

# The real-GPU tests, then the docs notebooks, on a GPU machine where torch and pytest exist
# and the project is installed already (nothing is installed: such machines may be offline).
GPU_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),python3)
test-gpu:
	$(GPU_PYTHON) -m pytest -p no:randomly -v -rs tests/test_gpu_real.py tests/test_gpu_peak.py
	$(GPU_PYTHON) -m pytest -p no:randomly -rs docs_src

# Coverage of the nbtest package over the whole suite, including what notebook kernels run:
# coverage starts before pytest imports nbtest's plugin, `patch = subprocess` (pyproject.toml)
# measures the xdist workers and every Python subprocess, --nbtest-cov hands it to kernels.
coverage: $(STAMP)
	rm -rf .coverage .coverage.* htmlcov
	@rc=0; $(PYTHON) -m coverage run -m pytest $(PYTEST_ARGS) --nbtest-cov || rc=$$?; \
	$(PYTHON) -m coverage combine -q && $(PYTHON) -m coverage report && \
	$(PYTHON) -m coverage html -q && echo "make coverage: HTML report in htmlcov/index.html" \
	|| exit $$?; \
	if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# Times nbtest against nbmake and nbval side by side (benchmarks/RESULTS.md); the peers live
# in their own venv, never in the test environment.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.nbtest-bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml constraints-dev.txt
	python3 benchmarks/bench.py --setup-only
	touch $@

bench: $(BENCH_STAMP)
	python3 benchmarks/bench.py $(BENCH_ARGS)
	python3 benchmarks/bench_preload.py
	python3 benchmarks/bench_nbdev.py

lint: $(STAMP) lint-types
	$(PYTHON) -m ruff check nbtest tests

# mypy --strict on nbtest/ ([tool.mypy] in pyproject.toml).
lint-types: $(STAMP)
	$(PYTHON) -m mypy

clean:
	rm -rf .venv-minimal .venv-lowest build/dist .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage .coverage.* $(LOGDIR)
