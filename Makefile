# webdis-rs: `make run` and `make test` work on a fresh Debian machine with a Rust toolchain.

CONFIG ?= webdis.json
CARGO  ?= cargo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Where the config says Redis is (webdis.json keys; defaults 127.0.0.1:6379).
REDIS_HOST := $(or $(shell sed -n 's/.*"redis_host" *: *"\([^"]*\)".*/\1/p' $(CONFIG) 2>/dev/null | head -1),127.0.0.1)
REDIS_PORT := $(or $(shell sed -n 's/.*"redis_port" *: *"\{0,1\}\([0-9][0-9]*\).*/\1/p' $(CONFIG) 2>/dev/null | head -1),6379)
RUN_DIR    := $(CURDIR)/target/run
BROWSER_DIR := tests/browser
# The Python tests' venv (websocket-client for tests/it/wsclient.rs, prometheus-client's
# parser for tests/it/metrics.rs), with Debian's Python.
PYTHON     ?= /usr/bin/python3
PYENV      := target/pyenv
WSCLIENT_REQ := tests/wsclient/requirements.txt
# The Upstash SDKs' tests (tests/it/upstash_sdk.rs): @upstash/redis from npm, pinned in
# tests/upstash/package-lock.json; upstash-redis from PyPI, pinned in its requirements.txt.
UPSTASH_DIR := tests/upstash
UPSTASH_REQ := $(UPSTASH_DIR)/requirements.txt

# The Debian package (cargo-deb; `[package.metadata.deb]` in Cargo.toml).
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEB_ARCH   := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB        := target/debian/webdis-rs_$(VERSION)-1_$(DEB_ARCH).deb
CARGO_DEB_VERSION := 3.8.0

.PHONY: all build release run test deps deps-apt deps-test deps-load loadtest loadtest-cluster fanout bench clean deb test-deb fuzz

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Debian packages, installed only when missing.
deps:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { \
	  echo "Installing redis-server with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# wrk for the load test; libclang for bindgen, which builds the test Redis module
# (tests/module, loaded by tests/it/modules.rs); Chromium and Node.js for the browser
# test (tests/it/browser.rs), then playwright-core from tests/browser/package-lock.json;
# python3-venv for the websocket-client and metrics tests (tests/it/wsclient.rs,
# tests/it/metrics.rs), then their venv.
deps-test: deps-apt $(BROWSER_DIR)/node_modules/.package-lock.json \
  $(UPSTASH_DIR)/node_modules/.package-lock.json $(PYENV)/.installed

deps-apt: deps
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	dpkg -s libclang-dev >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	dpkg -s python3-venv >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# wrk and the C webdis for the side-by-side load tests (loadtest/run, loadtest/fanout).
deps-load: deps
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v webdis >/dev/null || missing="$$missing webdis"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# playwright-core for the browser test, exactly as locked; it never downloads a browser
# (the test drives Debian's /usr/bin/chromium). Reinstalled when the lock file changes.
$(BROWSER_DIR)/node_modules/.package-lock.json: $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json | deps-apt
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund

# @upstash/redis for the Upstash SDK test, exactly as locked. Reinstalled when the lock
# file changes.
$(UPSTASH_DIR)/node_modules/.package-lock.json: $(UPSTASH_DIR)/package.json $(UPSTASH_DIR)/package-lock.json | deps-apt
	npm ci --prefix $(UPSTASH_DIR) --no-audit --no-fund

# websocket-client and prometheus-client from PyPI, exactly as pinned in
# tests/wsclient/requirements.txt, and upstash-redis as pinned in
# tests/upstash/requirements.txt, in a venv of their own (under target/, so never
# committed). Redone when a pin changes.
$(PYENV)/.installed: $(WSCLIENT_REQ) $(UPSTASH_REQ) | deps-apt
	$(PYTHON) -m venv $(PYENV)
	$(PYENV)/bin/pip install --quiet --disable-pip-version-check -r $(WSCLIENT_REQ) -r $(UPSTASH_REQ)
	touch $@

# Starts a private Redis on the configured port unless one already answers there,
# then runs webdis-rs in the foreground with $(CONFIG). The private Redis stops with it.
run: deps release
	@mkdir -p $(RUN_DIR); \
	if redis-cli -h $(REDIS_HOST) -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
	  echo "Using the Redis already running at $(REDIS_HOST):$(REDIS_PORT)"; \
	else \
	  echo "Starting a private Redis on 127.0.0.1:$(REDIS_PORT) (data in $(RUN_DIR))"; \
	  redis-server --bind 127.0.0.1 --port $(REDIS_PORT) --save '' --appendonly no \
	    --dir $(RUN_DIR) --logfile $(RUN_DIR)/redis.log & redis_pid=$$!; \
	  trap 'kill $$redis_pid 2>/dev/null' EXIT; \
	  for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	fi; \
	trap 'kill $$gw_pid 2>/dev/null' INT TERM; \
	./target/release/webdis-rs $(CONFIG) & gw_pid=$$!; wait $$gw_pid

# Every test: unit tests, integration tests against a real redis-server, lint.
test: deps-test
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

# A .deb of the release build (fat LTO: minutes): /usr/bin/webdis-rs, the conffile
# /etc/webdis-rs/webdis.json, the systemd unit, the webdis-rs system user (postinst),
# the man page and the docs. cargo-deb comes from crates.io when missing.
deb: target/deb-assets/webdis-rs.1.gz
	@command -v cargo-deb >/dev/null || { \
	  echo "Installing cargo-deb $(CARGO_DEB_VERSION) with cargo install"; \
	  $(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked; }
	$(CARGO) deb --strip --output $(DEB)

target/deb-assets/webdis-rs.1.gz: debian/webdis-rs.1
	mkdir -p $(@D)
	gzip -9n -c $< > $@

# Installs the package on this machine (root; dpkg -i), runs the installed binary with
# the installed config as the webdis-rs user against a private Redis (in a network
# namespace of its own, so the config's ports are free), then dpkg -r and dpkg -P, and
# checks what each leaves. The package is never left installed.
test-deb: deps deb
	tests/deb/test.sh $(DEB)

loadtest: deps-load
	loadtest/run

# webdis-rs in front of one Redis and of a 3-primary Redis Cluster (get, pipe16).
loadtest-cluster: deps-load
	loadtest/run --cluster

# Pub/sub fan-out: 1,000 chunked-HTTP subscribers on one channel, webdis-rs and C webdis.
fanout: deps-load
	loadtest/fanout

bench:
	$(CARGO) bench

# Every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain, both installed if
# missing), one after the other, FUZZ_TIME seconds each. See fuzz/README.md.
FUZZ_TIME ?= 60
fuzz:
	fuzz/run $(FUZZ_TIME)

clean:
	$(CARGO) clean
