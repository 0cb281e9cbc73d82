"""The model worker: one thread that owns the model and decodes batches of tick requests.

Ownership: the model, its tokenizer and torch's thread pool belong to the worker thread alone;
it is loaded there and only ever called there. The event loop hands over immutable
`TickRequest` batches (`submit`) and gets a `concurrent.futures.Future` back, so a slow decode
never blocks the loop.

A request's committed context becomes the tokens its decode is forced to begin with
(`context_tokens`); its draft, the tokens the decode is checked against to save decoder passes.

Backpressure lives on the event-loop side, in `scheduler.TickScheduler`: one batch in flight,
each stream in at most one batch, so a lagging worker spaces ticks out instead of dropping audio.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch

from model.constants import SAMPLE_RATE
from model.decoding import TIME_PRECISION, model_tokenizer
from model.profile import BatchProfile, StageClock, timed
from model.runtime import cpu_has_native_bfloat16
from model.tokenizer import Tokenizer
from model.transcribe import DEFAULT_TEMPERATURES, WindowOptions, WindowResult, decode_windows, detect_window_languages
from model.weights import default_device, load_model
from model.whisper import Whisper

from ..config import ModelConfig, StreamConfig
from ..stream.session import ModelInfo
from ..stream.tick import Hypothesis, TickRequest, Word

log = logging.getLogger("streamer.engine.worker")

T = TypeVar("T")
ModelCall = Callable[[Whisper], Any]  # work other than a tick batch, run on the model in the worker thread


@dataclass(frozen=True)
class BatchResult:
    hypotheses: tuple[Hypothesis, ...]  # in the order of the submitted requests
    seconds: float
    profile: BatchProfile | None = None


class ModelWorker:
    """A daemon thread running decode batches in submission order."""

    def __init__(self, config: ModelConfig, stream: StreamConfig) -> None:
        self._config = config
        self._options = WindowOptions(
            word_timestamps=True,
            beam_size=config.beam_size if config.beam_size > 1 else None,
            # Re-decoding every tick plus agreement already filters unstable text; hotter
            # fallback decodes would multiply the cost of exactly the hardest ticks.
            temperatures=DEFAULT_TEMPERATURES if config.temperature_fallback else (0.0,),
            compression_ratio_threshold=stream.compression_ratio_threshold,
            logprob_threshold=stream.logprob_threshold,
            no_speech_threshold=stream.no_speech_threshold,
            encoder_padding=config.encoder_padding or None,
            max_token_rate=config.max_token_rate,
        )
        self._jobs: queue.Queue[tuple[list[TickRequest] | ModelCall, Future[Any]] | None] = queue.Queue()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._model_info: ModelInfo | None = None
        self._all_cores = torch.get_num_threads()  # torch's default: one per physical core
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> ModelInfo:
        """Blocks until the model is loaded (call it off the event loop); raises what loading raised."""
        if not self._loaded.wait(timeout):
            raise TimeoutError("model not loaded in time")
        if self._load_error is not None:
            raise RuntimeError(f"loading model {self._config.model!r} failed") from self._load_error
        assert self._model_info is not None
        return self._model_info

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._load_error is None

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]:
        future: Future[BatchResult] = Future()
        self._jobs.put((list(requests), future))
        return future

    def submit_call(self, call: Callable[[Whisper], T]) -> Future[T]:
        """`call(model)` in the worker thread, in turn with the tick batches: an upload's windows go
        one call at a time, so a live stream's batch waits for one window at most, never a file."""
        future: Future[T] = Future()
        self._jobs.put((call, future))
        return future

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes the batch in hand, then ends the thread."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            model = self.load()
        except BaseException as exc:  # reported to whoever waits for the model, with its traceback
            self._load_error = exc
            self._loaded.set()
            return
        self._loaded.set()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                self._use_threads(self._config.threads if isinstance(work, list) else self._config.file_threads)
                with torch.inference_mode():
                    result = self.decode(model, work) if isinstance(work, list) else work(model)
            except BaseException as exc:  # handed to the event loop, which logs it per session
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _use_threads(self, threads: int) -> None:
        """Streams' batches and an upload's windows may each have their own torch thread count
        (latency work leaves a core to the event loop; a file alone between batches may take all)."""
        wanted = threads or self._all_cores
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def load(self) -> Whisper:
        """Loads the model as configured (in the worker thread; the tick profiler calls it directly)."""
        config = self._config
        self._use_threads(config.threads)
        device = default_device() if config.device == "auto" else config.device
        dtype = None if config.dtype == "auto" else config.dtype
        if dtype is None and device == "cpu" and cpu_has_native_bfloat16():
            dtype = "bfloat16"  # about twice as fast as float32 here: the encoder pass is most of a tick
        began = time.perf_counter()
        model = load_model(config.model, device=device, dtype=dtype)
        model.eval()
        self._model_info = ModelInfo(name=model.name, multilingual=model.is_multilingual)
        log.info(
            "model %s loaded on %s (%s, %d threads) in %.1f s",
            model.name, model.device, str(model.dtype).removeprefix("torch."), torch.get_num_threads(), time.perf_counter() - began,
        )
        return model

    def decode(self, model: Whisper, requests: list[TickRequest]) -> BatchResult:
        """One batch on `model` (the worker thread's step; the tick profiler calls it directly)."""
        began = time.perf_counter()
        clock = StageClock()
        passes_before = model.decoder_passes
        tokenizer = model_tokenizer(model)
        hypotheses: list[Hypothesis | None] = [None] * len(requests)
        # One WindowOptions per call: rows that differ in language, task or window go in separate
        # calls. On the CPU every row goes alone: a batched decode costs no less per row there, and
        # more (its steps run until the longest row ends, its drafts stand only while every row
        # follows its own, and its encoder window is its longest row's).
        groups: dict[tuple[str | None, str, tuple[str, ...], bool] | int, list[int]] = {}
        alone = model.device.type == "cpu"
        for i, request in enumerate(requests):
            groups.setdefault(i if alone else (request.language, request.task, request.languages, request.final), []).append(i)
        for rows in groups.values():
            first = requests[rows[0]]
            # A final decode fixes an utterance's last words: it hears a whole 30 s window, as
            # Whisper was trained (a short window cost the short clips 0.7 points, docs/performance.md).
            padding = None if first.final else self._options.encoder_padding
            options = replace(self._options, language=first.language, task=first.task, language_candidates=first.languages, encoder_padding=padding)
            prompts = [tokenizer.encode(requests[i].prompt) if requests[i].prompt else [] for i in rows]
            drafts = [requests[i].draft for i in rows]
            forced = [context_tokens(requests[i], tokenizer) for i in rows]
            audio = [requests[i].audio for i in rows]
            results = decode_windows(model, audio, options, prompts, drafts if any(drafts) else None, forced if any(forced) else None, clock)
            for i, result in zip(rows, results, strict=True):
                hypotheses[i] = to_hypothesis(result)
        with timed(clock, "language", model.device):
            _add_language_ids(model, requests, hypotheses)
        seconds = time.perf_counter() - began
        audio_seconds = sum(len(r.audio) for r in requests) / SAMPLE_RATE
        profile = BatchProfile(dict(clock.seconds), model.decoder_passes - passes_before, len(requests), audio_seconds)
        if log.isEnabledFor(logging.DEBUG):
            split = ", ".join(f"{stage} {t:.3f}" for stage, t in clock.seconds.items())
            log.debug("decoded %d window(s), %.1f s of audio, in %.2f s (%s; %d decoder passes)", len(requests), audio_seconds, seconds, split, profile.decoder_passes)
        return BatchResult(tuple(h for h in hypotheses if h is not None), seconds, profile)


