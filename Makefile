# Everyday commands. `make run` and `make test` work on a fresh clone: they create .venv first if it is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The scenario of `make run` / `make dev` (its markets, schedule and sensors); MMM_CONFIG when set.
CONFIG ?= $(or $(MMM_CONFIG),config/default.yaml)
HOST ?= 127.0.0.1
PORT ?= 3000
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Compiled-code caches, kept inside the project (git-ignored) so they survive between runs: PyTensor's, and JAX's
# for the numpyro sampler (every compiled function kept, however quick it was to compile).
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.cache/pytensor
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: install run test lint dev mlflow bench bench-scaling bench-samplers bench-floor home landing-sample clean

# A Python >= 3.12: python3.12 (the version the stack is pinned and tested on), python3.13, python3 on the PATH,
# then pyenv's installed versions, oldest first (a pyenv shim with no version selected fails the check and is skipped).
define find_python
ok() { "$$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }; \
for c in python3.12 python3.13 python3; do p=$$(command -v $$c 2>/dev/null) && ok "$$p" && { echo "$$p"; exit 0; }; done; \
for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do ok "$$p" && { echo "$$p"; exit 0; }; done; \
exit 1
endef

$(VENV)/.installed: pyproject.toml
	@py=$$( $(find_python) ) || { echo "error: no Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv versions); install one and retry" >&2; exit 1; }; \
	echo "using $$py ($$($$py --version))"; \
	[ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

home:
	@mkdir -p $(DAGSTER_HOME) && ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

run: install home
	$(PY) -m mmm_assets run --config $(CONFIG)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check mmm_assets mmm_assets_tests

# Runs launched from the UI share the cores (a pooled model's holdout refit beside its fit): one BLAS thread each unless
# set, as `make run`'s workers (mmm_assets/cli.py, BLAS_THREADS).
ONE_BLAS_THREAD = OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1}
dev: install home
	$(ONE_BLAS_THREAD) MMM_CONFIG=$(abspath $(CONFIG)) $(VENV)/bin/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

# The baseline fit (cold and warm compile cache) and our whole refresh (cold caches, warm, warm with one more week of
# data), side by side, each in its own caches under benchmarks/.work (see benchmarks/run.py); about 4-5 min per repeat.
REPEATS ?= 3
bench: install
	$(PY) benchmarks/run.py --repeats $(REPEATS) --config $(CONFIG)

# Fit time and peak memory for 104 / 208 / 520 weeks x 3 / 10 / 30 channels, each cell run twice and the warm-cache run
# reported (benchmarks/scaling.py); the first run ever compiles into benchmarks/.work/scaling-cache.
bench-scaling: install
	$(PY) benchmarks/scaling.py

# numpyro, nutpie and PyMC's own NUTS on the reference scenario, each cold then warm on caches of its own.
bench-samplers: install
	$(PY) benchmarks/samplers.py --config $(CONFIG)

# What every refresh pays before any work, each part in a fresh process (benchmarks/floor.py): the interpreter, the
# refresh's imports, and a Dagster run of the refresh's shape whose steps do nothing; 1-2 min.
bench-floor: install
	$(PY) benchmarks/floor.py --repeats $(REPEATS)

# Google Meridian 2.1 for side-by-side benchmarks (benchmarks/meridian/fit.py), in a venv of its own: its numpy,
# matplotlib, arviz and TensorFlow pins clash with the project's. ~3 GB; the stamp makes a second run instant.
MERIDIAN_VENV := benchmarks/.meridian-venv
.PHONY: meridian-venv
meridian-venv: $(MERIDIAN_VENV)/.installed

$(MERIDIAN_VENV)/.installed: benchmarks/meridian/requirements.txt
	@py=$$( $(find_python) ) || { echo "error: no Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv versions); install one and retry" >&2; exit 1; }; \
	echo "using $$py ($$($$py --version))"; \
	[ -x $(MERIDIAN_VENV)/bin/python ] || $$py -m venv $(MERIDIAN_VENV)
	$(MERIDIAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MERIDIAN_VENV)/bin/python -m pip install --quiet -r benchmarks/meridian/requirements.txt
	@touch $@

# Our pooled geo model against Meridian on the same simulated geo data, same chains and draws, both judged by R-hat
# <= 1.01 and bulk ESS >= 400 (benchmarks/scale.py); GEOS=10,20 by default.
GEOS ?= 10,20
.PHONY: bench-scale
bench-scale: install meridian-venv
	$(PY) benchmarks/scale.py --geos $(GEOS)

mlflow: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host $(HOST) --port 5000

landing-sample: install
	$(PY) -m mmm_assets sample-landing --config config/landing_example.yaml

clean:
	rm -rf $(DAGSTER_HOME) data .cache mlruns

# Regenerate the README's pictures (docs/screenshots/*.png) from the UI test: a real `dagster dev`, headless Chromium.
.PHONY: screenshots
screenshots: install
	MMM_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest mmm_assets_tests/system/ui -q -m ui
