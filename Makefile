# Two commands for a newcomer: `make run` (the gateway) and `make test` (the suite).
# Both build their own virtualenv on first use; `make agents` installs the pinned claude and
# codex CLIs from npm into .tools/ for the tests that drive the real agents.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench agents gh clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gateway serve $(ARGS)

agents:
	bash scripts/install-agent-clis.sh

# The git/pr tests drive the real GitHub CLI (Debian's package): install it where it is missing
# and we may (root with apt-get); otherwise say how, and those tests skip.
gh:
	@command -v gh >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -q gh || { apt-get update -q && apt-get install -y -q gh; }; }; } \
	  || echo "gh is not installed (apt-get install gh): the git/pr tests will be skipped"

test: $(STAMP) agents gh
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
