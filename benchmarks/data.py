"""The shared evaluation clips (../shared/data/manifest.jsonl), read in place."""

from __future__ import annotations

import json
import os
import random
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ../shared/data beside the checkout; WHISPER_STREAMER_DATA overrides it.
DATA_DIR = Path(
    os.environ.get("WHISPER_STREAMER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@dataclass(frozen=True)
class Utterance:
    """One piece of a `long` clip: where it lies and which `short` clip holds its text."""

    id: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    duration_s: float
    language: str
    text: str
    kind: str  # short | long | multilingual | nonspeech
    segments: tuple[Utterance, ...] = field(default=())
    text_punct: str | None = None  # the text with case and punctuation, where `text` lacks them


def data_available() -> bool:
    return (DATA_DIR / "manifest.jsonl").is_file()


def load_manifest(data_dir: Path = DATA_DIR) -> list[Clip]:
    """All clips of the manifest; raises FileNotFoundError with a clear message when absent."""
    manifest = data_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"shared evaluation data not found: {manifest} (expected ../shared/data)")
    clips = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        clips.append(
            Clip(
                id=entry["id"],
                path=data_dir / entry["path"],
                duration_s=float(entry["duration_s"]),
                language=entry["language"],
                text=entry["text"],
                kind=entry["kind"],
                segments=tuple(
                    Utterance(s["id"], float(s["start_s"]), float(s["end_s"])) for s in entry.get("segments", ())
                ),
                text_punct=entry.get("text_punct"),
            )
        )
    return clips


def clips_of(kind: str, language: str | None = None) -> list[Clip]:
    return [c for c in load_manifest() if c.kind == kind and (language is None or c.language == language)]


def long_clip_reference(clip: Clip, *, punctuated: bool = False) -> str:
    """The reference text of a `long` clip: its utterances' `short` texts, in order (with
    `punctuated`, each one's `text_punct` where it has one)."""
    by_id = {c.id: c for c in load_manifest()}
    parts = [by_id[u.id] for u in clip.segments]
    return " ".join((c.text_punct or c.text) if punctuated else c.text for c in parts)


def joined_clip(clip_id: str, parts: Sequence[Clip], seed: int, directory: Path) -> Clip:
    """A `long` clip built as the shared ones are: `parts` (short clips) in a seeded random order,
    joined by seeded random pauses of 0.5-1.5 s of silence, written to `directory` as 16 kHz WAV.
    More long-form speech for the streaming benchmark, with other neighbours for each utterance."""
    from model.audio import SAMPLE_RATE, load_audio  # the data index itself needs no model code

    rng = random.Random(seed)
    order = list(parts)
    rng.shuffle(order)
    pieces: list[np.ndarray] = []
    segments: list[Utterance] = []
    position = 0
    for i, part in enumerate(order):
        if i:
            pause = round(rng.uniform(0.5, 1.5) * SAMPLE_RATE)
            pieces.append(np.zeros(pause, np.float32))
            position += pause
        audio = load_audio(part.path)
        segments.append(Utterance(part.id, position / SAMPLE_RATE, (position + len(audio)) / SAMPLE_RATE))
        pieces.append(audio)
        position += len(audio)
    path = directory / f"{clip_id}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(np.concatenate(pieces), -1, 1) * 32767).astype("<i2").tobytes())
    text = " ".join(part.text for part in order)
    return Clip(clip_id, path, position / SAMPLE_RATE, order[0].language, text, "long", tuple(segments))
