"""Transcribing audio: batches of 30-second windows, long-form audio, and the offline CLI.

    python -m model.transcribe AUDIO... --model tiny.en [--language auto|en|…] [--word-timestamps]

`decode_windows` is the one implementation of a window: a batch of windows (each with its own
prompt) goes through one encoder pass and one batched decode, with temperature fallback per
row. `transcribe_many` moves through any number of files of any length with it, as openai's
transcribe does: after each window it seeks to the last complete segment and conditions the
next window on the text so far. Files advance together, so short files share batches.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.audio import load_audio, log_mel_spectrogram, pad_or_trim
from model.constants import CHUNK_LENGTH, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from model.decoding import (
    TIME_PRECISION,
    DecodingOptions,
    DecodingResult,
    decode_features,
    detect_language,
    model_tokenizer,
)
from model.profile import StageClock, timed
from model.runtime import return_freed_memory_to_os
from model.timing import Word, window_word_timestamps
from model.tokenizer import TASKS, normalize_language
from model.whisper import EncodedAudio, Whisper

__all__ = [
    "FileTranscription",
    "Segment",
    "Transcript",
    "WindowOptions",
    "WindowResult",
    "Word",
    "decode_mel_windows",
    "decode_windows",
    "split_segments",
    "transcribe",
    "transcribe_many",
]


@dataclass(frozen=True)
class Segment:
    id: int
    start: float  # seconds
    end: float
    text: str  # with its leading space, as the tokenizer writes it
    tokens: tuple[int, ...]  # text and timestamp tokens
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    words: tuple[Word, ...] = ()
    # False for a window's last segment when the window ended before its closing timestamp.
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "tokens": list(self.tokens),
            "avg_logprob": self.avg_logprob,
            "compression_ratio": self.compression_ratio,
            "no_speech_prob": self.no_speech_prob,
            "temperature": self.temperature,
            "words": [w.to_dict() for w in self.words],
        }


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    segments: tuple[Segment, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "language": self.language, "segments": [s.to_dict() for s in self.segments]}


WINDOW_STEP = 5  # s: encoder windows come in a few lengths (5, 10, ... 30 s), so shapes repeat
# Less silence after the audio than this makes tiny.en loop ("more more in being…"): with 1 s
# the short shared clips gave 147 % WER, with 2 s 37 %, with 4 s and more within 0.4 points of
# whole windows (docs/performance.md).
MIN_ENCODER_PADDING = 4.0
MIN_SAMPLE_LEN = 16  # tokens a decode may sample in any window, however short (see `max_token_rate`)

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class WindowOptions:
    language: str | None = None  # None: detected per window (multilingual models)
    task: str = "transcribe"
    word_timestamps: bool = False
    beam_size: int | None = None  # at temperature 0; None: greedy
    best_of: int | None = 5  # samples per window at temperature > 0
    patience: float | None = None
    length_penalty: float | None = None
    compression_ratio_threshold: float | None = 2.4  # above: repetitive, decode again hotter
    logprob_threshold: float | None = -1.0  # below: unlikely, decode again hotter
    no_speech_threshold: float | None = 0.6  # above, with a low logprob: silence, no text
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    suppress_tokens: str | tuple[int, ...] | None = "-1"
    # With language None: detection chooses among these only (empty: any language).
    language_candidates: tuple[str, ...] = ()
    # Seconds of silence encoded after the longest window's audio, the window rounded up to
    # `WINDOW_STEP` (see `encoder_frames`); None: whole 30 s windows, as Whisper was trained.
    encoder_padding: float | None = None
    # At most this many tokens per second of a window's audio (plus `MIN_SAMPLE_LEN`), timestamps
    # and forced ones included; None: Whisper's 224 a window. Speech takes 3-5 a second; a
    # decode caught in a loop ("This is... This is...") otherwise runs to 224 at any length.
    max_token_rate: float | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "language", normalize_language(self.language))
        candidates = tuple(normalize_language(c) or "" for c in self.language_candidates)
        object.__setattr__(self, "language_candidates", candidates)
        temperatures = tuple(float(t) for t in self.temperatures)
        if not temperatures or any(not 0 <= t <= 10 for t in temperatures):
            raise ValueError(f"temperatures must be a non-empty sequence of values in [0, 10], got {self.temperatures!r}")
        object.__setattr__(self, "temperatures", temperatures)
        if self.no_speech_threshold is not None and not 0 <= self.no_speech_threshold <= 1:
            raise ValueError(f"no_speech_threshold must be within [0, 1], got {self.no_speech_threshold}")
        if self.compression_ratio_threshold is not None and self.compression_ratio_threshold <= 0:
            raise ValueError(f"compression_ratio_threshold must be > 0, got {self.compression_ratio_threshold}")
        if self.max_token_rate is not None and self.max_token_rate <= 0:
            raise ValueError(f"max_token_rate must be > 0, got {self.max_token_rate}")
        if self.encoder_padding is not None and not MIN_ENCODER_PADDING <= self.encoder_padding <= CHUNK_LENGTH:
            raise ValueError(f"encoder_padding must be within [{MIN_ENCODER_PADDING}, {CHUNK_LENGTH}] s, got {self.encoder_padding}")
        # The decoding options of every temperature are validated now, not mid-transcription.
        for temperature in temperatures:
            self.decoding_options(temperature)

    def decoding_options(self, temperature: float, audio_seconds: float = CHUNK_LENGTH) -> DecodingOptions:
        """The options of one decode at `temperature` of windows of up to `audio_seconds`."""
        sampling = temperature > 0
        sample_len = None if self.max_token_rate is None else MIN_SAMPLE_LEN + math.ceil(self.max_token_rate * audio_seconds)
        return DecodingOptions(
            sample_len=sample_len,
            task=self.task,
            language=self.language,
            temperature=temperature,
            beam_size=None if sampling else self.beam_size,
            patience=None if sampling else self.patience,
            best_of=self.best_of if sampling else None,
            length_penalty=self.length_penalty,
            suppress_tokens=self.suppress_tokens,
        )

    def is_unreliable(self, result: DecodingResult) -> bool:
        """Too repetitive (a loop) or too unlikely."""
        repetitive = self.compression_ratio_threshold is not None and result.compression_ratio > self.compression_ratio_threshold
        unlikely = self.logprob_threshold is not None and result.avg_logprob < self.logprob_threshold
        return repetitive or unlikely

    def needs_fallback(self, result: DecodingResult, first: DecodingResult) -> bool:
        """Unreliable and not silence: decode again at the next temperature."""
        return self.is_unreliable(result) and not self.is_silence(result, first)

    def is_silence(self, result: DecodingResult, first: DecodingResult) -> bool:
        """Whether a window's decode (`result`, maybe after fallback) is to be taken as no speech.

        As openai: the model says no speech (above the threshold) and the text it wrote anyway
        is unlikely. And beyond openai: when even its first, most likely reading (`first`, at
        the lowest temperature) is unreliable, "no speech" need only be more probable than
        that reading's average token. Noise then gives no text instead of the "Mmm.", "Whoo!"
        or ". . ." that a hotter temperature happens to sample.
        """
        if self.no_speech_threshold is None:
            return False
        unlikely = self.logprob_threshold is None or result.avg_logprob < self.logprob_threshold
        if result.no_speech_prob > self.no_speech_threshold and unlikely:
            return True
        return self.is_unreliable(first) and first.no_speech_prob > math.exp(first.avg_logprob)


@dataclass(frozen=True)
class WindowResult:
    """One window's transcript; times are seconds from the window's start."""

    segments: tuple[Segment, ...]
    tokens: tuple[int, ...]  # all text and timestamp tokens (empty when silent)
    language: str
    language_probs: dict[str, float] | None  # when the language was detected
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    duration: float  # seconds of audio in the window
    # How far the transcript is settled: the end of the last complete segment when the window
    # ended inside a segment, else the whole window. The next window starts here.
    seek: float
    silence: bool  # judged as no speech: no segments

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


# ---------------------------------------------------------------- one batch of windows


def encoder_frames(n_samples: int, padding: float | None) -> int:
    """Mel frames of the encoder window for `n_samples` of audio followed by at least `padding`
    seconds of silence, in steps of `WINDOW_STEP` (None: a whole 30 s window).

    The encoder is most of a decode, and its cost grows with the window (attention with its
    square): a streaming window of ~10 s encoded in 20 s instead of 30 costs about half.
    """
    if padding is None:
        return N_FRAMES
    seconds = n_samples / SAMPLE_RATE + padding
    return min(N_FRAMES, math.ceil(seconds / WINDOW_STEP - 1e-9) * WINDOW_STEP * SAMPLE_RATE // HOP_LENGTH)



def split_segments(
    tokens: Sequence[int], timestamp_begin: int, duration: float
) -> tuple[list[tuple[float, float, tuple[int, ...], bool]], float]:
    """A window's tokens → segments (start, end, tokens, complete) and the seek (seconds).

    As openai's transcribe: a timestamp pair separates segments; text after the last pair
    with no closing timestamp is an incomplete segment, and the window is settled only up
    to the last pair. A window ending on one timestamp, or without any pair, is settled whole.
    """
    tokens = tuple(tokens)
    is_timestamp = [t >= timestamp_begin for t in tokens]

    def seconds(token: int) -> float:
        return min((token - timestamp_begin) * TIME_PRECISION, duration)

    single_timestamp_ending = is_timestamp[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_timestamp[i] and is_timestamp[i + 1]]
    pieces: list[tuple[float, float, tuple[int, ...], bool]] = []
    if not tokens:
        return pieces, duration
    if not cuts:
        start = seconds(tokens[0]) if is_timestamp[0] else 0.0
        end = seconds(tokens[-1]) if single_timestamp_ending else duration
        return [(start, max(start, end), tokens, single_timestamp_ending)], duration
    if single_timestamp_ending:
        cuts.append(len(tokens))
    last = 0
    for cut in cuts:
        piece = tokens[last:cut]
        start = seconds(piece[0]) if is_timestamp[last] else 0.0
        pieces.append((start, max(start, seconds(piece[-1])), piece, True))
        last = cut
    if single_timestamp_ending:
        return pieces, duration
    seek = seconds(tokens[last - 1])
    rest = tokens[last:]
    if any(t < timestamp_begin for t in rest):
        start = seconds(rest[0]) if rest[0] >= timestamp_begin else seek
        pieces.append((start, duration, rest, False))
    return pieces, seek if seek > 0 else duration


def decode_windows(
    model: Whisper,
    audio: Sequence[np.ndarray],
    options: WindowOptions,
    prompts: Sequence[Sequence[int]],
    drafts: Sequence[Sequence[int]] | None = None,
    forced: Sequence[Sequence[int]] | None = None,
    clock: StageClock | None = None,
) -> list[WindowResult]:
    """Transcribes windows of at most 30 s of 16 kHz audio, each after its own prompt tokens.

    One encoder pass and one batched decode with timestamps; rows that need a hotter
    temperature are decoded again together. `drafts`: the tokens a row's greedy decode is
    expected to give (`WindowResult.tokens` of an earlier decode of the same window start):
    they change no result, but make a matching decode cheaper (see `model.decoding`).
    `forced`: the tokens, timestamps included, a row's transcript begins with (its known start:
    they are in the result, its segments and words, like decoded ones). `clock`, when given,
    adds up the seconds of each stage (mel, encoder, language, decoder, alignment).
    """
    if len(audio) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts for {len(audio)} windows")
    if not audio:
        return []
    windows = [np.asarray(a, dtype=np.float32) for a in audio]
    for window in windows:
        if window.ndim != 1 or len(window) > N_SAMPLES:
            raise ValueError(f"a window is mono audio of at most {N_SAMPLES} samples, got shape {window.shape}")
    frames = encoder_frames(max(len(w) for w in windows), options.encoder_padding)
    with torch.inference_mode():
        with timed(clock, "mel", model.device):
            padded = np.stack([pad_or_trim(w, frames * HOP_LENGTH) for w in windows])
            mel = log_mel_spectrogram(padded, model.dims.n_mels, device=model.device)
            for row, window in enumerate(windows):
                mel[row, :, len(window) // HOP_LENGTH :] = 0  # as `_FileProgress.window_mel` cuts windows
        quiet = [_is_quiet(w) for w in windows]
        return decode_mel_windows(model, mel, [len(w) for w in windows], quiet, options, prompts, drafts, forced, clock)


def decode_mel_windows(
    model: Whisper,
    mel: torch.Tensor,
    n_samples: Sequence[int],
    quiet: Sequence[bool],
    options: WindowOptions,
    prompts: Sequence[Sequence[int]],
    drafts: Sequence[Sequence[int]] | None = None,
    forced: Sequence[Sequence[int]] | None = None,
    clock: StageClock | None = None,
) -> list[WindowResult]:
    """`decode_windows` on log-mel windows [B, n_mels, frames] (3000: 30 s) holding `n_samples` of audio each;
    `quiet` rows hold nothing recorded and are taken as silence."""
    device = model.device
    with torch.inference_mode():
        with timed(clock, "encoder", device):
            features = model.encode(mel)
        with timed(clock, "language", device):
            languages, language_probs = _languages(model, features, options.language, options.language_candidates)
        with timed(clock, "decoder", device):
            audio_seconds = max(n_samples) / SAMPLE_RATE
            decoded, first = _decode_with_fallback(model, features, options, prompts, languages, audio_seconds, drafts, forced)
        results = [
            _window_result(model, result, samples / SAMPLE_RATE, probs, options, options.is_silence(result, first_result) or is_quiet)
            for result, first_result, samples, probs, is_quiet in zip(decoded, first, n_samples, language_probs, quiet)
        ]
        if options.word_timestamps:
            with timed(clock, "alignment", device):
                results = _with_words(model, features, results, [samples // HOP_LENGTH for samples in n_samples], options.task)
    return results


# About 3 LSB of 16-bit audio: a window this quiet holds nothing recorded (the model
# hears "you" in digital silence).
SILENT_PEAK = 1e-4


def _is_quiet(window: np.ndarray) -> bool:
    return len(window) == 0 or float(np.abs(window).max()) < SILENT_PEAK


def _languages(
    model: Whisper, features: EncodedAudio, language: str | None, candidates: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, float] | None]]:
    rows = len(features)
    if not model.is_multilingual:
        return ["en"] * rows, [None] * rows
    if language is not None:
        return [language] * rows, [None] * rows
    probs = _detected(model, features, candidates)
    return [max(p, key=lambda k: p[k]) for p in probs], list(probs)


def _detected(model: Whisper, features: EncodedAudio, candidates: Sequence[str]) -> list[dict[str, float]]:
    """Each row's language probabilities, over `candidates` only (renormalised) when given."""
    _, probs = detect_language(model, features, model_tokenizer(model))
    if not candidates:
        return probs
    kept = [{k: p[k] for k in candidates if k in p} for p in probs]
    return [{k: v / (sum(row.values()) or 1.0) for k, v in row.items()} for row in kept]


