# swarmtwin: `make run` and `make test` create .venv when it is missing.
# constraints.txt pins every transitive dependency (pip freeze of a working .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-fast bench certify browser web serve lint format clean core

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# the hot modules of protocol/ and sim/ compiled with mypyc into build/core (native/build.py);
# rebuilt when a source changes. If compiling fails, the pure-Python core runs.
CORE := build/core/manifest.json
$(CORE): $(STAMP) $(wildcard protocol/*.py) sim/engine.py sim/nodes.py sim/cores.py sim/sampler.py sim/driver.py native/build.py native/select.py
	@mkdir -p build && $(BIN)/python -m native.build > build/core.log 2>&1 || true
	@tail -n 1 build/core.log

core: $(CORE)

run: $(STAMP) $(CORE) web
	$(BIN)/swarmtwin run scenarios/default.yaml --backend both

test: $(STAMP) $(CORE) browser web lint
	$(BIN)/pytest

# the edit-test loop: the core and the model, no real processes (about a minute)
test-fast: $(STAMP) $(CORE)
	$(BIN)/pytest tests/core tests/sim -m "not slow"

# headless Chromium renders the certification report to PNG (a test checks it)
browser:
	@bash scripts/install-browser.sh

# the portal's chart library (uPlot, pinned in harness/portal/web/package-lock.json) from npm
web:
	@bash scripts/install-web.sh

# the web portal on http://localhost:8089 (swarmtwin serve)
serve: $(STAMP) $(CORE) web
	$(BIN)/swarmtwin serve

certify: $(STAMP) $(CORE) browser
	$(BIN)/swarmtwin certify

bench: $(STAMP) $(CORE)
	$(BIN)/swarmtwin bench

lint: $(STAMP)
	$(BIN)/ruff check protocol real sim harness native tests
	$(BIN)/ruff format --check protocol real sim harness native tests
	$(BIN)/mypy protocol
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format protocol real sim harness native tests
	$(BIN)/ruff check --fix protocol real sim harness native tests

clean:
	rm -rf $(VENV) build reports/runs reports/history.sqlite
