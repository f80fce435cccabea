# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-plan bench-pg bench-s3 install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/drsync demo --dir demo

lint: $(STAMP)
	$(BIN)/ruff check drsync tests bench
	$(BIN)/mypy drsync

test: lint
	$(BIN)/pytest -n 2 -q tests

test-fast: $(STAMP)
	$(BIN)/pytest -q -m 'not slow' tests

bench: $(STAMP)
	@command -v restic >/dev/null && command -v borg >/dev/null || \
	  (apt-get install -y -q restic borgbackup >/dev/null 2>&1 || \
	   echo "restic/borg not installed and could not be installed: the benchmark will say so")
	$(BIN)/python bench/backup_bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache

bench-plan: $(STAMP)
	$(BIN)/python bench/plan_bench.py

bench-pg: $(STAMP)
	$(BIN)/python bench/pg_bench.py

bench-s3: $(STAMP)
	$(BIN)/python bench/s3_bench.py
