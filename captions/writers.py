"""Transcript files: SRT, WebVTT, JSON and TXT, whole (`write_*`) or as segments arrive (`TranscriptWriter`).

Segments are any objects with `.start`, `.end` (seconds), `.text`, optional `.words` (each with
`.word .start .end .probability`) and optional `.speaker` (a label, for merged meetings).
Caption formats follow broadcast limits (`CueLimits`): long segments are split into cues at
word boundaries, using word timings when present and character proportions otherwise; cues
come out ordered and non-overlapping.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO


class WordLike(Protocol):
    word: str
    start: float
    end: float
    probability: float


class SegmentLike(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class CueLimits:
    max_line_chars: int = 42
    max_lines: int = 2
    max_duration_s: float = 7.0

    def __post_init__(self) -> None:
        if self.max_line_chars < 1:
            raise ValueError(f"max_line_chars must be at least 1, got {self.max_line_chars}")
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {self.max_lines}")
        if not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s must be positive, got {self.max_duration_s}")


@dataclass(frozen=True)
class Cue:
    """One caption on screen: integer milliseconds, so rounding can never make cues overlap."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str | None = None


class TranscriptFormat(enum.Enum):
    SRT = "srt"
    VTT = "vtt"
    JSON = "json"
    TXT = "txt"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> TranscriptFormat:
        suffix = Path(path).suffix.lower().lstrip(".")
        try:
            return cls(suffix)
        except ValueError:
            raise ValueError(f"unknown transcript format {suffix!r} for {path}: use .srt, .vtt, .json or .txt") from None


# ---- timestamps --------------------------------------------------------------------------------


def _clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def srt_timestamp(ms: int) -> str:
    return _clock(ms, ",")


def vtt_timestamp(ms: int) -> str:
    return _clock(ms, ".")


def _to_ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


# ---- splitting segments into cues --------------------------------------------------------------


_LEADING_MARKS = re.compile(r"^\s*[.?!…]+")


def line_text(text: str) -> str:
    """A segment's text as a line of its own (a cue, a TXT line, a terminal line): stripped, and
    without the sentence mark a live stream may begin it with (the end of the sentence before,
    which waited for this text: `start.hold_sentence_end`); a new line marks that end already."""
    return _LEADING_MARKS.sub("", text).strip()


@dataclass(frozen=True)
class _Token:
    text: str  # with its leading whitespace, as Whisper writes words
    start_ms: int
    end_ms: int


