"""streamer/engine/worker.py: the committed words a decode begins with, as tokens, and decoding with them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.audio import SAMPLE_RATE, load_audio
from model.decoding import model_tokenizer
from model.transcribe import WindowOptions, decode_windows
from streamer.engine.worker import context_tokens, to_hypothesis
from streamer.stream.tick import TickRequest, Word
from tests.conftest import clip_by_id


def request(audio: np.ndarray, window_start: float, context: tuple[Word, ...], draft: tuple[int, ...] = ()) -> TickRequest:
    return TickRequest("s", 1, audio, window_start, "", "en", "transcribe", False, None, 0, draft=draft, context=context)


def test_context_is_one_segment_per_committed_segment_and_the_last_is_left_open(tiny_en) -> None:
    tokenizer = model_tokenizer(tiny_en)
    begin = tokenizer.timestamp_begin
    words = (
        Word(" He", 10.5, 10.7, 0.9),
        Word(" was.", 10.7, 11.0, 0.9, ends_segment=True),
        Word(" Not", 11.0, 11.3, 0.9),  # starts where the last segment ended: timestamps may meet
        Word(" an", 11.3, 11.4, 0.9, ends_segment=True),
    )
    tokens = context_tokens(request(np.zeros(5 * SAMPLE_RATE, np.float32), 10.0, words), tokenizer)
    assert tokens == [begin + 25, *tokenizer.encode(" He was."), begin + 50, begin + 50, *tokenizer.encode(" Not an")]
    # A draft that spells the context gives its own tokens, its timestamps included.
    draft = (begin + 24, *tokenizer.encode(" He was."), begin + 49, begin + 51, *tokenizer.encode(" Not an"), begin + 70, begin + 71)
    assert context_tokens(request(np.zeros(5 * SAMPLE_RATE, np.float32), 10.0, words, draft), tokenizer) == list(draft[: len(tokens)])
    assert context_tokens(request(np.zeros(SAMPLE_RATE, np.float32), 10.0, ()), tokenizer) == []


def test_a_decode_goes_on_after_its_context(tiny_en, shared_data) -> None:
    """The decode of a window that begins with committed words gives them back first, as they
    were given, and then the rest of the speech."""
    audio = load_audio(clip_by_id(shared_data, "ls_1272-128104-0000").path)
    options = WindowOptions(word_timestamps=True)
    with torch.inference_mode():
        plain = to_hypothesis(decode_windows(tiny_en, [audio], options, [[]])[0])
        tokenizer = model_tokenizer(tiny_en)
        context = tuple(replace(w, ends_segment=False) for w in plain.words[:4])
        forced = context_tokens(request(audio, 0.0, context), tokenizer)
        result = to_hypothesis(decode_windows(tiny_en, [audio], options, [[]], None, [forced])[0])
    assert [w.text for w in result.words[:4]] == [w.text for w in context]
    assert [w.text for w in result.words] == [w.text for w in plain.words]
    assert len(result.words) > 8
    assert result.words[4].start == pytest.approx(plain.words[4].start, abs=0.1)
