# Two commands for a newcomer: `make run` (the gateway) and `make test` (the suite).
# Both build their own virtualenv on first use; `make agents` installs the pinned claude and
# codex CLIs from npm into .tools/ for the tests that drive the real agents.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench agents clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gateway serve $(ARGS)

agents:
	bash scripts/install-agent-clis.sh

test: $(STAMP) agents
	$(BIN)/ruff check .
	bash scripts/typecheck.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	bash scripts/typecheck.sh

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .tools build *.egg-info
