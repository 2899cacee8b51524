# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 19092
WEB_PORT ?= 6066
RATE ?= 200
export DATA_DIR ?= ./data

.PHONY: run test install lint bench chaos chaos-short clean broker worker

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(PY) -m app.run --port $(PORT) --web-port $(WEB_PORT) --rate $(RATE)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Benchmarks (loopback only, bounded): see docs/benchmarks.md. The Quix Streams baseline needs
# its own venv (a dependency conflict with the app): it is created here when missing.
.venv-quix/bin/python:
	$(PYTHON) -m venv .venv-quix
	.venv-quix/bin/pip install --quiet 'quixstreams==3.28.1' 'fastavro>=1.13,<2'

bench: $(STAMP) .venv-quix/bin/python
	QUIX_PYTHON=.venv-quix/bin/python $(PY) -m bench.bench_ingest
	$(PY) -m bench.bench_positions
	$(PY) -m bench.bench_recovery
	$(PY) -m bench.bench_blotter
	$(PY) -m bench.bench_blotter --subscribers 1000 --idle 0
	$(PY) -m bench.bench_lots
	$(PY) -m bench.bench_components
	$(PY) -m bench.broker_lifecycle

# Fault injection: the short run (also part of `make test`) and the long run, whose figures
# are written to docs/reliability.md.
chaos-short: $(STAMP)
	$(PY) -m pytest -q tests/reliability/test_chaos_short.py

chaos: $(STAMP)
	$(PY) -m tests.reliability.chaos --long --record docs/reliability.md

broker: $(STAMP)
	$(PY) -m app broker --port $(PORT) --data-dir $(DATA_DIR)/broker

worker: $(STAMP)
	$(VENV)/bin/faust -A app.main worker -l info --web-port $(WEB_PORT)

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