def _tokens(segment: SegmentLike) -> list[_Token]:
    words: Sequence[WordLike] = getattr(segment, "words", None) or ()
    start_ms, end_ms = _to_ms(segment.start), _to_ms(segment.end)
    if words:
        tokens = [_Token(w.word, _to_ms(w.start), _to_ms(w.end)) for w in words if w.word.strip()]
    else:
        # No word timings: time each word by its share of the characters.
        pieces = re.findall(r"\s*\S+", line_text(segment.text))
        total = sum(len(p) for p in pieces) or 1
        tokens, offset = [], 0
        for piece in pieces:
            a, offset = offset, offset + len(piece)
            tokens.append(_Token(piece, start_ms + (end_ms - start_ms) * a // total, start_ms + (end_ms - start_ms) * offset // total))
    return tokens


def _hard_split(token: _Token, width: int) -> list[_Token]:
    """A single word wider than a line (URLs, CJK runs) is cut into line-sized pieces."""
    text = token.text.strip()
    if len(text) <= width:
        return [token]
    chunks = [text[i : i + width] for i in range(0, len(text), width)]
    span = token.end_ms - token.start_ms
    out = []
    for i, chunk in enumerate(chunks):
        a = token.start_ms + span * i // len(chunks)
        b = token.start_ms + span * (i + 1) // len(chunks)
        out.append(_Token(chunk if i else token.text[: len(token.text) - len(text)] + chunk, a, b))
    return out


def _wrap(tokens: Sequence[_Token], width: int) -> list[str]:
    """Greedy wrap of tokens into lines of at most `width` characters."""
    lines: list[str] = []
    current = ""
    for token in tokens:
        candidate = (current + token.text) if current else token.text.strip()
        if current and len(candidate.strip()) > width:
            lines.append(current.strip())
            current = token.text.strip()
        else:
            current = candidate
    if current.strip():
        lines.append(current.strip())
    return lines


def _balanced_lines(tokens: Sequence[_Token], limits: CueLimits) -> tuple[str, ...]:
    """Two-line cues are broken where the longer line is shortest: easier to read than greedy."""
    greedy = _wrap(tokens, limits.max_line_chars)
    if len(greedy) != 2:
        return tuple(greedy)
    best: tuple[str, str] | None = None
    for cut in range(1, len(tokens)):
        first = "".join(t.text for t in tokens[:cut]).strip()
        second = "".join(t.text for t in tokens[cut:]).strip()
        if len(first) <= limits.max_line_chars and len(second) <= limits.max_line_chars:
            if best is None or max(len(first), len(second)) < max(len(best[0]), len(best[1])):
                best = (first, second)
    return best if best is not None else tuple(greedy)


def segment_cues(segment: SegmentLike, limits: CueLimits = CueLimits()) -> list[Cue]:
    """One segment as cues within `limits`, before ordering against its neighbours."""
    tokens = [piece for token in _tokens(segment) for piece in _hard_split(token, limits.max_line_chars)]
    if not tokens:
        return []
    max_ms = math.floor(limits.max_duration_s * 1000 + 1e-6)  # never above the limit after rounding
    seg_start, seg_end = _to_ms(segment.start), _to_ms(segment.end)
    groups: list[list[_Token]] = [[]]
    group_start = min(seg_start, tokens[0].start_ms)
    for token in tokens:
        group = groups[-1]
        fits_text = len(_wrap([*group, token], limits.max_line_chars)) <= limits.max_lines
        fits_time = token.end_ms - group_start <= max_ms
        if group and not (fits_text and fits_time):
            groups.append([token])
            group_start = token.start_ms
        else:
            group.append(token)
    speaker = getattr(segment, "speaker", None)
    cues = []
    for i, group in enumerate(groups):
        start = seg_start if i == 0 else group[0].start_ms
        start = min(start, group[0].start_ms)
        # Cues tile the segment (no flicker between them) but never outlast the duration limit.
        end = max(seg_end, group[-1].end_ms) if i == len(groups) - 1 else groups[i + 1][0].start_ms
        end = min(end, start + max_ms)
        cues.append(Cue(start, end, _balanced_lines(group, limits), speaker))
    return cues


def _after(cue: Cue, previous_end_ms: int) -> Cue:
    """The cue moved to start no earlier than the previous one ended (overlapping speakers, jittery timings)."""
    start = max(cue.start_ms, previous_end_ms)
    end = max(cue.end_ms, start + 1)
    return Cue(start, end, cue.lines, cue.speaker)


def caption_cues(segments: Iterable[SegmentLike], limits: CueLimits = CueLimits()) -> list[Cue]:
    """All segments as ordered, non-overlapping cues within `limits`."""
    ordered = sorted(segments, key=lambda s: s.start)  # stable: equal starts keep arrival order
    cues: list[Cue] = []
    for segment in ordered:
        for cue in segment_cues(segment, limits):
            cues.append(_after(cue, cues[-1].end_ms if cues else 0))
    return cues


# ---- rendering ---------------------------------------------------------------------------------


def _srt_block(index: int, cue: Cue) -> str:
    lines = list(cue.lines)
    if cue.speaker:
        lines[0] = f"{cue.speaker}: {lines[0]}"
    return f"{index}\n{srt_timestamp(cue.start_ms)} --> {srt_timestamp(cue.end_ms)}\n" + "\n".join(lines) + "\n\n"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_block(cue: Cue) -> str:
    lines = [_vtt_escape(line) for line in cue.lines]
    if cue.speaker:
        lines[0] = f"<v {_vtt_escape(cue.speaker)}>{lines[0]}"
    return f"{vtt_timestamp(cue.start_ms)} --> {vtt_timestamp(cue.end_ms)}\n" + "\n".join(lines) + "\n\n"


VTT_HEADER = "WEBVTT\n\n"


def _txt_line(segment: SegmentLike) -> str:
    text = line_text(segment.text)
    speaker = getattr(segment, "speaker", None)
    return (f"{speaker}: {text}" if speaker else text) + "\n"


def _segment_json(segment: SegmentLike) -> dict[str, Any]:
    body: dict[str, Any] = {"start": segment.start, "end": segment.end, "text": segment.text}
    speaker = getattr(segment, "speaker", None)
    if speaker is not None:
        body["speaker"] = speaker
    words = getattr(segment, "words", None)
    if words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end, "probability": w.probability} for w in words]
    return body


