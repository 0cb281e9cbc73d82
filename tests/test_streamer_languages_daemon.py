"""The multilingual base model: the worker's language-ID, and the real daemon with languages in a row and translation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from benchmarks.daemon import Daemon
from benchmarks.data import Clip
from benchmarks.wer import error_rate, normalize_any
from model.audio import SAMPLE_RATE, load_audio

from .conftest import clip_by_id
from .test_streamer_daemon import check_well_formed, stream

pytestmark = pytest.mark.slow

PAUSE = 2.0  # s between the clips, as the issue's bar has it


@pytest.fixture(scope="module")
def base_daemon(shared_data: list[Clip]) -> Iterator[Daemon]:
    try:
        server = Daemon("--max-tick-lag", "600", model="base")
    except RuntimeError as error:
        pytest.skip(f"the base model is not available: {error}")
    yield server
    server.stop()


def test_spanish_german_french_in_a_row_each_in_its_own_language(base_daemon: Daemon, shared_data: list[Clip]) -> None:
    parts = [clip_by_id(shared_data, f"picovoice_{code}") for code in ("es", "de", "fr")]
    pieces, spans, position = [], [], 0.0
    for i, part in enumerate(parts):
        if i:
            pieces.append(np.zeros(int(PAUSE * SAMPLE_RATE), np.float32))
            position += PAUSE
        audio = load_audio(part.path)
        spans.append((position, position + len(audio) / SAMPLE_RATE))
        pieces.append(audio)
        position += len(audio) / SAMPLE_RATE
    transcript = asyncio.run(stream(base_daemon.url, np.concatenate(pieces), speed=1.0))
    check_well_formed(transcript)
    assert [m["language"] for m in transcript.of("language")] == ["es", "de", "fr"]
    for k, (part, (start, _)) in enumerate(zip(parts, spans, strict=True)):
        until = spans[k + 1][0] if k + 1 < len(spans) else float("inf")
        mine = [s for s in transcript.of("stable") if start - 0.5 <= s["start"] < until - 0.3]
        assert mine and {s["language"] for s in mine} == {part.language}, (part.id, mine)
        text = "".join(s["text"] for s in mine)
        assert error_rate(part.language, [part.text], [text]) <= 0.6, (part.id, text)


def test_translate_gives_english_stable_text(base_daemon: Daemon, shared_data: list[Clip]) -> None:
    clip = clip_by_id(shared_data, "picovoice_fr")
    transcript = asyncio.run(stream(base_daemon.url, load_audio(clip.path), speed=1.0, extra_start={"task": "translate"}))
    check_well_formed(transcript)
    assert [m["language"] for m in transcript.of("language")] == ["fr"]  # the language spoken
    words = set(normalize_any(transcript.text, "en").split())
    french = {w for w in normalize_any(clip.text, "fr").split() if len(w) > 3} - {"consulat"}
    assert words & {"the", "of", "and", "he", "became"}, transcript.text
    assert not words & french, transcript.text


def test_worker_detects_among_candidates_and_on_an_utterance_after_context(base_model, shared_data: list[Clip]) -> None:
    from streamer.config import ModelConfig, StreamConfig
    from streamer.engine.worker import ModelWorker
    from streamer.stream.tick import TickRequest

    spanish = load_audio(clip_by_id(shared_data, "picovoice_es").path)
    german = load_audio(clip_by_id(shared_data, "picovoice_de").path)
    worker = ModelWorker(ModelConfig(model="base"), StreamConfig())
    # The first 1.5 s of the Spanish clip read as Arabic (0.93) to base: among es and pt only here.
    early = TickRequest("a", 1, spanish[: int(1.5 * SAMPLE_RATE)], 0.0, "", None, "transcribe", False, None, 1, detect_language=True, languages=("es", "pt"))
    # German after Spanish in one window, decoded in Spanish: the ID of the German part alone.
    joined = np.concatenate([spanish, german])
    after = TickRequest("b", 1, joined, 10.0, "", "es", "transcribe", False, None, 1, detect_language=True, detect_from=10.0 + len(spanish) / SAMPLE_RATE)
    first, second = worker.decode(base_model, [early, after]).hypotheses
    assert first.language in ("es", "pt") and first.language_probs is not None
    assert set(first.language_probs) == {"es", "pt"} and sum(first.language_probs.values()) == pytest.approx(1.0, abs=1e-3)
    probs = second.language_probs
    assert second.language == "es" and probs is not None
    assert max(probs, key=lambda k: probs[k]) == "de"
