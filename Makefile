# One command per habit. Everything runs from the locked virtualenv (.venv, uv.lock).
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY := .venv/bin/python
export UV_LINK_MODE := copy

.PHONY: install test lint bench bench-quick demo reliability clean

install: .venv/.installed tools/node/node_modules/.installed

.venv/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv>=0.4"
	$(UV) sync --frozen
	@touch $@

tools/node/node_modules/.installed: tools/node/package.json tools/node/package-lock.json
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
	@touch $@

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check batchflow tests benchmarks
	$(PY) -m ruff format --check batchflow tests benchmarks
	$(PY) -m mypy

bench: install
	$(PY) -m benchmarks

bench-quick: install
	$(PY) -m benchmarks --quick

demo: install
	$(PY) -m batchflow.demo

reliability: install
	BATCHFLOW_RELIABILITY_FULL=1 $(PY) -m pytest -q -m reliability tests/reliability

clean:
	rm -rf .venv tools/node/node_modules .pytest_cache .mypy_cache .ruff_cache
