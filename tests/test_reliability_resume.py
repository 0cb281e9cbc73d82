"""Detached sessions: parking, reattaching by id and key, expiry, replay of stable segments."""

from __future__ import annotations

import pytest

from streamer.server.resume import DetachedSessions, StableHistory, parse_resume
from wire import ProtocolError, Stable

SID = "0123456789abcdef0123456789abcdef"


def test_reattach_within_window_only() -> None:
    parked: DetachedSessions[str] = DetachedSessions(window_seconds=30, capacity=4)
    parked.detach(SID, "stream", "alice", now=100.0)
    assert SID in parked and len(parked) == 1 and parked.next_expiry() == 130.0
    with pytest.raises(ProtocolError) as wrong_key:
        parked.reattach(SID, "bob", now=101.0)
    assert wrong_key.value.code == 4404
    assert parked.reattach(SID, "alice", now=129.9) == "stream"
    assert SID not in parked
    with pytest.raises(ProtocolError) as again:
        parked.reattach(SID, "alice", now=130.0)  # taken already
    assert again.value.code == 4404


def test_expiry() -> None:
    parked: DetachedSessions[str] = DetachedSessions(window_seconds=10, capacity=4)
    parked.detach("a" * 32, "A", None, now=0.0)
    parked.detach("b" * 32, "B", None, now=5.0)
    assert parked.expire(now=9.0) == []
    assert parked.expire(now=10.0) == [("a" * 32, "A")]
    with pytest.raises(ProtocolError):
        parked.reattach("b" * 32, None, now=15.0)  # expired even before expire() ran
    parked.discard("b" * 32)
    assert len(parked) == 0 and parked.next_expiry() is None


def test_history_replays_after_last_id() -> None:
    history = StableHistory()
    for i in range(4):
        history.record(Stable(i, i, i + 1, f" w{i}", (), "en"))
    assert [s.id for s in history.after(-1)] == [0, 1, 2, 3]
    assert [s.id for s in history.after(1)] == [2, 3]
    assert list(history.after(3)) == []
    with pytest.raises(ProtocolError) as beyond:
        history.after(4)
    assert beyond.value.code == 4400
    with pytest.raises(ValueError):
        history.record(Stable(7, 0, 1, " x", (), "en"))


def test_parse_resume() -> None:
    assert parse_resume({"session_id": SID, "last_stable_id": 3}).last_stable_id == 3
    assert parse_resume({"session_id": SID}).last_stable_id == -1
    for bad in ({}, {"session_id": "../x"}, {"session_id": SID, "last_stable_id": "3"}, {"session_id": SID, "last_stable_id": True},
                {"session_id": SID, "last_stable_id": -2}):
        with pytest.raises(ProtocolError) as error:
            parse_resume(bad)
        assert error.value.code == 4400


def test_capacity_pushes_out_the_oldest() -> None:
    parked: DetachedSessions[str] = DetachedSessions(window_seconds=60, capacity=2)
    assert parked.detach("a" * 32, "A", None, now=0.0) == []
    assert parked.detach("b" * 32, "B", None, now=1.0) == []
    assert parked.detach("c" * 32, "C", None, now=2.0) == [("a" * 32, "A")]
    assert "a" * 32 not in parked and len(parked) == 2