def _add_language_ids(model: Whisper, requests: list[TickRequest], hypotheses: list[Hypothesis | None]) -> None:
    """Gives the hypotheses of requests that asked for it their language-ID: the decode's own
    detection when it detected on the audio asked for, else one more encoder pass on that audio
    alone (an utterance after context in another language: its window's ID is the context's)."""
    if not model.is_multilingual:
        return
    separate: list[int] = []
    for i, request in enumerate(requests):
        hypothesis = hypotheses[i]
        if not request.detect_language or hypothesis is None:
            continue
        whole = (request.detect_from is None or request.detect_from <= request.window_start + 0.01) and request.detect_until is None
        if request.language is None and whole and hypothesis.language_probs is not None:
            continue
        separate.append(i)
    by_candidates: dict[tuple[str, ...], list[int]] = {}
    for i in separate:
        by_candidates.setdefault(requests[i].languages, []).append(i)
    for candidates, rows in by_candidates.items():
        audio = [_detection_audio(requests[i]) for i in rows]
        for i, probs in zip(rows, detect_window_languages(model, audio, candidates), strict=True):
            hypothesis = hypotheses[i]
            assert hypothesis is not None
            hypotheses[i] = replace(hypothesis, language_probs=probs)


def _detection_audio(request: TickRequest) -> np.ndarray:
    begin = 0 if request.detect_from is None else max(0, round((request.detect_from - request.window_start) * SAMPLE_RATE))
    end = len(request.audio) if request.detect_until is None else round((request.detect_until - request.window_start) * SAMPLE_RATE)
    return request.audio[begin : max(end, begin + SAMPLE_RATE // 2)]  # at least 0.5 s: a language-ID needs some audio


def context_tokens(request: TickRequest, tokenizer: Tokenizer) -> list[int]:
    """The tokens, timestamps included, that stand for `request.context` at the window's start.

    When the draft (the last decode of this window) holds the context's text, its own tokens up
    to there: those the decoder chose, its timestamps too, so the draft goes on matching after
    them. Else built from the words: one segment per run of words up to one that closed a
    segment, its timestamps the words' bounds. Either way the last segment is left open: a
    segment closed there by a decode whose window ended soon after, forced in a longer window,
    made the decoder end its text ("…soul in heaven.<|1.06|>", then end of text, with 11 s of
    speech after it).
    """
    words = request.context
    if not words:
        return []
    text = "".join(w.text for w in words)
    covered = _draft_covering(request.draft, text, tokenizer)
    if covered:
        return list(request.draft[:covered])
    begin = tokenizer.timestamp_begin
    last_position = round(len(request.audio) / SAMPLE_RATE / TIME_PRECISION)

    def position(seconds: float, lowest: int) -> int:
        return min(max(round((seconds - request.window_start) / TIME_PRECISION), lowest), last_position)

    tokens: list[int] = []
    lowest = 0
    group: list[Word] = []
    for i, word in enumerate(words):
        group.append(word)
        if not (word.ends_segment or i == len(words) - 1):
            continue
        opening = position(group[0].start, lowest)
        tokens += [begin + opening, *tokenizer.encode("".join(w.text for w in group))]
        if word.ends_segment and i < len(words) - 1:
            lowest = position(word.end, opening + 1)
            tokens.append(begin + lowest)
        group = []
    return tokens


def _draft_covering(draft: Sequence[int], text: str, tokenizer: Tokenizer) -> int | None:
    """How many leading `draft` tokens spell `text`, or None when the draft does not begin with it."""
    said = ""
    for i, token in enumerate(draft):
        if token >= tokenizer.eot:
            continue
        said += tokenizer.decode([token])
        if len(said) < len(text):
            continue
        return i + 1 if said == text else None
    return None


def to_hypothesis(result: WindowResult) -> Hypothesis:
    """The model's window result as the session's plain hypothesis (times relative to the window)."""
    words: list[Word] = []
    for segment in result.segments:
        for j, w in enumerate(segment.words):
            closes = segment.complete and j == len(segment.words) - 1
            words.append(Word(w.word, float(w.start), float(w.end), float(w.probability), ends_segment=closes))
    probability = float(result.language_probs.get(result.language, 0.0)) if result.language_probs else 1.0
    return Hypothesis(
        words=tuple(words),
        language=result.language,
        language_probability=probability,
        avg_logprob=float(result.avg_logprob),
        no_speech_prob=float(result.no_speech_prob),
        compression_ratio=float(result.compression_ratio),
        tokens=tuple(result.tokens),
        language_probs=dict(result.language_probs) if result.language_probs else None,
    )
