"""Transcript writers: exact SRT/VTT/JSON/TXT formats, caption limits, incremental files.

The SRT and VTT readers here are written from the formats' specifications, independently of
`captions.writers`, so a round trip checks the files other tools will read.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captions.writers import (
    CueLimits,
    TranscriptFormat,
    TranscriptWriter,
    caption_cues,
    line_text,
    srt_timestamp,
    vtt_timestamp,
    write_json,
    write_srt,
    write_txt,
    write_vtt,
)


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float = 0.9


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default=())
    speaker: str | None = None


@dataclass(frozen=True)
class ParsedCue:
    start: float
    end: float
    lines: tuple[str, ...]


_SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(groups: tuple[str, ...]) -> float:
    h, m, s, ms = (int(g) for g in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[ParsedCue]:
    cues = []
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert text == "" or text.endswith("\n\n"), "an SRT file ends with a blank line"
    for n, block in enumerate(blocks, start=1):
        index, timing, *lines = block.split("\n")
        assert index == str(n), f"cue numbers count from 1: {index!r} at {n}"
        match = re.fullmatch(_SRT_TIME + " --> " + _SRT_TIME, timing)
        assert match, f"bad SRT timing line {timing!r}"
        assert lines and all(line.strip() for line in lines)
        cues.append(ParsedCue(_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), tuple(lines)))
    return cues


def parse_vtt(text: str) -> list[ParsedCue]:
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in [b for b in text[len("WEBVTT\n\n") :].split("\n\n") if b.strip()]:
        timing, *lines = block.split("\n")
        match = re.fullmatch(_VTT_TIME + " --> " + _VTT_TIME, timing)
        assert match, f"bad VTT timing line {timing!r}"
        visible = tuple(re.sub(r"<[^>]+>", "", line) for line in lines)
        cues.append(ParsedCue(_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), visible))
    return cues


def assert_caption_rules(cues: list[ParsedCue], limits: CueLimits = CueLimits()) -> None:
    previous_end = 0.0
    for cue in cues:
        assert cue.start >= previous_end - 1e-9, f"cue {cue} overlaps the previous one (ended {previous_end})"
        assert cue.end > cue.start
        assert cue.end - cue.start <= limits.max_duration_s + 1e-9
        assert 1 <= len(cue.lines) <= limits.max_lines
        assert all(len(line) <= limits.max_line_chars for line in cue.lines), cue.lines
        previous_end = cue.end


def words_of(text: str, start: float, seconds_per_word: float) -> tuple[Word, ...]:
    return tuple(
        Word(f" {w}", round(start + i * seconds_per_word, 3), round(start + (i + 1) * seconds_per_word - 0.05, 3))
        for i, w in enumerate(text.split())
    )


LONG = (
    "the quick brown fox jumps over the lazy dog while the farmer watches from the porch "
    "and wonders whether the harvest will come in before the first frost of the year arrives"
)


def test_timestamps_are_exact() -> None:
    assert srt_timestamp(1000) == "00:00:01,000"
    assert vtt_timestamp(1000) == "00:00:01.000"
    assert srt_timestamp(3_723_045) == "01:02:03,045"
    assert vtt_timestamp(360_000_000 - 1) == "99:59:59.999"


def test_srt_short_segments_exact_text() -> None:
    out = io.StringIO()
    write_srt([Segment(0.0, 1.5, " Hello world."), Segment(1.5, 3.25, " Second line.")], out)
    assert out.getvalue() == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello world.\n\n" "2\n00:00:01,500 --> 00:00:03,250\nSecond line.\n\n"
    )


def test_vtt_header_escaping_and_speaker_voice() -> None:
    out = io.StringIO()
    write_vtt([Segment(0.0, 1.0, " a < b & c", speaker="Alice")], out)
    assert out.getvalue() == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Alice>a &lt; b &amp; c\n\n"


def test_long_segment_with_words_splits_at_word_times() -> None:
    segment = Segment(2.0, 2.0 + 0.4 * len(LONG.split()), LONG, words_of(LONG, 2.0, 0.4))
    out = io.StringIO()
    write_srt([segment], out)
    cues = parse_srt(out.getvalue())
    assert len(cues) >= 3
    assert_caption_rules(cues)
    assert " ".join(" ".join(c.lines) for c in cues) == LONG
    # Cue boundaries fall on word starts.
    word_starts = {w.start for w in segment.words}
    assert all(c.start in word_starts for c in cues[1:])
    assert cues[0].start == 2.0 and cues[-1].end == pytest.approx(segment.end)


def test_long_segment_without_words_splits_proportionally() -> None:
    segment = Segment(0.0, 30.0, LONG)  # 30 s: the duration limit forces the cuts
    out = io.StringIO()
    write_vtt([segment], out)
    cues = parse_vtt(out.getvalue())
    assert_caption_rules(cues)
    assert len(cues) >= 5
    assert " ".join(" ".join(c.lines) for c in cues) == LONG
    assert cues[0].start == 0.0


def test_overlapping_segments_come_out_ordered_and_disjoint() -> None:
    segments = [Segment(5.0, 8.0, " later", speaker="Bob"), Segment(0.0, 6.0, " first one", speaker="Alice")]
    out = io.StringIO()
    write_srt(segments, out)
    cues = parse_srt(out.getvalue())
    assert [c.lines[0] for c in cues] == ["Alice: first one", "Bob: later"]
    assert_caption_rules(cues)


def test_word_longer_than_a_line_is_cut() -> None:
    url = "https://example.org/" + "x" * 100
    cues = caption_cues([Segment(0.0, 2.0, f" see {url}")])
    assert all(len(line) <= 42 for cue in cues for line in cue.lines)
    assert "".join("".join(cue.lines) for cue in cues).replace(" ", "") == f"see{url}"


def test_json_and_txt() -> None:
    segments = [Segment(1.0, 2.0, " Two.", words_of("Two.", 1.0, 0.5), speaker="B"), Segment(0.0, 1.0, " One.")]
    out = io.StringIO()
    write_json(segments, out)
    document = json.loads(out.getvalue())
    assert document["text"] == "One. Two."
    assert [s["text"] for s in document["segments"]] == [" One.", " Two."]
    assert document["segments"][1]["speaker"] == "B"
    assert document["segments"][1]["words"][0] == {"word": " Two.", "start": 1.0, "end": 1.45, "probability": 0.9}
    out = io.StringIO()
    write_txt(segments, out)
    assert out.getvalue() == "One.\nB: Two.\n"


def test_writers_accept_paths(tmp_path) -> None:
    target = tmp_path / "t.srt"
    write_srt([Segment(0.0, 1.0, " Hi.")], target)
    assert parse_srt(target.read_text()) == [ParsedCue(0.0, 1.0, ("Hi.",))]


def test_cue_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        CueLimits(max_line_chars=0)
    with pytest.raises(ValueError):
        CueLimits(max_duration_s=0)
    with pytest.raises(ValueError):
        TranscriptFormat.from_path("x.doc")


@pytest.mark.parametrize("suffix", ["srt", "vtt", "json", "txt"])
def test_incremental_writer_file_is_complete_after_every_segment(tmp_path, suffix: str) -> None:
    path = tmp_path / f"live.{suffix}"
    writer = TranscriptWriter(path)
    assert path.exists()
    segments = [
        Segment(0.0, 2.0, " Good morning everyone.", words_of("Good morning everyone.", 0.0, 0.6)),
        Segment(2.0, 14.0, LONG),
        Segment(14.0, 15.0, " Thanks."),
    ]
    whole = io.StringIO()
    for n, segment in enumerate(segments, start=1):
        writer.add(segment)
        # What is on disk now (another process reading it, or after a crash) equals the whole-file writer's output.
        whole.seek(0)
        whole.truncate()
        {"srt": write_srt, "vtt": write_vtt, "json": write_json, "txt": write_txt}[suffix](segments[:n], whole)
        assert path.read_text() == whole.getvalue()
    if suffix == "srt":
        assert_caption_rules(parse_srt(path.read_text()))
    if suffix == "vtt":
        assert_caption_rules(parse_vtt(path.read_text()))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "temporary files are cleaned up"


def test_incremental_writer_reorders_late_segments(tmp_path) -> None:
    path = tmp_path / "meeting.srt"
    writer = TranscriptWriter(path)
    writer.add(Segment(3.0, 4.0, " from Bob", speaker="Bob"))
    writer.add(Segment(0.0, 2.5, " from Alice", speaker="Alice"))  # Alice's stream lagged behind
    writer.add(Segment(5.0, 6.0, " Bob again", speaker="Bob"))
    cues = parse_srt(path.read_text())
    assert [c.lines[0] for c in cues] == ["Alice: from Alice", "Bob: from Bob", "Bob: Bob again"]
    assert_caption_rules(cues)


_word = st.text(alphabet=st.characters(categories=("L", "N", "P")), min_size=1, max_size=60)


@st.composite
def segment_lists(draw) -> list[Segment]:
    segments, t = [], 0.0
    for _ in range(draw(st.integers(1, 6))):
        words = draw(st.lists(_word, min_size=1, max_size=40))
        duration = draw(st.floats(0.0, 40.0))
        t += draw(st.floats(-1.0, 3.0))  # gaps, and overlaps between segments
        t = max(t, 0.0)
        with_words = draw(st.booleans())
        timed = tuple(
            Word(" " + w, t + duration * i / len(words), t + duration * (i + 1) / len(words)) for i, w in enumerate(words)
        )
        segments.append(Segment(t, t + duration, "".join(" " + w for w in words), timed if with_words else ()))
        t += duration
    return segments


@settings(max_examples=150, deadline=None)
@given(segments=segment_lists(), width=st.integers(10, 60), lines=st.integers(1, 3), seconds=st.floats(1.0, 10.0))
def test_any_segments_round_trip_within_limits(segments: list[Segment], width: int, lines: int, seconds: float) -> None:
    limits = CueLimits(max_line_chars=width, max_lines=lines, max_duration_s=seconds)
    out = io.StringIO()
    write_srt(segments, out, limits)
    cues = parse_srt(out.getvalue())
    assert_caption_rules(cues, limits)
    # No word is lost or reordered (a word wider than a line is cut, so compare without spaces);
    # a text without word timings loses only the sentence mark it may begin with (`line_text`).
    expected = "".join("".join((s.text if s.words else line_text(s.text)).split()) for s in sorted(segments, key=lambda s: s.start))
    assert "".join("".join(line.replace(" ", "") for line in c.lines) for c in cues) == expected


def test_a_held_sentence_mark_joins_the_text_but_begins_no_line(tmp_path: Path) -> None:
    # A live stream sends the full stop that ends a sentence with the text after it, or alone.
    segments = [Segment(0.0, 1.0, " It ended"), Segment(1.5, 2.5, ". The next one"), Segment(2.5, 2.5, ".")]
    out = io.StringIO()
    write_txt(segments, out)
    assert out.getvalue() == "It ended\nThe next one\n"
    srt = io.StringIO()
    write_srt(segments, srt)
    assert [c.lines for c in parse_srt(srt.getvalue())] == [("It ended",), ("The next one",)]
    path = tmp_path / "t.json"
    write_json(segments, path)
    assert json.loads(path.read_text())["text"] == "It ended. The next one."
