"""Word-level timestamps: aligning a window's text tokens to its audio frames.

As openai/whisper's timing.py: the cross-attention of the alignment heads, normalised and
median-filtered, is aligned to the tokens by dynamic time warping; words start where the
path first reaches their first token. Then openai's heuristics: punctuation joins its word,
and words far longer than the median are cut at sentence and segment boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.constants import TOKENS_PER_SECOND
from model.tokenizer import Tokenizer
from model.whisper import EncodedAudio, Whisper

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"


@dataclass(frozen=True)
class Word:
    word: str  # with its leading space, as the tokenizer spells it
    start: float
    end: float
    probability: float

    def to_dict(self) -> dict[str, float | str]:
        return {"word": self.word, "start": self.start, "end": self.end, "probability": self.probability}


@dataclass(frozen=True)
class TimedSegment:
    """A segment's bounds after word alignment (it may move to its first and last word)."""

    start: float
    end: float
    words: tuple[Word, ...]


@dataclass
class _Timing:
    """A word being placed; the heuristics below move its bounds and merge punctuation."""

    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def median_filter(x: Tensor, width: int) -> Tensor:
    """Median over a sliding window of odd `width` along the last axis (reflect-padded).

    The `width` shifted copies go through an odd-even transposition sorting network (min and max
    of whole tensors): several times faster than a median over an unfolded window on the CPU.
    """
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape, length = x.shape, x.shape[-1]
    padded = F.pad(x.reshape(-1, 1, length), (pad, pad), mode="reflect")[:, 0]
    values = [padded[:, i : i + length] for i in range(width)]
    for round_ in range(width):
        for i in range(round_ % 2, width - 1, 2):
            values[i], values[i + 1] = torch.minimum(values[i], values[i + 1]), torch.maximum(values[i], values[i + 1])
    return values[pad].reshape(shape)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through `cost` [N, M]: (row indices, column indices).

    Row by row, each row one vectorised step (N steps, N being the tokens: a few dozen, where
    the frames are hundreds). Within a row, total[j] = min(a[j], cost[j] + total[j - 1]), with
    a[j] what the row above offers; that recurrence is a running minimum of a - C shifted by C,
    the row's cumulative cost. The path is openai's where no two moves cost exactly the same
    (real attention weights); on a tie it prefers the diagonal, then up, then left, where
    openai's loop may take a dearer left move.
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.full((n + 1, m + 1), 2, dtype=np.int8)
    trace[:, 0] = 1
    for i in range(1, n + 1):
        c0, c1 = total[i - 1, :-1], total[i - 1, 1:]
        row_cost = cost[i - 1]
        above = row_cost + np.minimum(c0, c1)
        cumulative = np.cumsum(row_cost)
        total[i, 1:] = np.minimum.accumulate(above - cumulative) + cumulative
        c2 = total[i, :-1]
        trace[i, 1:] = np.where((c0 <= c1) & (c0 <= c2), 0, np.where(c1 <= c2, 1, 2))
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        move = trace[i, j]
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    indices = np.array(path[::-1]).T
    return indices[0], indices[1]


def _alignment_matrix(weights: Tensor, n_tokens: int, n_frames: int, medfilt_width: int) -> np.ndarray:
    """[K, T, 1500] attention of one row → the [tokens, frames] cost of its alignment."""
    weights = weights[:, :n_tokens, : max(n_frames // 2, 1)]
    # The weights were normalised over all 1500 positions; the audio covers only the first ones.
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-10)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / std.clamp(min=1e-10)
    weights = median_filter(weights, medfilt_width)
    return weights.mean(dim=0).double().cpu().numpy()


def align_words(
    model: Whisper,
    tokenizers: Sequence[Tokenizer],
    audio: EncodedAudio,
    text_tokens: Sequence[Sequence[int]],
    n_frames: Sequence[int],
    medfilt_width: int = 7,
) -> list[list[_Timing]]:
    """Word timings (seconds from the window start) of each row's text tokens, batched."""
    rows = len(text_tokens)
    sequences = [[*tok.sot_sequence, tok.no_timestamps, *text, tok.eot] for tok, text in zip(tokenizers, text_tokens)]
    length = max(map(len, sequences))
    eot = tokenizers[0].eot
    # Right padding is harmless: attention is causal, so no real token sees the padding.
    tokens = torch.tensor([s + [eot] * (length - len(s)) for s in sequences], device=model.device)
    weights, logits = model.alignment_pass(tokens, audio)
    result: list[list[_Timing]] = []
    for row in range(rows):
        tokenizer, text = tokenizers[row], list(text_tokens[row])
        if not text:
            result.append([])
            continue
        n_sot = len(tokenizer.sot_sequence)
        text_probs = logits[row, n_sot : n_sot + len(text), :eot].softmax(dim=-1)
        token_probs = text_probs.gather(1, torch.tensor(text, device=text_probs.device)[:, None])[:, 0].tolist()
        matrix = _alignment_matrix(weights[row], len(sequences[row]), n_frames[row], medfilt_width)
        text_indices, time_indices = dtw(-matrix[n_sot:-1])
        words, word_tokens = tokenizer.split_to_word_tokens(text + [eot])
        if len(word_tokens) <= 1:
            result.append([])
            continue
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] / TOKENS_PER_SECOND
        starts = jump_times[boundaries[:-1]]
        ends = jump_times[boundaries[1:]]
        result.append(
            [
                _Timing(word, tokens_, float(start), float(end), float(np.mean(token_probs[i:j])))
                for word, tokens_, start, end, i, j in zip(words, word_tokens, starts, ends, boundaries[:-1], boundaries[1:])
            ]
        )
    return result


