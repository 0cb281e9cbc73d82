"""The shared evaluation clips (../shared/data/manifest.jsonl), read in place."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

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
            )
        )
    return clips


def clips_of(kind: str, language: str | None = None) -> list[Clip]:
    return [c for c in load_manifest() if c.kind == kind and (language is None or c.language == language)]


def long_clip_reference(clip: Clip) -> str:
    """The reference text of a `long` clip: its utterances' `short` texts, in order."""
    by_id = {c.id: c for c in load_manifest()}
    return " ".join(by_id[u.id].text for u in clip.segments)
