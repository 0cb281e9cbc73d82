"""Shared fixtures. Models load once per test session: slow tests share them.

`slow` (pyproject.toml) marks a test that loads a real model or starts a daemon; `make test-fast`
runs the others (`pytest -m "not slow"`). A test using one of SLOW_FIXTURES is marked here; a test
that loads a model itself carries the mark in its module. Every test without the mark runs under
`no_model_guard`: reading a model's weights, starting a `Daemon` or a `python -m streamer|model.*|
benchmarks.*` child fails it with "mark it slow", so a missing mark cannot go unnoticed.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Generator, Sequence
from typing import Any

import pytest
import torch

from benchmarks.daemon import Daemon
from benchmarks.data import DATA_DIR, Clip, data_available, load_manifest

# Two cores in CI: tests and the daemons they start share them.
torch.set_num_threads(int(os.environ.get("WHISPER_STREAMER_TEST_THREADS", "2")))

# Fixtures that load a model or start a daemon: a test using any of them is slow. Those below,
# and tests/test_clients_mic.py's PulseAudio daemon, which plays a clip in real time.
SLOW_FIXTURES = frozenset({"tiny_en", "base_model", "daemon", "daemon_url", "keyed_daemon", "virtual_microphone"})

# `python -m MODULE` children that load a model: the daemon, the model's CLIs, the benchmarks.
MODEL_MODULES = ("streamer", "model", "benchmarks")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


class UnmarkedSlowTest(AssertionError):
    """A test without the `slow` mark loaded a model or started a daemon."""


def loads_a_model(argv: Sequence[str]) -> bool:
    """Whether a child's command line runs a module that loads a model (`python -m streamer ...`)."""
    args = [str(a) for a in argv]
    return any(flag == "-m" and module.split(".")[0] in MODEL_MODULES for flag, module in itertools.pairwise(args))


def no_model_guard(monkeypatch: pytest.MonkeyPatch, test: str) -> None:
    """Makes model loads and daemon starts fail `test` (which is not marked slow)."""

    def refuse(what: str) -> UnmarkedSlowTest:
        return UnmarkedSlowTest(f"{test} {what} but is not marked slow: add @pytest.mark.slow (or use a fixture in SLOW_FIXTURES)")

    import model.weights

    def refused_load(*args: Any, **kwargs: Any) -> Any:
        raise refuse("reads a model's weights")

    # The entry points, and the reader of each format that load_checkpoint calls (which a test
    # importing load_checkpoint or load_model by name still reaches); whichever exist.
    for loader in ("load_model", "load_checkpoint", "_load_ct2", "_load_hf", "_load_openai"):
        if hasattr(model.weights, loader):
            monkeypatch.setattr(model.weights, loader, refused_load)

    def refused_daemon(self: Daemon, *args: Any, **kwargs: Any) -> None:
        raise refuse("starts a daemon")

    monkeypatch.setattr(Daemon, "__init__", refused_daemon)
    popen_init = subprocess.Popen.__init__

    def guarded_popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if not isinstance(args, str | bytes) and loads_a_model(args):
            raise refuse(f"runs {' '.join(map(str, args))!r}")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Fixture setup included, a test not marked slow runs under `no_model_guard`."""
    if item.get_closest_marker("slow") is not None:
        return (yield)
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_model_guard(monkeypatch, item.nodeid)
        return (yield)


@pytest.fixture(scope="session")
def shared_data() -> list[Clip]:
    """The clips of ../shared/data; tests using them skip with a clear reason when absent."""
    if not data_available():
        pytest.skip(f"shared evaluation data not found at {DATA_DIR} (expected ../shared/data beside the checkout)")
    return load_manifest()


@pytest.fixture(scope="session")
def tiny_en():
    from model.weights import load_model

    return load_model("tiny.en", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def base_model():
    from model.weights import load_model

    try:
        return load_model("base", device="cpu", dtype="float32")
    except FileNotFoundError as error:
        pytest.skip(str(error))


def clip_by_id(clips: list[Clip], clip_id: str) -> Clip:
    return next(c for c in clips if c.id == clip_id)


@pytest.fixture(scope="session")
def daemon():
    """One shared daemon (tiny.en) for every test that needs a real server."""
    # Tests send audio faster than real time, which makes decodes late by design: the knee
    # admission (late decodes of a busy worker) would refuse the next test's stream.
    server = Daemon("--max-tick-lag", "600")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def daemon_url(daemon: Daemon) -> str:
    """The daemon's websocket URL, ws://127.0.0.1:PORT/v1/stream."""
    return daemon.url


INTERFACE_KEY = "interface-test-key"


@pytest.fixture(scope="session")
def keyed_daemon():
    """A daemon with an API key, short limits for the interfaces' edge cases (tests/test_interfaces_*)."""
    previous = os.environ.get("WHISPER_STREAMER_API_KEYS")
    os.environ["WHISPER_STREAMER_API_KEYS"] = f"tests:{INTERFACE_KEY}"
    try:
        server = Daemon("--max-tick-lag", "600", "--idle-timeout", "1.5", "--max-upload-bytes", "400000", "--max-uploads", "1")
    finally:
        if previous is None:
            del os.environ["WHISPER_STREAMER_API_KEYS"]
        else:
            os.environ["WHISPER_STREAMER_API_KEYS"] = previous
    yield server
    server.stop()
