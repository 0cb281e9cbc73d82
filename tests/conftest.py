"""Shared fixtures. Models load once per test session: slow tests share them."""

from __future__ import annotations

import os

import pytest
import torch

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


class Daemon:
    """A real `python -m streamer` on a free loopback port, for the duration of a test session."""

    def __init__(self, *extra_args: str) -> None:
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamer", "--host", "127.0.0.1", "--port", "0", "--model", "tiny.en", *extra_args],
            stdout=subprocess.PIPE,
            stderr=None,  # the daemon's log goes to the test output, useful when a test fails
            text=True,
        )
        line = self.process.stdout.readline()  # blocks until the daemon accepts connections
        if not line.startswith("listening on ws://"):
            self.process.kill()
            raise RuntimeError(f"daemon did not start (exit {self.process.wait()}): {line!r}")
        self.address = line.strip().removeprefix("listening on ws://")
        self.url = f"ws://{self.address}/v1/stream"
        self.http_url = f"http://{self.address}"

    def stop(self) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def daemon():
    """One shared daemon (tiny.en) for every test that needs a real server."""
    server = Daemon()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def daemon_url(daemon: Daemon) -> str:
    """The daemon's websocket URL, ws://127.0.0.1:PORT/v1/stream."""
    return daemon.url