def detect_window_languages(model: Whisper, audio: Sequence[np.ndarray], candidates: Sequence[str] = ()) -> list[dict[str, float]]:
    """The language probabilities of windows of at most 30 s of 16 kHz audio (an encoder pass
    each, as `decode_windows` cuts them), over `candidates` only when given."""
    if not audio:
        return []
    windows = [np.asarray(a, dtype=np.float32)[:N_SAMPLES] for a in audio]
    with torch.inference_mode():
        mel = log_mel_spectrogram(np.stack([pad_or_trim(w) for w in windows]), model.dims.n_mels, device=model.device)
        for row, window in enumerate(windows):
            mel[row, :, len(window) // HOP_LENGTH :] = 0
        return _detected(model, model.encode(mel), candidates)


def _decode_with_fallback(
    model: Whisper,
    features: EncodedAudio,
    options: WindowOptions,
    prompts: Sequence[Sequence[int]],
    languages: list[str],
    audio_seconds: float,
    drafts: Sequence[Sequence[int]] | None = None,
    forced: Sequence[Sequence[int]] | None = None,
) -> tuple[list[DecodingResult], list[DecodingResult]]:
    """The final decode of each row, and its first (lowest temperature) decode (the only one
    that `drafts` can serve: hotter decodes sample); the longest row holds `audio_seconds`."""
    rows = len(features)
    results: list[DecodingResult] = []
    first: list[DecodingResult] = []
    pending = list(range(rows))
    for temperature in options.temperatures:
        decoded = decode_features(
            model,
            features.select(pending),
            options.decoding_options(temperature, audio_seconds),
            [prompts[i] for i in pending],
            [languages[i] for i in pending],
            drafts if drafts is not None and not first else None,
            [forced[i] for i in pending] if forced is not None else None,
        )
        if not first:
            results, first = list(decoded), list(decoded)
        else:
            for row, result in zip(pending, decoded):
                results[row] = result
        pending = [row for row in pending if options.needs_fallback(results[row], first[row])]
        if not pending:
            break
    return results, first


def _window_result(
    model: Whisper,
    result: DecodingResult,
    duration: float,
    language_probs: dict[str, float] | None,
    options: WindowOptions,
    silence: bool,
) -> WindowResult:
    segments: list[Segment] = []
    seek = duration
    if not silence:
        tokenizer = model_tokenizer(model, result.language, options.task)
        pieces, seek = split_segments(result.tokens, tokenizer.timestamp_begin, duration)
        for start, end, tokens, complete in pieces:
            text = tokenizer.decode(tokens)
            if not any(c.isalnum() for c in text):  # nothing said: empty, or only punctuation
                continue
            segments.append(
                Segment(
                    id=len(segments),
                    start=round(start, 2),
                    end=round(end, 2),
                    text=text,
                    tokens=tokens,
                    avg_logprob=result.avg_logprob,
                    compression_ratio=result.compression_ratio,
                    no_speech_prob=result.no_speech_prob,
                    temperature=result.temperature,
                    complete=complete,
                )
            )
    return WindowResult(
        segments=tuple(segments),
        tokens=() if silence else result.tokens,
        language=result.language,
        language_probs=language_probs,
        avg_logprob=result.avg_logprob,
        no_speech_prob=result.no_speech_prob,
        compression_ratio=result.compression_ratio,
        temperature=result.temperature,
        duration=duration,
        seek=seek,
        silence=silence,
    )


def _with_words(
    model: Whisper, features: EncodedAudio, results: list[WindowResult], n_frames: list[int], task: str
) -> list[WindowResult]:
    rows = [i for i, r in enumerate(results) if r.segments]
    if not rows:
        return results
    tokenizers = [model_tokenizer(model, results[i].language, task) for i in rows]
    segments = [[(s.start, s.end, s.tokens) for s in results[i].segments] for i in rows]
    timed = window_word_timestamps(model, tokenizers, features.select(rows), segments, [n_frames[i] for i in rows])
    results = list(results)
    for i, row_timed in zip(rows, timed):
        result = results[i]
        new_segments = tuple(
            replace(segment, start=t.start, end=max(t.start, t.end), words=t.words) for segment, t in zip(result.segments, row_timed)
        )
        seek = result.seek
        # openai: a window that ended inside a segment resumes after the last word spoken.
        complete_words = [w for s in new_segments if s.complete for w in s.words]
        if seek < result.duration and complete_words and 0 < complete_words[-1].end < result.duration:
            seek = complete_words[-1].end
        results[i] = replace(result, segments=new_segments, seek=seek)
    return results


# ---------------------------------------------------------------- files of any length


@dataclass
class _FileProgress:
    """Where one file's transcription stands between windows."""

    audio: np.ndarray
    language: str | None
    tokens: list[int]  # every token so far, the prompt of the next window
    prompt_from: int = 0
    seek: int = 0  # samples; a multiple of HOP_LENGTH until the end
    segments: list[Segment] = field(default_factory=list)
    mel: torch.Tensor | None = None  # of the whole file, computed at its first window

    @property
    def done(self) -> bool:
        # Less than one mel frame left: nothing to hear.
        return len(self.audio) - self.seek < HOP_LENGTH

    def window(self) -> np.ndarray:
        return self.audio[self.seek : self.seek + N_SAMPLES]

    def window_mel(self, model: Whisper) -> torch.Tensor:
        """The next window's log-mel [n_mels, 3000], as openai's transcribe cuts it: from the
        features of the whole file (one loudness reference), zero beyond its end."""
        if self.mel is None:
            self.mel = log_mel_spectrogram(self.audio, model.dims.n_mels, padding=N_SAMPLES, device=model.device)
        start = self.seek // HOP_LENGTH
        frames = min(N_FRAMES, len(self.audio) // HOP_LENGTH - start)
        return pad_or_trim(self.mel[:, start : start + frames], N_FRAMES)

    def prompt(self) -> list[int]:
        return self.tokens[self.prompt_from :]

    def advance(self, result: WindowResult, condition_on_previous_text: bool) -> int:
        """Takes in a window's result; returns how many samples the file moved on."""
        offset = self.seek / SAMPLE_RATE
        settled_all = result.seek >= result.duration
        previous_end = self.segments[-1].end if self.segments else 0.0
        for segment in result.segments:
            if not (segment.complete or settled_all):
                continue
            start = max(round(offset + segment.start, 2), previous_end)
            end = max(round(offset + segment.end, 2), start)
            words = tuple(replace(w, start=round(offset + w.start, 2), end=round(offset + w.end, 2)) for w in segment.words)
            self.segments.append(replace(segment, id=len(self.segments), start=start, end=end, words=words, complete=True))
            self.tokens.extend(segment.tokens)
            previous_end = end
        if self.language is None:
            self.language = result.language
        if not condition_on_previous_text or result.temperature > 0.5:
            # A hot decode means the model struggled: don't feed its text back as a prompt.
            self.prompt_from = len(self.tokens)
        window = min(len(self.audio) - self.seek, N_SAMPLES)
        step = round(result.seek * SAMPLE_RATE)
        step = step if 0 < step <= window else window
        self.seek += step
        if self.done:
            self.mel = None  # a whole file's features: free them as soon as it is transcribed
        return step

    def transcript(self) -> Transcript:
        return Transcript("".join(s.text for s in self.segments).strip(), self.language or "en", tuple(self.segments))


def _decode_round(
    model: Whisper,
    pending: list[_FileProgress],
    options: WindowOptions,
    condition_on_previous_text: bool,
    on_progress: Callable[[float], None] | None,
) -> None:
    """The next window of every file in `pending`, decoded as one batch per language."""
    by_language: dict[str | None, list[_FileProgress]] = {}
    for f in pending:
        by_language.setdefault(f.language, []).append(f)
    for language, group in by_language.items():
        windows = [f.window() for f in group]
        results = decode_mel_windows(
            model,
            torch.stack([f.window_mel(model) for f in group]),
            [len(w) for w in windows],
            [_is_quiet(w) for w in windows],
            replace(options, language=language),
            [f.prompt() for f in group],
        )
        for f, result in zip(group, results):
            moved = f.advance(result, condition_on_previous_text)
            if on_progress is not None:
                on_progress(moved / SAMPLE_RATE)


class FileTranscription:
    """One file of any length transcribed a window per `step` (as `transcribe` does it whole), so
    that the caller can do other work between windows: the daemon's model worker decodes live
    streams between an upload's windows."""

    def __init__(
        self,
        model: Whisper,
        audio: np.ndarray,
        options: WindowOptions = WindowOptions(),
        *,
        initial_prompt: str | None = None,
        condition_on_previous_text: bool = True,
    ) -> None:
        tokenizer = model_tokenizer(model, options.language, options.task)
        initial = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt and initial_prompt.strip() else []
        self._file = _FileProgress(np.asarray(audio, dtype=np.float32), options.language, list(initial))
        self._options = options
        self._condition = condition_on_previous_text

    @property
    def done(self) -> bool:
        return self._file.done

    def step(self, model: Whisper) -> list[Segment]:
        """Decodes the next window; returns the segments it settled."""
        settled = len(self._file.segments)
        if not self._file.done:
            _decode_round(model, [self._file], self._options, self._condition, None)
        return self._file.segments[settled:]

    def transcript(self) -> Transcript:
        return self._file.transcript()


def transcribe_many(
    model: Whisper,
    audios: Sequence[np.ndarray],
    options: WindowOptions = WindowOptions(),
    *,
    initial_prompt: str | None = None,
    condition_on_previous_text: bool = True,
    batch_size: int = 16,
    on_progress: Callable[[float], None] | None = None,
) -> list[Transcript]:
    """Transcribes 16 kHz audio of any length, one transcript per item.

    Each round decodes the next window of up to `batch_size` unfinished files as one batch.
    The language, when not given, is detected on a file's first window.
    `on_progress` receives the seconds of audio each round settled.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tokenizer = model_tokenizer(model, options.language, options.task)
    initial = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt and initial_prompt.strip() else []
    files = [_FileProgress(np.asarray(a, dtype=np.float32), options.language, list(initial)) for a in audios]
    while True:
        pending = [f for f in files if not f.done][:batch_size]
        if not pending:
            break
        _decode_round(model, pending, options, condition_on_previous_text, on_progress)
    return [f.transcript() for f in files]


def transcribe(
    model: Whisper,
    audio: np.ndarray,
    options: WindowOptions = WindowOptions(),
    *,
    initial_prompt: str | None = None,
    condition_on_previous_text: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> Transcript:
    """Transcribes 16 kHz audio of any length (see `transcribe_many`)."""
    return transcribe_many(
        model, [audio], options, initial_prompt=initial_prompt, condition_on_previous_text=condition_on_previous_text, on_progress=on_progress
    )[0]


# ---------------------------------------------------------------- command line


OUTPUT_FORMATS = ("txt", "srt", "vtt", "json")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.transcribe", description="Transcribe audio files with Whisper.")
    parser.add_argument("audio", nargs="+", type=Path, help="audio files (WAV natively, anything else through ffmpeg)")
    parser.add_argument("--model", default="tiny.en", help="model name (tiny.en, base) or path")
    parser.add_argument("--language", default="auto", help="language code or name, or auto to detect it")
    parser.add_argument("--task", choices=TASKS, default="transcribe")
    parser.add_argument("--word-timestamps", action="store_true", help="time every word")
    parser.add_argument("--beam-size", type=int, default=None, help="beam search at temperature 0 (default: greedy)")
    parser.add_argument("--best-of", type=int, default=5, help="samples per window at temperature > 0")
    parser.add_argument(
        "--temperature", type=float, nargs="+", default=list(DEFAULT_TEMPERATURES), help="temperatures to fall back through"
    )
    parser.add_argument("--initial-prompt", default=None, help="text to condition the first window on")
    parser.add_argument("--no-condition-on-previous-text", action="store_true", help="don't prompt a window with the text before it")
    parser.add_argument("--output-format", choices=(*OUTPUT_FORMATS, "all"), default=None, help="transcript files to write")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where transcript files go")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "int8"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--batch-size", type=int, default=3, help="windows decoded together (on tiny each adds about 35 MB of memory; 3 keeps the CLI under 600 MB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser.parse_args(argv)


def _write_outputs(transcript: Transcript, stem: str, formats: Sequence[str], directory: Path) -> None:
    import json

    from captions.writers import write_srt, write_txt, write_vtt

    directory.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        if fmt == "json":
            # Our own document: the writers' JSON has no language.
            path.write_text(json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        else:
            {"txt": write_txt, "srt": write_srt, "vtt": write_vtt}[fmt](transcript.segments, path)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    return_freed_memory_to_os()
    if args.threads:
        torch.set_num_threads(args.threads)
    from model.audio import AudioLoadError
    from model.weights import load_model

    language = None if args.language.lower() == "auto" else args.language
    options = WindowOptions(
        language=language,
        task=args.task,
        word_timestamps=args.word_timestamps,
        beam_size=args.beam_size,
        best_of=args.best_of,
        temperatures=tuple(args.temperature),
    )
    model = load_model(args.model, device=args.device, dtype=args.dtype)
    if not model.is_multilingual and options.language not in (None, "en"):
        print(f"error: {model.name} is English-only; use --language en or a multilingual model", file=sys.stderr)
        return 2
    paths, audios = [], []
    failed = False
    for path in args.audio:
        try:
            audios.append(load_audio(path))
            paths.append(path)
        except AudioLoadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
    from tqdm import tqdm

    total = round(sum(len(a) for a in audios) / SAMPLE_RATE, 2)
    with tqdm(total=total, unit="s", file=sys.stderr, disable=args.no_progress, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]") as bar:
        transcripts = transcribe_many(
            model,
            audios,
            options,
            initial_prompt=args.initial_prompt,
            condition_on_previous_text=not args.no_condition_on_previous_text,
            batch_size=args.batch_size,
            on_progress=bar.update,
        )
    formats = OUTPUT_FORMATS if args.output_format == "all" else (args.output_format,) if args.output_format else ()
    for path, transcript in zip(paths, transcripts):
        print(transcript.text, flush=True)
        if formats:
            _write_outputs(transcript, path.stem, formats, args.output_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