def _json_document(segments: Sequence[SegmentLike]) -> str:
    ordered = sorted(segments, key=lambda s: s.start)
    document = {"text": "".join(s.text for s in ordered).strip(), "segments": [_segment_json(s) for s in ordered]}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render(segments: Sequence[SegmentLike], fmt: TranscriptFormat, limits: CueLimits = CueLimits()) -> str:
    """The whole file's text."""
    if fmt is TranscriptFormat.SRT:
        return "".join(_srt_block(i, cue) for i, cue in enumerate(caption_cues(segments, limits), start=1))
    if fmt is TranscriptFormat.VTT:
        return VTT_HEADER + "".join(_vtt_block(cue) for cue in caption_cues(segments, limits))
    if fmt is TranscriptFormat.JSON:
        return _json_document(segments)
    return "".join(_txt_line(s) for s in sorted(segments, key=lambda s: s.start) if line_text(s.text))


def _write(segments: Sequence[SegmentLike], file: TextIO | str | os.PathLike[str], fmt: TranscriptFormat, limits: CueLimits) -> None:
    text = render(segments, fmt, limits)
    if isinstance(file, (str, os.PathLike)):
        Path(file).write_text(text, encoding="utf-8")
    else:
        file.write(text)


def write_srt(segments: Sequence[SegmentLike], file: TextIO | str | os.PathLike[str], limits: CueLimits = CueLimits()) -> None:
    _write(segments, file, TranscriptFormat.SRT, limits)


def write_vtt(segments: Sequence[SegmentLike], file: TextIO | str | os.PathLike[str], limits: CueLimits = CueLimits()) -> None:
    _write(segments, file, TranscriptFormat.VTT, limits)


def write_json(segments: Sequence[SegmentLike], file: TextIO | str | os.PathLike[str]) -> None:
    _write(segments, file, TranscriptFormat.JSON, CueLimits())


def write_txt(segments: Sequence[SegmentLike], file: TextIO | str | os.PathLike[str]) -> None:
    _write(segments, file, TranscriptFormat.TXT, CueLimits())


# ---- incremental -------------------------------------------------------------------------------


def _replace_atomically(path: Path, text: str) -> None:
    """Readers (and a crash) see the old file or the new one, never half of one."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


class TranscriptWriter:
    """A transcript file kept complete as stable segments arrive, so an interruption loses nothing.

    SRT, VTT and TXT are appended and flushed per segment; JSON (one document) is rewritten
    atomically per segment, and so is any format when a segment arrives earlier than the last
    one written (merged meetings), so the file is always ordered by time.
    """

    def __init__(self, path: str | os.PathLike[str], fmt: TranscriptFormat | None = None, limits: CueLimits = CueLimits()) -> None:
        self.path = Path(path)
        self.format = fmt or TranscriptFormat.from_path(self.path)
        self.limits = limits
        self._segments: list[SegmentLike] = []
        self._cue_count = 0
        self._last_end_ms = 0
        _replace_atomically(self.path, render([], self.format, limits))

    @property
    def segments(self) -> tuple[SegmentLike, ...]:
        return tuple(self._segments)

    def add(self, segment: SegmentLike) -> None:
        in_order = not self._segments or segment.start >= self._segments[-1].start
        self._segments.append(segment)
        if self.format is TranscriptFormat.JSON or not in_order:
            self._segments.sort(key=lambda s: s.start)
            self._rewrite()
        else:
            self._append(segment)

    def _rewrite(self) -> None:
        _replace_atomically(self.path, render(self._segments, self.format, self.limits))
        if self.format in (TranscriptFormat.SRT, TranscriptFormat.VTT):
            cues = caption_cues(self._segments, self.limits)
            self._cue_count = len(cues)
            self._last_end_ms = cues[-1].end_ms if cues else 0

    def _append(self, segment: SegmentLike) -> None:
        if self.format is TranscriptFormat.TXT:
            text = _txt_line(segment) if line_text(segment.text) else ""
        else:
            blocks = []
            for cue in segment_cues(segment, self.limits):
                cue = _after(cue, self._last_end_ms)
                self._cue_count += 1
                self._last_end_ms = cue.end_ms
                blocks.append(_srt_block(self._cue_count, cue) if self.format is TranscriptFormat.SRT else _vtt_block(cue))
            text = "".join(blocks)
        if text:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(text)
                out.flush()
