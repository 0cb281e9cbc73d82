"""The `slow` mark is kept honest (tests/conftest.py): this module is not marked slow, so it runs
under the guard that fails an unmarked test loading a model or starting a daemon."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.daemon import Daemon
from model.weights import load_checkpoint
from tests.conftest import SLOW_FIXTURES, UnmarkedSlowTest, loads_a_model


def test_reading_a_models_weights_fails_an_unmarked_test() -> None:
    from model.weights import load_model

    with pytest.raises(UnmarkedSlowTest, match="reads a model's weights but is not marked slow"):
        load_model("tiny.en", device="cpu")
    with pytest.raises(UnmarkedSlowTest):
        load_checkpoint("tiny.en")  # imported by name before the guard: its format reader is guarded


def test_starting_the_daemon_fails_an_unmarked_test() -> None:
    with pytest.raises(UnmarkedSlowTest, match="starts a daemon"):
        Daemon()
    with pytest.raises(UnmarkedSlowTest, match=r"runs .*-m streamer"):
        subprocess.run([sys.executable, "-m", "streamer", "--help"], capture_output=True, check=False)


def test_other_children_run() -> None:
    done = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True, check=True)
    assert done.stdout == "ok\n"


def test_children_that_load_a_model_are_told_by_their_module() -> None:
    assert loads_a_model([sys.executable, "-m", "streamer", "--port", "0"])
    assert loads_a_model(["python", "-m", "model.transcribe", "talk.wav"])
    assert loads_a_model(["python", "-u", "-m", "benchmarks.streaming"])
    assert not loads_a_model(["python", "-m", "clients.replay", "talk.wav", "--url", "ws://x"])
    assert not loads_a_model(["python", "streamer.py"])
    assert not loads_a_model(["ffmpeg", "-i", "a.wav", "-m", "x"])


def test_every_collected_test_using_a_slow_fixture_is_marked_slow(request: pytest.FixtureRequest) -> None:
    users = [item for item in request.session.items if SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))]
    assert all(item.get_closest_marker("slow") is not None for item in users), [i.nodeid for i in users if not i.get_closest_marker("slow")]
    assert request.node.get_closest_marker("slow") is None  # this test uses none: not marked, so guarded
