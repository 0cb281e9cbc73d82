# whisper-streamer: `make run` starts the daemon, `make test` runs the suite.
# Everything installs into .venv. A GPU user picks their own torch build, e.g.
#   make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: install install-test install-bench system-deps run lint test test-fast bench bench-stream clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) -e ".[test]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PIP) -e ".[bench]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

# Debian packages the tests use: PortAudio for sounddevice, Chromium for the
# browser test, PulseAudio (+ its tools and ALSA plugin) for a virtual microphone,
# ffmpeg for non-WAV input, nginx and redis-server for the replica tests (tests/test_replicas.py).
# Installed only when missing.
SYSTEM_PACKAGES := libportaudio2 chromium pulseaudio pulseaudio-utils libasound2-plugins ffmpeg nginx redis-server
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: install
	$(PY) -m streamer --config config.toml

# Lint and types first: they take seconds, the suite minutes.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install-test system-deps lint
	$(PY) -m pytest -q -ra

# Lint, then the tests that load no model and start no daemon (not marked `slow`; tests/conftest.py
# marks them and fails an unmarked one that does): under a minute on two cores.
test-fast: install-test lint
	$(PY) -m pytest -q -ra -m "not slow"

bench: install-bench
	$(PY) -m benchmarks.offline

bench-stream: install-test
	$(PY) -m benchmarks.streaming

clean:
	rm -rf $(VENV) build *.egg-info
