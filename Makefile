# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 19092
WEB_PORT ?= 6066
RATE ?= 200
export DATA_DIR ?= ./data

.PHONY: run test install lint bench clean broker worker

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

broker: $(STAMP)
	$(PY) -m app broker --port $(PORT) --data-dir $(DATA_DIR)/broker

worker: $(STAMP)
	$(VENV)/bin/faust -A app.main worker -l info --web-port $(WEB_PORT)

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