def merge_punctuations(alignment: list[_Timing], prepended: str = PREPEND_PUNCTUATIONS, appended: str = APPEND_PUNCTUATIONS) -> None:
    """Opening punctuation joins the next word, closing punctuation the previous one."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def place_words(
    alignment: list[_Timing],
    segments: Sequence[tuple[float, float, Sequence[int]]],
    last_speech_timestamp: float = 0.0,
) -> list[TimedSegment]:
    """Assigns aligned words to their segments (start, end, text tokens only), with openai's
    heuristics against overly long words; returns each segment's new bounds and words."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median_duration = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    max_duration = median_duration * 2
    # A word at a sentence boundary is not longer than twice the median word.
    if len(durations):
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in SENTENCE_END_MARKS:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in SENTENCE_END_MARKS:
                    alignment[i].start = alignment[i].end - max_duration
    merge_punctuations(alignment)

    placed: list[TimedSegment] = []
    index = 0
    for start, end, tokens in segments:
        n_text = len(tokens)
        saved = 0
        words: list[_Timing] = []
        while index < len(alignment) and saved < n_text:
            timing = alignment[index]
            if timing.word:
                words.append(_Timing(timing.word, timing.tokens, round(timing.start, 2), round(timing.end, 2), timing.probability))
            saved += len(timing.tokens)
            index += 1
        if words:
            first, last = words[0], words[-1]
            # The first word after a pause is not longer than twice the median word.
            if first.end - last_speech_timestamp > median_duration * 4 and (
                first.end - first.start > max_duration or (len(words) > 1 and words[1].end - first.start > max_duration * 2)
            ):
                if len(words) > 1 and words[1].end - words[1].start > max_duration:
                    boundary = max(words[1].end / 2, words[1].end - max_duration)
                    first.end = words[1].start = boundary
                first.start = max(0.0, first.end - max_duration)
            # Prefer the segment's own timestamps when its first or last word is too long.
            if start < first.end and start - 0.5 > first.start:
                first.start = max(0.0, min(first.end - median_duration, start))
            else:
                start = first.start
            if end > last.start and end + 0.5 < last.end:
                last.end = max(last.start + median_duration, end)
            else:
                end = last.end
            last_speech_timestamp = end
        placed.append(
            TimedSegment(start, end, tuple(Word(w.word, round(w.start, 2), round(w.end, 2), w.probability) for w in words))
        )
    return placed


def window_word_timestamps(
    model: Whisper,
    tokenizers: Sequence[Tokenizer],
    audio: EncodedAudio,
    segments: Sequence[Sequence[tuple[float, float, Sequence[int]]]],
    n_frames: Sequence[int],
) -> list[list[TimedSegment]]:
    """Words of every segment of a batch of windows: per row, its segments (start, end,
    tokens, times in seconds from the window start) → their new bounds and words."""
    text_segments = [
        [(start, end, [t for t in tokens if t < tok.eot]) for start, end, tokens in row] for tok, row in zip(tokenizers, segments)
    ]
    text_tokens = [[t for _, _, tokens in row for t in tokens] for row in text_segments]
    alignments = align_words(model, tokenizers, audio, text_tokens, n_frames)
    return [place_words(alignment, row) for alignment, row in zip(alignments, text_segments)]

