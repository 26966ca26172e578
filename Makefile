# The two commands a new user needs: `make demo` and `make test`. Everything else is here for them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The CPU build of PyTorch by default; override, e.g. TORCH_SPEC='torch==2.13.0+cu128'.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: all venv demo test proto clean tools gpu-check

all: venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[test,report]"
	# The built-in tables credit-default and credit-card are CSVs inside ISLP's wheel; ganworks reads them without
	# importing ISLP, so its heavy dependencies (statsmodels, lifelines, pytorch-lightning, ...) are left out.
	$(PIP) install --quiet --no-deps "ISLP==0.6.0"
	touch $@

venv: $(VENV)/.installed

# Debian's prometheus package gives promtool and the server for the dashboard tests; unpacked, never started as a service.
# Debian's dataset-fashion-mnist gives the Fashion-MNIST IDX files (linked when installed, else unpacked).
# Debian's chromium package is the headless browser the report test renders in; unpacked into .venv/tools, not installed system-wide.
# pytorch-fid (with its torchvision) is the reference for the FID agreement test; kept out of the venv, in .venv/tools.
$(VENV)/.tools: $(VENV)/.installed tests/tools/install-prometheus.sh tests/tools/install-fashion-mnist.sh tests/tools/install-chromium.sh tests/tools/install-pytorch-fid.sh
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

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
