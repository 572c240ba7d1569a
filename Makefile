# PELabelUp — set-up, demo and tests. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean bench bench-gpu

venv: $(STAMP)

# torch is installed first, pinned, so that no other package pulls a different (CUDA) build.
# GPU users: install the CUDA build of torch==2.13.0 into .venv before `make` (see README).
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[ml,slicer,dev]"
	$(PY) -c "import torch, monai, SimpleITK, pydicom, slicer; print('environment ready: torch', torch.__version__, '| monai', monai.__version__, '| SimpleITK', SimpleITK.Version_VersionString())"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pelabelup demo --out demo-output

lint: $(STAMP)
	$(PY) -m ruff check PELabelUp Testing training benchmarks

test: $(STAMP) lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_phantom.py
	$(PY) benchmarks/bench_cohort.py
	for seed in 7 8 9; do $(PY) benchmarks/bench_analyze.py --seed $$seed || exit 1; done

# on a machine with a CUDA GPU (and a CUDA build of torch in .venv): benchmark and torchrun/nccl checks
bench-gpu: $(STAMP)
	PYTHON=$(PY) bash benchmarks/gpu_checks.sh gpu-checks

clean:
	rm -rf demo-output gpu-checks .pytest_cache .ruff_cache
