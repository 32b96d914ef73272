# Two commands: `make run` and `make test`. Both set everything up on a fresh machine (Python 3.11+).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test lint typecheck pytest redis-server browser bench clean loadtest lock audit

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# Tests start their own private redis-server; install it when the machine has none (CI runs as root).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The browser tests (tests/server/demo/test_browser_*.py) drive Debian's chromium through Playwright
# (never `playwright install`) inside a loopback-only network namespace made with `ip netns` (iproute2).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 || { \
		echo "installing chromium and iproute2"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium iproute2 >/dev/null; }

run: setup
	$(BIN)/python -m server

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: setup redis-server browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint pytest

bench: setup redis-server
	$(BIN)/python -m loadtests.run_all $(BENCH_ARGS)

# Locust against a running server (start one with raised limits: docs/loadtest.md); bounded by RUN_TIME
# plus STOP_TIMEOUT; CSV and HTML reports in var/loadtest/.
LOADTEST_HOST ?= http://127.0.0.1:8080
USERS ?= 20
SPAWN_RATE ?= 5
RUN_TIME ?= 60s
STOP_TIMEOUT ?= 10
loadtest: setup
	@mkdir -p var/loadtest
	$(BIN)/python -m locust -f loadtests/locustfile.py --headless --host $(LOADTEST_HOST) \
		--users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME) --stop-timeout $(STOP_TIMEOUT) \
		--csv var/loadtest/pairly --html var/loadtest/report.html --only-summary

# requirements.lock: what `pip install '.[dev]'` would install in a fresh venv, resolved by pip as a
# dry run (nothing is installed); docs/dependencies.md.
lock: setup
	@mkdir -p var
	$(BIN)/python -m pip install -q --dry-run --ignore-installed --report var/lock-report.json '.[dev]'
	$(BIN)/python -m tools.lock var/lock-report.json requirements.lock

# pip-audit over the lock; fails (status 2, "AUDIT NOT DONE") when the vulnerability service is unreachable.
# Accepted findings: AUDIT_IGNORE="--ignore-vuln ID ..." with the reason in docs/dependencies.md.
# Offline: OSV_DIR=/path/to/advisory-database checks the lock against that local OSV copy instead.
AUDIT_IGNORE ?=
OSV_DIR ?=
audit: setup
	$(BIN)/python -m tools.audit requirements.lock $(AUDIT_IGNORE)$(if $(OSV_DIR), --osv-dir $(OSV_DIR))

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
