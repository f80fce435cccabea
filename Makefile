# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# s3rver, a minimal second S3 implementation for the store tests (tests/store/minimal_s3.py).
S3RVER := tools/s3rver/node_modules/.installed

.PHONY: demo test test-fast lint bench bench-plan bench-pg bench-pg-memory bench-mariadb bench-s3 \
	bench-prune bench-wal bench-wal-pg bench-groups install clean chromium report-deps mariadb

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[dev]'
	$(BIN)/python -m compileall -q drsync  # as pip compiles what it installs (not editable)
	touch $(STAMP)

install: $(STAMP)

$(S3RVER): tools/s3rver/package-lock.json
	@command -v npm >/dev/null || apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nodejs npm >/dev/null 2>&1) || true
	@if command -v npm >/dev/null; then \
	  npm ci --prefix tools/s3rver --no-audit --no-fund --loglevel=error && touch $@; \
	elif [ "$$CI" = true ]; then \
	  echo "npm (node) is required in CI for the s3rver store tests"; exit 1; \
	else echo "npm not found: the s3rver (minimal S3) tests will be skipped"; fi

# Debian's chromium, the real browser the fleet page is checked in (tests/fleet/test_browser.py).
chromium:
	@command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || true
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$CI" = true ]; then \
	  echo "chromium is required in CI for the fleet page browser tests"; exit 1; \
	else echo "chromium not found: the fleet page browser tests will be skipped"; fi

# What `drsync report` and its tests need from the system: Pango for WeasyPrint's PDF, a
# Japanese font for the PDF and the charts, poppler's pdftoppm/pdfdetach to check the PDF
# (tests/report/test_render.py).
REPORT_PKGS := libpango-1.0-0 libpangoft2-1.0-0 fonts-ipafont-gothic poppler-utils
report-deps:
	@if ! command -v pdftoppm >/dev/null || ! fc-list :lang=ja | grep -q . || \
	   ! ldconfig -p | grep -q libpangoft2-1.0; then \
	  apt-get install -y -q $(REPORT_PKGS) >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(REPORT_PKGS) >/dev/null 2>&1) \
	  || true; fi
	@if command -v pdftoppm >/dev/null && ldconfig -p | grep -q libpangoft2-1.0; then :; \
	elif [ "$$CI" = true ]; then \
	  echo "Pango and poppler-utils are required in CI for the report's PDF tests"; exit 1; \
	else echo "Pango or poppler-utils missing: the report's PDF tests will be skipped"; fi

# MariaDB's programs (mariadbd, mariadb-install-db, mariadb-dump, mariadb-binlog, mariadb): the
# MariaDB tests start throwaway servers of their own (drsync/testing_mariadb.py).
mariadb:
	@command -v mariadb-binlog >/dev/null && command -v mariadb-install-db >/dev/null || \
	  apt-get install -y -q mariadb-server mariadb-client >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && \
	   apt-get install -y -q mariadb-server mariadb-client >/dev/null 2>&1) || true
	@if command -v mariadb-binlog >/dev/null && command -v mariadb-install-db >/dev/null; then :; \
	elif [ "$$CI" = true ]; then \
	  echo "MariaDB's programs are required in CI for the MariaDB tests"; exit 1; \
	else echo "MariaDB not found: the MariaDB tests will be skipped"; fi

demo: $(STAMP)
	$(BIN)/drsync demo --dir demo

lint: $(STAMP)
	$(BIN)/ruff check drsync tests bench
	$(BIN)/mypy drsync

test: lint $(S3RVER) chromium report-deps mariadb
	$(BIN)/pytest -n 2 -q tests

test-fast: $(STAMP) $(S3RVER) chromium report-deps mariadb
	$(BIN)/pytest -q -m 'not slow' tests

bench: $(STAMP)
	@command -v restic >/dev/null && command -v borg >/dev/null || \
	  (apt-get install -y -q restic borgbackup >/dev/null 2>&1 || \
	   echo "restic/borg not installed and could not be installed: the benchmark will say so")
	$(BIN)/python bench/backup_bench.py
	$(BIN)/python bench/restore_bench.py
	$(BIN)/python bench/prune_bench.py
	$(BIN)/python bench/wal_recompress_bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache tools/s3rver/node_modules

bench-prune: $(STAMP)
	@command -v restic >/dev/null || apt-get install -y -q restic >/dev/null 2>&1 || \
	  echo "restic not installed and could not be installed: the benchmark will say so"
	$(BIN)/python bench/prune_bench.py

bench-wal: $(STAMP)
	$(BIN)/python bench/wal_recompress_bench.py

bench-groups: $(STAMP)
	$(BIN)/python bench/group_bench.py

bench-wal-pg: $(STAMP)
	$(BIN)/python bench/wal_bench.py

bench-plan: $(STAMP)
	$(BIN)/python bench/plan_bench.py

# drsync beside pgBackRest on one throwaway cluster; bench/pg_bench.py installs Debian's
# pgbackrest with apt-get when it is missing (without it, only drsync is measured).
bench-pg: $(STAMP)
	$(BIN)/python bench/pg_bench.py

bench-pg-memory: $(STAMP)
	$(BIN)/python bench/pg_memory_bench.py --pgbackrest

bench-mariadb: $(STAMP) mariadb
	$(BIN)/python bench/mariadb_bench.py

bench-s3: $(STAMP)
	$(BIN)/python bench/s3_bench.py
