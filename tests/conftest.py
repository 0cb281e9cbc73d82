"""Shared fixtures. Models load once per test session: slow tests share them."""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.daemon import Daemon
from benchmarks.data import DATA_DIR, Clip, data_available, load_manifest

# Two cores in CI: tests and the daemons they start share them.
torch.set_num_threads(int(os.environ.get("WHISPER_STREAMER_TEST_THREADS", "2")))


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
