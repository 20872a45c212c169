# laneagent: `make demo` and `make test` set up everything they need.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-long soak bench fleet fuzz setup mosquitto rabbitmq rabbitmq-if-possible test-cluster install uninstall clean

demo: setup mosquitto
	$(BIN)/python -m simulators.demo

test: setup mosquitto rabbitmq-if-possible prometheus-if-possible
	$(BIN)/python -m pytest -q

# The metrics tests with a real Prometheus server and promtool (Debian's prometheus
# package, installed here when missing; `make test` installs it when it can and skips
# those parts, saying why, when it cannot).
.PHONY: test-metrics prometheus prometheus-if-possible
test-metrics: setup mosquitto prometheus
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/app/test_metrics.py tests/app/test_metrics_units.py \
	  tests/app/test_metrics_dashboard.py $(wildcard tests/cli/test_progress*.py)

prometheus:
	@if command -v promtool >/dev/null 2>&1; then exit 0; fi; \
	echo "promtool is missing: installing Debian's prometheus package ..."; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	  echo "Cannot install prometheus without root. Run: su -c 'apt-get update && apt-get install -y prometheus'"; exit 1; fi; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || { \
	  echo "apt-get could not install prometheus. Run by hand: sudo apt-get install -y prometheus"; exit 1; }

prometheus-if-possible:
	@$(MAKE) --no-print-directory prometheus || echo "(continuing without Prometheus: its real-server tests will be skipped, saying why)"

test-long: setup mosquitto
	LANEAGENT_LONG=1 $(BIN)/python -m pytest -q

soak: setup mosquitto
	LANEAGENT_KILLS=1000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/system/test_faults.py -k sigkill --timeout 7200

bench: setup mosquitto
	ONLY="$(ONLY)" $(BIN)/python -m tests.bench

# N real lanes against a 3-node RabbitMQ cluster, one node killed midway (DESIGN part 4, `fleet`).
# Needs about 60 MB of memory per lane and 4 file descriptors per lane; 100 lanes take about 13 minutes.
N ?= 100
fleet: setup mosquitto rabbitmq
	$(BIN)/python -m tests.bench.fleet_bench --lanes $(N)

fuzz: setup
	$(BIN)/python -m tests.bench.fuzz

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "laneagent needs Python 3.11 or newer; '$(PY)' is $$($(PY) --version 2>&1)."; \
	  echo "Install it (sudo apt-get install -y python3 python3-venv) or run: make PY=python3.11 $(MAKECMDGOALS)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
	  echo "Cannot create the virtual environment $(VENV): sudo apt-get install -y python3-venv"; exit 1; }
	@echo "Installing laneagent and its packages into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]' || { \
	  echo "pip could not install the packages: check the network or your PyPI mirror (PIP_INDEX_URL)."; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then exit 0; fi; \
	echo "mosquitto is missing: installing it from Debian's packages ..."; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	  echo "Cannot install mosquitto without root. Run: su -c 'apt-get update && apt-get install -y mosquitto'"; exit 1; fi; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto >/dev/null; } || { \
	  echo "apt-get could not install mosquitto. Run by hand: sudo apt-get update && sudo apt-get install -y mosquitto"; exit 1; }; \
	echo "mosquitto installed (the tests and the demo start their own brokers on free ports)."

rabbitmq:
	@if test -x /usr/lib/rabbitmq/bin/rabbitmq-server; then exit 0; fi; \
	echo "rabbitmq-server is missing: installing it from Debian's packages ..."; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else \
	  echo "Cannot install rabbitmq-server without root. Run: su -c 'apt-get update && apt-get install -y rabbitmq-server'"; exit 1; fi; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq rabbitmq-server >/dev/null; } || { \
	  echo "apt-get could not install rabbitmq-server. Run by hand: sudo apt-get update && sudo apt-get install -y rabbitmq-server"; exit 1; }; \
	echo "rabbitmq-server installed (the cluster tests start their own 3-node cluster on free loopback ports)."

# `make test` runs the RabbitMQ node-failure test when rabbitmq-server can be had; without
# it that one test is skipped with the reason, and everything else still runs.
rabbitmq-if-possible:
	@$(MAKE) --no-print-directory rabbitmq || echo "(continuing without RabbitMQ: its cluster test will be skipped, saying why)"

# The tests against a real 3-node RabbitMQ cluster (several minutes: each boot takes ~25 s on two cores).
test-cluster: setup mosquitto rabbitmq
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/system/test_cluster_rabbitmq.py tests/sync/test_cluster_failover.py tests/sync/test_hosts_config.py

# On a booth, as root (README "Install on a booth"); DESTDIR=/tmp/root stages instead.
install:
	@DESTDIR="$(DESTDIR)" PYTHON="$(PY)" PIP_ARGS="$(PIP_ARGS)" sh systemd/install.sh install

uninstall:
	@DESTDIR="$(DESTDIR)" PYTHON="$(PY)" sh systemd/install.sh uninstall

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
