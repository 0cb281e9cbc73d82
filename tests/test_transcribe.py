"""model/transcribe.py and model/timing.py: windows, long-form audio, word timings and the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from benchmarks.wer import word_error_rate
from model.audio import SAMPLE_RATE, load_audio
from model.decoding import model_tokenizer
from model.timing import dtw, median_filter
from model.transcribe import WindowOptions, decode_windows, encoder_frames, main, split_segments, transcribe, transcribe_many
from tests.conftest import clip_by_id

# ---------------------------------------------------------------- pure pieces


def test_split_segments_follows_timestamp_pairs():
    begin = 1000
    text = [5, 6]
    ts = lambda seconds: begin + round(seconds / 0.02)  # noqa: E731
    # Two closed segments, ending on a single timestamp: the whole window is settled.
    tokens = [ts(0), *text, ts(2), ts(2), *text, ts(4)]
    pieces, seek = split_segments(tokens, begin, 10.0)
    assert [(p[0], p[1], p[3]) for p in pieces] == [(0.0, 2.0, True), (2.0, 4.0, True)]
    assert seek == 10.0
    # Text after the last pair with no closing timestamp: settled up to that pair.
    tokens = [ts(0), *text, ts(2), ts(3), *text]
    pieces, seek = split_segments(tokens, begin, 10.0)
    assert [(p[0], p[1], p[3]) for p in pieces] == [(0.0, 2.0, True), (3.0, 10.0, False)]
    assert seek == 2.0 and pieces[1][2] == (ts(3), *text)
    # No pair at all: one segment, the whole window settled.
    pieces, seek = split_segments([ts(1), *text], begin, 8.0)
    assert [(p[0], p[1], p[3]) for p in pieces] == [(1.0, 8.0, False)] and seek == 8.0
    # Timestamps past the audio are clamped to it.
    pieces, _ = split_segments([ts(1), *text, ts(9)], begin, 5.0)
    assert pieces[0][:2] == (1.0, 5.0)


@pytest.mark.parametrize("shape", [(12, 40), (1, 7), (7, 1), (30, 300)])
@pytest.mark.parametrize("integer", [False, True])
def test_dtw_finds_the_cheapest_path(shape, integer):
    rng = np.random.default_rng(sum(shape))
    cost = rng.integers(0, 3, shape).astype(float) if integer else -rng.standard_normal(shape)
    rows, cols = dtw(cost)
    # The O(N*M) loop as the reference.
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    assert cost[rows, cols].sum() == pytest.approx(total[n, m])
    assert rows[0] == 0 and cols[0] == 0 and rows[-1] == n - 1 and cols[-1] == m - 1
    steps = np.stack([np.diff(rows), np.diff(cols)])
    assert np.all((steps >= 0) & (steps <= 1)) and np.all(steps.sum(axis=0) >= 1)  # one cell at a time


def test_median_filter_reflects_at_the_edges():
    x = torch.tensor([[1.0, 9.0, 2.0, 3.0, 8.0, 4.0, 5.0]])
    # Reflect padding, as openai: the edges see [9, 1, 9] and [4, 5, 4].
    assert median_filter(x, 3).tolist() == [[9.0, 2.0, 3.0, 3.0, 4.0, 5.0, 4.0]]
    # The sorting network gives what a median over the unfolded window gives.
    y = torch.randn(3, 5, 60, generator=torch.Generator().manual_seed(0))
    for width in (3, 7):
        windows = torch.nn.functional.pad(y.reshape(-1, 1, 60), (width // 2,) * 2, mode="reflect").unfold(-1, width, 1)
        assert torch.equal(median_filter(y, width), windows.median(dim=-1).values.reshape(y.shape))


def test_encoder_windows_hold_the_audio_and_the_padding_in_5_s_steps():
    assert encoder_frames(3 * SAMPLE_RATE, None) == 3000  # whole windows, as offline
    assert encoder_frames(10 * SAMPLE_RATE, 10.0) == 2000  # 20 s
    assert encoder_frames(round(10.5 * SAMPLE_RATE), 10.0) == 2500  # rounded up to 25 s
    assert encoder_frames(0, 4.0) == 500
    assert encoder_frames(25 * SAMPLE_RATE, 10.0) == 3000  # never past 30 s
    for bad in (lambda: WindowOptions(encoder_padding=2.0), lambda: WindowOptions(encoder_padding=31.0), lambda: WindowOptions(max_token_rate=0.0)):
        with pytest.raises(ValueError):
            bad()


# ---------------------------------------------------------------- the real model


def test_a_short_encoder_window_hears_what_a_whole_one_hears(tiny_en, shared_data):
    """The streaming daemon's windows (audio + 10 s of silence) give the words of 30 s ones, with
    their times; a token cap stops the decode at its limit."""
    clip = clip_by_id(shared_data, "lj_LJ001-0005")  # 8.1 s: a 20 s window
    audio = load_audio(clip.path)
    whole, short = (
        decode_windows(tiny_en, [audio], WindowOptions(language="en", word_timestamps=True, encoder_padding=padding), [[]])[0]
        for padding in (None, 10.0)
    )
    assert word_error_rate([clip.text], [short.text]) < 0.15
    assert word_error_rate([whole.text], [short.text]) <= 0.1
    words = [w for s in short.segments for w in s.words]
    assert words and all(0 <= w.start <= w.end <= short.duration + 0.01 for w in words)
    capped = decode_windows(tiny_en, [audio], WindowOptions(language="en", max_token_rate=1.0), [[]])[0]
    assert len(capped.tokens) <= 16 + 9 < len(whole.tokens)


def test_windows_with_prompts_batch_like_alone(tiny_en, shared_data):
    clips = [clip_by_id(shared_data, i) for i in ("ls_1089-134686-0001", "lj_LJ001-0008")]
    audio = [load_audio(c.path) for c in clips]
    tokenizer = model_tokenizer(tiny_en)
    prompts = [tokenizer.encode(" Printing, in the only sense."), []]
    options = WindowOptions(language="en")
    together = decode_windows(tiny_en, audio, options, prompts)
    alone = [decode_windows(tiny_en, [a], options, [p])[0] for a, p in zip(audio, prompts)]
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    for a, b in zip(together, alone):
        assert [(s.start, s.end, s.text, s.tokens) for s in a.segments] == [(s.start, s.end, s.text, s.tokens) for s in b.segments]
        assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-4)
        assert a.no_speech_prob == pytest.approx(b.no_speech_prob, abs=1e-4)
    for result, clip in zip(together, clips):
        assert not result.silence and result.language == "en" and result.temperature == 0.0
        assert word_error_rate([clip.text], [result.text]) < 0.15
        assert result.segments[-1].complete and result.seek == pytest.approx(result.duration)
        assert all(0 <= s.start <= s.end <= result.duration for s in result.segments)


def test_nonspeech_gives_no_text(tiny_en, shared_data):
    clips = [c for c in shared_data if c.kind == "nonspeech"]
    assert len(clips) >= 5
    transcripts = transcribe_many(tiny_en, [load_audio(c.path) for c in clips], WindowOptions(language="en"))
    assert {c.id: t.text for c, t in zip(clips, transcripts)} == {c.id: "" for c in clips}
    assert all(not t.segments for t in transcripts)


def test_long_form_with_word_timestamps(tiny_en, shared_data):
    clip = clip_by_id(shared_data, "long_mixed_speakers")
    # Its first 49 s: two windows and more, six utterances from different recordings.
    cut = 49.0
    utterances = [u for u in clip.segments if u.end_s <= cut]
    reference = " ".join(clip_by_id(shared_data, u.id).text for u in utterances)
    audio = load_audio(clip.path)[: round(cut * SAMPLE_RATE)]
    progress: list[float] = []
    transcript = transcribe(tiny_en, audio, WindowOptions(language="en", word_timestamps=True), on_progress=progress.append)
    assert sum(progress) == pytest.approx(cut, abs=0.02)
    assert transcript.language == "en"
    assert word_error_rate([reference], [transcript.text]) < 0.06
    segments = transcript.segments
    assert len(segments) >= 5 and [s.id for s in segments] == list(range(len(segments)))
    for previous, segment in itertools.pairwise(segments):
        assert previous.end <= segment.start  # ordered, no overlap
    for segment in segments:
        assert 0 <= segment.start <= segment.end <= cut + 0.01
        assert segment.words and "".join(w.word for w in segment.words).strip() == segment.text.strip()
        for word in segment.words:
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01
            assert 0 <= word.probability <= 1
    words = [w for s in segments for w in s.words]
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    # Words lie on the utterances, not in the 0.8 s gaps between them.
    for word in words:
        middle = (word.start + word.end) / 2
        assert any(u.start_s - 0.3 <= middle <= u.end_s + 0.3 for u in utterances), word


@pytest.mark.slow  # loads a real model
def test_cli_writes_json_and_prints_text(shared_data, tmp_path, capsys):
    clips = [clip_by_id(shared_data, i) for i in ("cmu_goforward", "lj_LJ001-0002")]
    code = main([*(str(c.path) for c in clips), "--model", "tiny.en", "--language", "en", "--output-format", "all", "--output-dir", str(tmp_path), "--no-progress", "--threads", "2"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2
    for clip, line in zip(clips, printed):
        document = json.loads((tmp_path / f"{clip.path.stem}.json").read_text())
        assert document["language"] == "en" and document["text"] == line
        assert word_error_rate([clip.text], [line]) < 0.2
        assert all({"start", "end", "text", "words"} <= set(s) for s in document["segments"])
        assert "-->" in (tmp_path / f"{clip.path.stem}.srt").read_text()
        assert (tmp_path / f"{clip.path.stem}.vtt").read_text().startswith("WEBVTT")
        assert (tmp_path / f"{clip.path.stem}.txt").read_text().strip()
