"""Per-session journals: fsync'd appends, reading back after a crash, ids, retention, the HTTP handler."""

from __future__ import annotations

import json
import os

import pytest

from streamer.server.http import transcript_response
from streamer.state.journal import InvalidSessionId, Journal
from wire import Stable, WordTiming

SID = "0123456789abcdef0123456789abcdef"


def stable(i: int, text: str) -> Stable:
    return Stable(i, float(i), i + 0.5, text, (WordTiming(text, float(i), i + 0.5, 0.9),), "en")


def test_append_then_read_back(tmp_path) -> None:
    journal = Journal(tmp_path / "j", retention_seconds=3600)
    writer = journal.open(SID, "alice", now=123.0)
    writer.append(stable(0, " Hello"))
    writer.append(stable(1, " world."))
    # Readable while still open: every append is on disk when it returns.
    transcript = journal.read(SID)
    assert transcript.text == " Hello world."
    assert transcript.key_id == "alice" and transcript.created == 123.0 and transcript.last_stable_id == 1
    assert transcript.segments[1].words[0]["word"] == " world."
    with pytest.raises(ValueError):
        writer.append(stable(1, " again"))
    writer.close()
    assert oct(os.stat(journal.path_of(SID)).st_mode & 0o777) == "0o600"


def test_torn_last_line_is_skipped(tmp_path) -> None:
    journal = Journal(tmp_path, retention_seconds=3600)
    writer = journal.open(SID, None)
    writer.append(stable(0, " kept"))
    writer.close()
    with open(journal.path_of(SID), "ab") as fh:
        fh.write(b'{"type": "stable", "id": 1, "te')  # what kill -9 mid-write leaves
    assert journal.read(SID).text == " kept"
    with open(journal.path_of(SID), "ab") as fh:
        fh.write(b"\n" + json.dumps({"type": "stable", "id": 2}).encode() + b"\n")
    with pytest.raises(ValueError):  # a torn line in the middle is corruption, not a crash
        journal.read(SID)


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "..", "", "short", "x" * 65, "abc def ghi", "%2e%2e%2fsecret"])
def test_session_ids_cannot_escape(tmp_path, bad: str) -> None:
    journal = Journal(tmp_path, retention_seconds=3600)
    with pytest.raises(InvalidSessionId):
        journal.path_of(bad)
    response = transcript_response(journal, f"/v1/sessions/{bad}/transcript", None)
    assert response.status_code in (400, 404)


def test_retention(tmp_path) -> None:
    journal = Journal(tmp_path, retention_seconds=100)
    old, new = "a" * 32, "b" * 32
    for sid in (old, new):
        journal.open(sid, None).close()
    os.utime(journal.path_of(old), (1000.0, 1000.0))
    os.utime(journal.path_of(new), (1090.0, 1090.0))
    assert journal.cleanup(now=1150.0) == 1
    assert journal.read(old) is None and journal.read(new) is not None


def test_http_handler(tmp_path) -> None:
    journal = Journal(tmp_path, retention_seconds=3600)
    writer = journal.open(SID, "alice")
    writer.append(stable(0, " Hi."))
    writer.close()
    ok = transcript_response(journal, f"/v1/sessions/{SID}/transcript", "alice")
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "application/json"
    body = json.loads(ok.body)
    assert body["text"] == " Hi." and body["last_stable_id"] == 0 and body["segments"][0]["id"] == 0
    # another key (or no key) sees the same 404 as for an unknown session
    assert transcript_response(journal, f"/v1/sessions/{SID}/transcript", "bob").status_code == 404
    assert transcript_response(journal, f"/v1/sessions/{'c' * 32}/transcript", "alice").status_code == 404
    assert transcript_response(journal, f"/v1/sessions/{SID}/other", "alice").status_code == 400
