# Seqcast: `make run` trains the demo model if none exists, then serves it;
# `make check` is the inner loop (lint, type checks, fast tests: about a minute);
# `make test` runs lint, type checks and the whole test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned, so pip takes this machine's local CPU build instead of a
# multi-GB CUDA download. On other machines add e.g. TORCH_PIP_ARGS="--index-url <PyTorch CPU index>".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
MODEL_DIR ?= models
DEMO_CONFIG ?= configs/demo.toml

.PHONY: install demo-model run check test lint bench bench-accuracy clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo-model: install
	@if [ -n "$$(cat $(MODEL_DIR)/demo/CURRENT 2>/dev/null)" ]; then \
		echo "demo model present: $(MODEL_DIR)/demo/$$(cat $(MODEL_DIR)/demo/CURRENT)"; \
	else \
		$(BIN)/seqcast train --config $(DEMO_CONFIG) --model-dir $(MODEL_DIR); \
	fi

# Serves every model in MODEL_DIR on 127.0.0.1:8000 (SEQCAST_BIND to change); Ctrl-C stops it.
run: demo-model
	SEQCAST_MODEL_DIR=$(MODEL_DIR) $(BIN)/gunicorn -c service/gunicorn.conf.py 'service:create_app()'

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy service training
	$(BIN)/hadolint Dockerfile

# The inner loop, under 2 minutes on 2 cores: ruff, mypy, and the tests that neither train nor export
# real models (marker slow) nor start gunicorn (marker e2e).
check: install
	$(BIN)/ruff check .
	$(BIN)/mypy service training
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

# Everything, as CI runs it (.ci/run): lint (with hadolint), then the whole suite, slow and e2e included.
test: lint
	$(BIN)/python -m pytest -q

# The accuracy benchmark (docs/accuracy.md) in its own virtualenv: statsforecast pins its own
# stack, so it never goes into $(VENV). BENCH_ARGS="--quick" for the 6-set inner loop.
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BENCH_VENV)/bin/pip install -q -e '.[train,serve,bench]'
	touch $@

bench-accuracy: $(BENCH_VENV)/.installed
	PYTHONPATH=$(CURDIR) $(BENCH_VENV)/bin/python bench/accuracy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
