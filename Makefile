# The two commands a new user needs: `make demo` and `make test`. Everything else is here for them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# PyTorch is the one package outside the lock: its CPU and CUDA builds are different wheels of one version.
# `pip install torch==2.13.0` takes PyPI's default build: CUDA on Linux x86_64, CPU on macOS and Linux aarch64.
# For the CPU build on Linux x86_64: TORCH_INDEX=https://download.pytorch.org/whl/cpu; for another CUDA version,
# that index's cuXXX folder. TORCH_SPEC picks the version: it must be one the lock's packages accept (2.13.x).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# The lock resolves as of this date (requirements/compile.py); move it to take newer releases: make lock LOCK_DATE=...
LOCK_DATE ?= 2026-12-06
PYTEST_ARGS ?=
LOCKS := requirements/bootstrap.txt requirements/lock.txt requirements/nodeps.txt

.PHONY: all venv demo test proto clean tools lock docs-gen docs bench-record gpu-check

all: venv

# The venv holds exactly the lock: it is made anew when the lock or the project changes (its tools/ folder stays).
# Every locked package comes with its hash and none pulls another (--no-deps): what is installed is what CI tested.
$(VENV)/.installed: pyproject.toml $(LOCKS)
	@if [ -d $(VENV) ]; then find $(VENV) -mindepth 1 -maxdepth 1 ! -name tools -exec rm -rf {} +; fi
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "ganworks needs Python >= 3.11 (pyproject.toml requires-python); this is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/bootstrap.txt
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/lock.txt
	$(PIP) install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	$(PIP) install --quiet --require-hashes --no-deps -r requirements/nodeps.txt
	touch $@

venv: $(VENV)/.installed

# Debian's prometheus package gives promtool and the server for the dashboard tests; unpacked, never started as a service.
# Debian's dataset-fashion-mnist gives the Fashion-MNIST IDX files (linked when installed, else unpacked).
# Debian's chromium package is the headless browser the report test renders in; unpacked into .venv/tools, not installed system-wide.
# pytorch-fid (with its torchvision) is the reference for the FID agreement test; kept out of the venv, in .venv/tools.
$(VENV)/.tools: $(VENV)/.installed requirements/fid-reference.txt tests/tools/install-prometheus.sh tests/tools/install-fashion-mnist.sh tests/tools/install-chromium.sh tests/tools/install-pytorch-fid.sh
	bash tests/tools/install-prometheus.sh $(VENV)/tools
	bash tests/tools/install-fashion-mnist.sh $(VENV)/tools/fashion-mnist
	bash tests/tools/install-chromium.sh $(VENV)/tools
	bash tests/tools/install-pytorch-fid.sh $(PY) $(VENV)/tools/pytorch-fid
	touch $@

tools: $(VENV)/.tools

demo: venv
	$(VENV)/bin/ganworks demo

test: venv tools
	$(PY) tests/run_tests.py $(PYTEST_ARGS)

# What the CUDA paths do on this machine's GPU: one command, under 8 minutes, no network; a table and one JSON in
# benchmarks/results/. Without CUDA it says so and exits 0. Needs a CUDA build of torch (TORCH_SPEC, above).
gpu-check: venv
	$(PY) benchmarks/gpu_check.py

proto: venv
	$(PY) proto/generate.py

# Resolves requirements/*.txt from pyproject.toml (and requirements/*.in) with uv, hashed, as of LOCK_DATE.
lock: venv
	$(PY) requirements/compile.py --date $(LOCK_DATE)

# The docs' reference pages, the Benchmarks page and the README's headline numbers, from the code and benchmarks/results/.
docs-gen: venv
	$(PY) -m tools.docgen

# The documentation site, into site/ (strict: a broken link or a missing page fails).
docs: docs-gen
	$(VENV)/bin/mkdocs build --strict

# Run a benchmark and keep its result as data: make bench-record NAME=evaluator CMD='.venv/bin/python benchmarks/evaluator.py'
bench-record: venv
	$(PY) -m tools.docgen record $(NAME) -- $(CMD)

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
