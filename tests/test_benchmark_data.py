"""The long clips the streaming benchmark builds from short ones (`benchmarks.data.joined_clip`)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data import clips_of, data_available, joined_clip, long_clip_reference
from model.audio import SAMPLE_RATE, load_audio

pytestmark = pytest.mark.skipif(not data_available(), reason="shared evaluation data not found")


def test_a_joined_clip_is_its_parts_in_a_seeded_order_with_short_pauses(tmp_path) -> None:
    parts = clips_of("short", "en")[:6]
    clip = joined_clip("joined", parts, seed=3, directory=tmp_path)
    again = joined_clip("again", parts, seed=3, directory=tmp_path)
    other = joined_clip("other", parts, seed=4, directory=tmp_path)
    assert [u.id for u in clip.segments] == [u.id for u in again.segments] != [u.id for u in other.segments]
    assert sorted(u.id for u in clip.segments) == sorted(p.id for p in parts)
    audio = load_audio(clip.path)
    assert len(audio) / SAMPLE_RATE == pytest.approx(clip.duration_s, abs=1e-3)
    by_id = {p.id: p for p in parts}
    for before, after in zip(clip.segments, clip.segments[1:]):
        assert 0.5 - 1e-3 <= after.start_s - before.end_s <= 1.5 + 1e-3
        assert not audio[int(before.end_s * SAMPLE_RATE) + 1 : int(after.start_s * SAMPLE_RATE) - 1].any()
    for u in clip.segments:
        piece = audio[round(u.start_s * SAMPLE_RATE) : round(u.end_s * SAMPLE_RATE)]
        assert np.abs(piece - load_audio(by_id[u.id].path)).max() < 1e-4  # 16-bit rounding only
    assert long_clip_reference(clip) == " ".join(by_id[u.id].text for u in clip.segments) == clip.text
