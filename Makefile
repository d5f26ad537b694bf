# swarmtwin: `make run` and `make test` create .venv when it is missing.
# constraints.txt pins every transitive dependency (pip freeze of a working .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench certify browser lint format clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/swarmtwin run scenarios/default.yaml --backend both

test: $(STAMP) browser lint
	$(BIN)/pytest

# headless Chromium renders the certification report to PNG (a test checks it)
browser:
	@bash scripts/install-browser.sh

certify: $(STAMP) browser
	$(BIN)/swarmtwin certify

bench: $(STAMP)
	$(BIN)/python -m harness.bench

lint: $(STAMP)
	$(BIN)/ruff check protocol real sim harness tests
	$(BIN)/ruff format --check protocol real sim harness tests
	$(BIN)/mypy protocol

format: $(STAMP)
	$(BIN)/ruff format protocol real sim harness tests
	$(BIN)/ruff check --fix protocol real sim harness tests

clean:
	rm -rf $(VENV) reports/runs reports/history.sqlite
