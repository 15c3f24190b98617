# Two commands for a newcomer: `make run` (the gateway) and `make test` (the suite).
# Both build their own virtualenv on first use: `make run` installs only what the gateway needs,
# `make test` adds the test tools. `make agents` installs the pinned claude and codex CLIs from
# npm into .tools/; `make run` puts them on the gateway's PATH, so agent runs find them.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP    := $(VENV)/.installed-test
AGENT_BIN     := $(CURDIR)/.tools/node/node_modules/.bin
say = @printf '\n==> %s\n' "$(1)"

.PHONY: run test lint bench agents gh clean

$(BIN)/python:
	$(call say,creating $(VENV) with $(PYTHON))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --progress-bar off pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(call say,installing the gateway's runtime packages into $(VENV) (first run: about a minute))
	$(BIN)/python -m pip install --progress-bar off -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(call say,installing the gateway and its test tools into $(VENV) (first run: a few minutes))
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	touch $@ $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)
	@test -d "$(AGENT_BIN)" || echo "note: no agent CLIs in .tools/ (make agents installs claude and codex)"
	$(call say,starting the gateway. To open the dashboard run this in another terminal: $(CURDIR)/$(BIN)/gateway open)
	PATH="$(AGENT_BIN):$$PATH" $(BIN)/gateway serve $(ARGS)

agents:
	$(call say,installing the pinned claude and codex CLIs into .tools/ (first run: a few minutes))
	bash scripts/install-agent-clis.sh

# The git/pr tests drive the real GitHub CLI (Debian's package): install it where it is missing
# and we may (root with apt-get); otherwise say how, and those tests skip.
gh:
	@command -v gh >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -q gh || { apt-get update -q && apt-get install -y -q gh; }; }; } \
	  || echo "gh is not installed (apt-get install gh): the git/pr tests will be skipped"

test: $(TEST_STAMP) agents gh
	$(call say,ruff)
	$(BIN)/ruff check .
	bash scripts/typecheck.sh
	$(call say,pytest (dots are passed tests))
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	bash scripts/typecheck.sh

bench: $(TEST_STAMP)
	$(BIN)/python -m pip install --progress-bar off -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .tools build *.egg-info
