# Two commands matter: `make demo` and `make test`. Each sets up .venv by itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser js netlab nats test lint fuzz soak bench figures demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,aiostream,nats,native]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check rxchannel tests benchmarks examples docs/figures
	$(VENV)/bin/ruff format --check rxchannel tests benchmarks examples docs/figures
	$(VENV)/bin/mypy

# The browser tests drive Debian's Chromium (installed here if missing; needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The browser client's unit tests: node --test, no npm packages (Node >= 20). They check
# the JS modules against vectors the Python core writes (tests/web/js_vectors.py).
js:
	node --test tests/js/

# The network tests (tests/network/) build hosts from network namespaces: they need root, iproute2,
# iptables, ethtool and Debian's coturn (installed here if missing).
netlab:
	@missing=""; for tool in ip:iproute2 ss:iproute2 iptables:iptables ethtool:ethtool turnserver:coturn; do \
	  command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing for the network tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

# The JetStream tests (tests/nats/) start real servers: Debian's nats-server (installed here if missing).
nats:
	@command -v nats-server >/dev/null 2>&1 || { \
	  echo "installing Debian's nats-server for the JetStream tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nats-server >/dev/null; }

test: lint browser netlab js nats
	$(PY) -m pytest -q
	# the library runs on whatever loop the application runs: the in-process tests again on uvloop
	$(PY) -m pytest -q --loop uvloop tests/core tests/runtime tests/transports tests/files tests/pipes

# Longer property and fuzz runs (not part of `make test`).
fuzz: $(STAMP)
	RXCHANNEL_FUZZ_EXAMPLES=200000 $(PY) -m pytest -q tests/core/test_fuzz.py tests/core/test_credit_machine.py tests/runtime/test_fuzz_live.py -p no:timeout

# Long hostile-input and load runs (not part of `make test`): the attacks of issue 11 for
# SOAK_SECONDS per hub, with a legitimate worker beside them and the hub's RSS and fds sampled;
# then the floods of issue 26 from SOAK_ADDRESSES source addresses each (127.0.0.0/8) for
# SOAK_ADDRESS_SECONDS per hub, every legitimate fetch from a fresh address.
SOAK_SECONDS ?= 300
SOAK_ADDRESSES ?= 200
SOAK_ADDRESS_SECONDS ?= 120
soak: $(STAMP)
	$(PY) -m tests.hostile.soak --seconds $(SOAK_SECONDS)
	$(PY) -m tests.hostile.soak --seconds $(SOAK_ADDRESS_SECONDS) --addresses $(SOAK_ADDRESSES)
	RXCHANNEL_FUZZ_EXAMPLES=20000 RXCHANNEL_SOAK_STREAMS=10000 $(PY) -m pytest -q tests/runtime/test_fuzz_live.py tests/runtime/test_load.py -p no:timeout

# Every benchmark side by side; the results are kept in docs/figures/bench-results.jsonl and
# drawn as the plots of docs/benchmarks.md (benchmarks/plots.py). BENCH_FLAGS=--quick for a short run.
bench: $(STAMP)
	$(PY) -m benchmarks --record docs/figures/bench-results.jsonl $(BENCH_FLAGS)

# The diagrams of the README and docs/ (docs/figures/diagrams.py writes them; tests/test_figures.py
# checks the committed ones are what it draws).
figures: $(STAMP)
	$(PY) docs/figures/diagrams.py
	$(PY) -m benchmarks.plots docs/figures/bench-results.jsonl

demo: $(STAMP)
	$(VENV)/bin/rxchannel demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
