# Two commands: `make run` and `make test`. Both set everything up on a fresh machine (Python 3.11+).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test lint typecheck pytest redis-server browser bench clean

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

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
