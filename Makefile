# OptML: `make demo` runs the seed's ANN grid study; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test install install-test install-bench bench bench-web lint clean serve

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install -e '.[test,postgres]'
	touch $@

install-test: $(VENV)/.installed-test

# The seed's experiment: 20 ANN configurations on local worker processes, results in ./optml.db.
demo: install
	@$(VENV)/bin/optml delete ann-grid --yes --storage sqlite:///optml.db >/dev/null 2>&1 || true
	$(VENV)/bin/optml run examples/ann_grid.yaml --storage sqlite:///optml.db

# Everything: unit, end-to-end, PostgreSQL (a real server, installed and started here) and slow tests.
test: install-test
	VENV=$(VENV) bash scripts/postgres.sh install
	@# The dashboard's browser tests drive Debian's chromium (no browser download).
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy src
	$(PY) -m pytest -q

# The web dashboard on http://127.0.0.1:8000 over ./optml.db.
serve: install
	$(PIP) install -e '.[web]'
	$(VENV)/bin/optml serve

install-bench: install
	$(PIP) install -e '.[bench]'

bench: install-bench
	$(PY) benchmarks/bench_speedup.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_storage.py
	$(PY) benchmarks/bench_dask.py

lint: install-test
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src
	$(PY) -m mypy src

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache optml.db optml.db-* optml-files
