# The two commands a new user needs: `make demo` and `make test`.
# Everything they need is installed here, into .venv, from python3 alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser postgres screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# setup.py compiles the OTLP wire reader (collector/_wire.pyx) when a C compiler is present.
$(STAMP): pyproject.toml setup.py collector/_wire.pyx | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lake]'
	touch $(STAMP)

demo: $(STAMP)
	@echo "== cachediag diff: a deploy put a timestamp in the system prompt =="
	@# diff exits 1 when the requests differ (as here) and 2 on bad input.
	$(BIN)/cachediag diff sample_data/pairs/dynamic_value/a.json \
		sample_data/pairs/dynamic_value/b.json || [ $$? -eq 1 ]
	@echo
	@echo "== cachediag lint of the same request =="
	$(BIN)/cachediag lint sample_data/pairs/dynamic_value/b.json || [ $$? -eq 1 ]
	@echo
	@echo "== the whole pipeline on a recorded day (Ctrl-C stops it) =="
	$(BIN)/cachediag demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The browser tests drive Debian's Chromium and ChromeDriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

# The lake tests (tests/test_lake.py) start a private cluster of Debian's PostgreSQL.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)

test: lint browser postgres
	$(BIN)/python -m pytest

# The README's screenshots, as the browser tests take them on the sample day.
screenshots: $(STAMP) browser
	$(BIN)/python -m pytest -p no:randomly tests/test_browser.py
	cp test-artifacts/overview.png test-artifacts/alerts.png test-artifacts/diff.png docs/

bench: $(STAMP) browser postgres
	$(BIN)/python benchmarks/bench_diff.py
	$(BIN)/python benchmarks/bench_instrument.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/eval_explain.py
	$(BIN)/python benchmarks/eval_alerts.py
	$(BIN)/python benchmarks/bench_alerts.py
	$(BIN)/python benchmarks/bench_dashboard.py
	$(BIN)/python benchmarks/bench_lake.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
