"""Decoding 30-second windows into tokens: Whisper's search strategies and logit rules.

Modelled on openai/whisper's decoding.py, with explicit key/value caches: a batch of windows
(each row with its own prompt, rows left-padded to one length) is decoded together; rows
that finish leave the batch so they cost nothing more.

Greedy decoding can take a draft per row (the tokens a previous decode of much the same audio
gave, as a streaming daemon has): the draft is fed with the prompt in one pass, and each step
whose chosen token is the drafted one takes its next logits from that pass instead of running
the decoder again. A token that differs ends the draft. The tokens chosen are those of plain
greedy decoding (up to rounding: in low precision, a step's logits computed within the one pass
can differ in the last bits); the draft only saves decoder passes.

Each row can also be given forced tokens: a transcript of the window's start already known
(timestamps included), which the row's sampled tokens must begin with. Unlike
`DecodingOptions.prefix`, they are part of the result, the timestamp rules see them, and they
add nothing to the log probability. A streaming daemon forces the words it has committed, so the
decoder hears them in context without deciding them again.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from model.constants import CHUNK_LENGTH
from model.tokenizer import TASKS, Tokenizer, get_tokenizer, normalize_language
from model.whisper import EncodedAudio, KVCache, Whisper

TIME_PRECISION = 0.02  # seconds per timestamp token (30 s / 1500 audio positions)
MAX_DRAFT = 64  # draft tokens checked per row: their logits ([B, K, vocab] float32) are held at once


@dataclass(frozen=True)
class DecodingOptions:
    task: str = "transcribe"
    language: str | None = None  # None: detected per row (multilingual models); English-only: en
    temperature: float = 0.0  # 0: greedy (or beam search); > 0: sampling
    sample_len: int | None = None  # most tokens to sample; None: n_text_ctx // 2
    best_of: int | None = None  # independent samples per row at temperature > 0
    beam_size: int | None = None
    patience: float | None = None  # beam search stops after beam_size * patience finished sequences
    length_penalty: float | None = None  # None: rank by sum logprob / length; else Google NMT's alpha
    prompt: str | tuple[int, ...] | None = None  # previous text, after <|startofprev|>
    prefix: str | tuple[int, ...] | None = None  # forced start of this window's text
    suppress_tokens: str | tuple[int, ...] | None = "-1"  # "-1": the tokenizer's non-speech symbols
    suppress_blank: bool = True  # no blank or EOT as the first token
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0  # seconds

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "language", normalize_language(self.language))
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.sample_len is not None and self.sample_len < 1:
            raise ValueError(f"sample_len must be >= 1, got {self.sample_len}")
        if self.beam_size is not None and self.best_of is not None:
            raise ValueError("beam_size and best_of can't be given together")
        if self.temperature == 0 and self.best_of is not None:
            raise ValueError("best_of with greedy sampling (temperature 0) is not compatible")
        for name in ("beam_size", "best_of"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.patience is not None and self.beam_size is None:
            raise ValueError("patience requires beam_size to be given")
        if self.patience is not None and self.patience <= 0:
            raise ValueError(f"patience must be > 0, got {self.patience}")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise ValueError(f"length_penalty must be within [0, 1], got {self.length_penalty}")
        if self.max_initial_timestamp is not None and self.max_initial_timestamp < 0:
            raise ValueError(f"max_initial_timestamp must be >= 0, got {self.max_initial_timestamp}")
        for name in ("prompt", "prefix"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, tuple(int(t) for t in value))
        suppress = self.suppress_tokens
        if isinstance(suppress, str):
            suppress = tuple(int(t) for t in suppress.split(",") if t.strip())
        elif suppress is not None:
            suppress = tuple(int(t) for t in suppress)
        if suppress is not None and any(t < -1 for t in suppress):
            raise ValueError(f"suppress_tokens must be token ids or -1, got {self.suppress_tokens!r}")
        object.__setattr__(self, "suppress_tokens", suppress)


@dataclass(frozen=True)
class DecodingResult:
    language: str
    tokens: tuple[int, ...]  # sampled text and timestamp tokens, without EOT
    text: str
    avg_logprob: float
    sum_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    language_probs: dict[str, float] | None = None  # when the language was detected here


def compression_ratio(text: str) -> float:
    """How much zlib shrinks the text: high values mean repetitive (looping) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def model_tokenizer(model: Whisper, language: str | None = None, task: str | None = None) -> Tokenizer:
    if model.tokenizer_file is None:
        raise ValueError(f"model {model.name} has no tokenizer file")
    return get_tokenizer(
        model.tokenizer_file,
        multilingual=model.is_multilingual,
        num_languages=model.num_languages,
        language=language,
        task=task,
    )


# ---------------------------------------------------------------- language detection


def detect_language(model: Whisper, encoded: EncodedAudio, tokenizer: Tokenizer) -> tuple[Tensor, list[dict[str, float]]]:
    """The most likely language token of each row [B], and every language's probability."""
    if not model.is_multilingual:
        raise ValueError(f"{model.name} is an English-only model: it has no language detection")
    rows = len(encoded)
    cache = model.new_cache(encoded)
    logits = model.logits(torch.full((rows, 1), tokenizer.sot, device=model.device), cache)[:, 0]
    language_tokens = torch.tensor(tokenizer.all_language_tokens, device=logits.device)
    probs = logits.index_select(1, language_tokens).softmax(dim=-1)
    best = language_tokens[probs.argmax(dim=-1)]
    codes = tokenizer.all_language_codes
    return best, [dict(zip(codes, row)) for row in probs.tolist()]


# ---------------------------------------------------------------- logit filters


class LogitFilter(Protocol):
    def apply(self, logits: Tensor, sampled: Tensor) -> None:
        """Masks `logits` [N, V] in place given the tokens sampled so far [N, L]."""


class SuppressBlank:
    """No blank and no EOT as the first sampled token."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokens = [*tokenizer.encode(" "), tokenizer.eot]

    def apply(self, logits: Tensor, sampled: Tensor) -> None:
        if sampled.shape[1] == 0:
            logits[:, self.tokens] = -math.inf


class SuppressTokens:
    def __init__(self, tokens: Sequence[int]) -> None:
        self.tokens = torch.tensor(sorted(set(tokens)), dtype=torch.long)

    def apply(self, logits: Tensor, sampled: Tensor) -> None:
        if self.tokens.device != logits.device:
            self.tokens = self.tokens.to(logits.device)
        logits.index_fill_(1, self.tokens, -math.inf)


class ApplyTimestampRules:
    """Whisper's timestamp grammar, vectorised over rows.

    Timestamps come in pairs (a segment's end, then the next one's start) except the first
    and the last; they never decrease and a segment has a nonzero length; the first token is
    a timestamp no later than `max_initial_timestamp`; and when the timestamps together are
    more probable than any single text token, a timestamp is taken.
    """

    def __init__(self, tokenizer: Tokenizer, max_initial_timestamp_index: int | None) -> None:
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.timestamp_begin = tokenizer.timestamp_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index
        self._positions: Tensor | None = None

    def apply(self, logits: Tensor, sampled: Tensor) -> None:
        # Masks touch the timestamp columns, or whole rows picked by index: a step stays cheap.
        begin = self.timestamp_begin
        logits[:, self.no_timestamps] = -math.inf
        if sampled.shape[1] == 0:
            logits[:, :begin] = -math.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = -math.inf
        else:
            timestamps = logits[:, begin:]
            is_timestamp = sampled >= begin
            last = is_timestamp[:, -1]
            penultimate = is_timestamp[:, -2] if sampled.shape[1] >= 2 else torch.ones_like(last)
            # After a pair (or the opening timestamp) comes text; after text and a timestamp,
            # another timestamp or EOT.
            timestamps.masked_fill_((last & penultimate)[:, None], -math.inf)
            closing = last & ~penultimate
            closing_rows = closing.nonzero()[:, 0]
            if len(closing_rows):
                logits[closing_rows, : self.eot] = -math.inf
            # Timestamps are monotonic, so the last one is the largest; a segment is never empty.
            last_timestamp = torch.where(is_timestamp, sampled - begin, -1).amax(dim=1)
            lowest_allowed = torch.where(closing, last_timestamp, last_timestamp + 1)
            if self._positions is None or self._positions.device != logits.device or len(self._positions) != timestamps.shape[1]:
                self._positions = torch.arange(timestamps.shape[1], device=logits.device)
            timestamps.masked_fill_(self._positions[None] < lowest_allowed[:, None], -math.inf)
        # The timestamps' total probability against the best text token's (the normaliser cancels).
        timestamp_mass = logits[:, begin:].logsumexp(dim=-1)
        best_text = logits[:, :begin].amax(dim=-1)
        rows = (timestamp_mass > best_text).nonzero()[:, 0]
        if len(rows):
            logits[rows, :begin] = -math.inf


# ---------------------------------------------------------------- search strategies


@dataclass(frozen=True)
class Step:
    """What a strategy decided for one step: which rows go on (None: all, in order), their
    next tokens, and their running sum of log probabilities."""

    source: Tensor | None
    tokens: Tensor
    sum_logprobs: Tensor


Candidate = tuple[tuple[int, ...], float]  # sampled tokens without EOT, sum logprob


class SearchStrategy(Protocol):
    rows_per_audio: int

    def step(self, sampled: Tensor, logits: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> Step: ...

    def finished(self) -> list[list[Candidate]]:
        """Candidates of each audio so far (rows still running are added by `finalize`)."""

    def finalize(self, sampled: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> list[list[Candidate]]: ...


class SamplingStrategy:
    """Greedy (temperature 0) or sampling; `rows_per_audio` independent samples per audio."""

    def __init__(self, temperature: float, eot: int, n_audio: int, rows_per_audio: int) -> None:
        self.temperature = temperature
        self.eot = eot
        self.rows_per_audio = rows_per_audio
        self._finished: list[list[Candidate]] = [[] for _ in range(n_audio)]

    def step(self, sampled: Tensor, logits: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> Step:
        if self.temperature == 0:
            tokens = logits.argmax(dim=-1)
        else:
            tokens = torch.distributions.Categorical(logits=logits / self.temperature).sample()
        logprobs = logits.gather(1, tokens[:, None])[:, 0] - logits.logsumexp(dim=-1)
        sum_logprobs = sum_logprobs + logprobs
        ended = tokens == self.eot
        if not bool(ended.any()):
            return Step(None, tokens, sum_logprobs)
        ended_rows = ended.nonzero()[:, 0].tolist()
        scores = sum_logprobs[ended_rows].tolist()
        for row, score in zip(ended_rows, scores):
            self._finished[row_audio[row]].append((tuple(sampled[row].tolist()), score))
        keep = (~ended).nonzero()[:, 0]
        return Step(keep, tokens[keep], sum_logprobs[keep])

    def finished(self) -> list[list[Candidate]]:
        return self._finished

    def finalize(self, sampled: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> list[list[Candidate]]:
        for row, (tokens, score) in enumerate(zip(sampled.tolist(), sum_logprobs.tolist())):
            self._finished[row_audio[row]].append((tuple(tokens), score))
        return self._finished


class BeamSearchStrategy:
    """Beam search as in openai/whisper: each audio keeps `beam_size` running sequences and
    stops when it has `beam_size * patience` finished ones."""

    def __init__(self, beam_size: int, eot: int, n_audio: int, patience: float | None) -> None:
        self.rows_per_audio = beam_size
        self.eot = eot
        self.max_candidates = max(1, round(beam_size * (patience or 1.0)))
        self._finished: list[dict[tuple[int, ...], float]] = [{} for _ in range(n_audio)]

    def step(self, sampled: Tensor, logits: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> Step:
        beam = self.rows_per_audio
        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_logprobs, top_tokens = logprobs.topk(beam + 1, dim=-1)
        scores = (sum_logprobs[:, None] + top_logprobs).tolist()
        top_token_ids = top_tokens.tolist()
        prefixes = [tuple(row) for row in sampled.tolist()]
        rows_of: dict[int, list[int]] = {}
        for row, audio in enumerate(row_audio):
            rows_of.setdefault(audio, []).append(row)
        source: list[int] = []
        next_tokens: list[int] = []
        next_sums: list[float] = []
        for audio, rows in rows_of.items():
            # Rows of one audio start identical: keying by sequence keeps one copy of each.
            candidates: dict[tuple[int, ...], tuple[float, int]] = {}
            for row in rows:
                for score, token in zip(scores[row], top_token_ids[row]):
                    candidates[(*prefixes[row], token)] = (score, row)
            ended: dict[tuple[int, ...], float] = {}
            kept = 0
            kept_at = len(source)
            for sequence in sorted(candidates, key=lambda s: candidates[s][0], reverse=True):
                score, row = candidates[sequence]
                if score == -math.inf:
                    break  # impossible (a forced step allows one token): fewer rows go on
                if sequence[-1] == self.eot:
                    ended[sequence[:-1]] = score
                    continue
                source.append(row)
                next_tokens.append(sequence[-1])
                next_sums.append(score)
                kept += 1
                if kept == beam:
                    break
            done = self._finished[audio]
            for sequence in sorted(ended, key=lambda s: ended[s], reverse=True):
                if len(done) >= self.max_candidates:
                    break
                done[sequence] = ended[sequence]
            if len(done) >= self.max_candidates:  # this audio is complete: its rows leave
                del source[kept_at:], next_tokens[kept_at:], next_sums[kept_at:]
        device = logits.device
        return Step(
            torch.tensor(source, dtype=torch.long, device=device),
            torch.tensor(next_tokens, dtype=torch.long, device=device),
            torch.tensor(next_sums, dtype=sum_logprobs.dtype, device=device),
        )

    def finished(self) -> list[list[Candidate]]:
        return [list(done.items()) for done in self._finished]

    def finalize(self, sampled: Tensor, sum_logprobs: Tensor, row_audio: list[int]) -> list[list[Candidate]]:
        # Audios short of finished sequences take their best running ones.
        running = sorted(zip(sum_logprobs.tolist(), range(len(row_audio))), reverse=True)
        rows = sampled.tolist()
        for score, row in running:
            done = self._finished[row_audio[row]]
            if len(done) < self.rows_per_audio:
                done.setdefault(tuple(rows[row]), score)
        return self.finished()


class MaximumLikelihoodRanker:
    """Picks the candidate with the best length-normalised sum logprob."""

    def __init__(self, length_penalty: float | None) -> None:
        self.length_penalty = length_penalty

    def best(self, candidates: Sequence[Candidate]) -> Candidate:
        def score(candidate: Candidate) -> float:
            length = len(candidate[0])
            if self.length_penalty is None:
                penalty = max(length, 1)
            else:  # Google NMT's penalty, https://arxiv.org/abs/1609.08144
                penalty = ((5 + length) / 6) ** self.length_penalty
            return candidate[1] / penalty

        return max(candidates, key=score)


class Lookahead:
    """Logits computed ahead from draft tokens already fed to the cache (see the module docstring).

    `logits[:, j - skip]` is what the decoder says after the first j + 1 draft tokens; they
    stand only while every running row has chosen exactly its draft so far. The first `skip`
    steps are forced in every row (`ForcedTokens` overwrites their logits), so none were kept.
    """

    def __init__(self, draft: Tensor, logits: Tensor, cache_length: int, skip: int = 0) -> None:
        self.draft = draft  # [N, K] the running rows' drafts, -1 past the end of a row's draft
        self.logits = logits  # [N, K - skip, V]
        self.skip = skip
        self.used = 0  # draft tokens chosen so far
        self.start = cache_length - draft.shape[1]  # where the cache held the first draft token

    def select(self, rows: Tensor) -> None:
        """Keeps the running rows `rows` (finished rows left)."""
        self.draft, self.logits = self.draft[rows], self.logits[rows]

    def follow(self, chosen: Tensor) -> Tensor | None:
        """The next logits, if every row chose its draft token; else None."""
        j = self.used
        if j >= self.draft.shape[1] or not bool((chosen == self.draft[:, j]).all()):
            return None
        self.used += 1
        if j < self.skip:
            return self.logits.new_zeros((self.logits.shape[0], self.logits.shape[2]))  # forced next
        return self.logits[:, j - self.skip]

    @property
    def valid_length(self) -> int:
        """The cache length that holds only tokens really chosen (the rest is to be rewritten)."""
        return self.start + self.used


class ForcedTokens:
    """Each audio's forced tokens (see the module docstring): while a row is within its own,
    its logits allow that token alone, at log probability 0. Applied after every logit filter,
    so the forced transcript stands even where a rule would have decided otherwise."""

    def __init__(self, forced: Sequence[Sequence[int]], device: torch.device) -> None:
        self.lengths = [len(f) for f in forced]
        width = max(self.lengths, default=0)
        self._tokens = torch.tensor([list(f) + [-1] * (width - len(f)) for f in forced], dtype=torch.long, device=device).reshape(len(forced), width)

    def apply(self, logits: Tensor, sampled: Tensor, row_audio: list[int]) -> None:
        step = sampled.shape[1]
        if step >= self._tokens.shape[1]:
            return
        wanted = self._tokens[torch.tensor(row_audio, device=logits.device), step]
        rows = (wanted >= 0).nonzero()[:, 0]
        if len(rows):
            logits[rows] = -math.inf
            logits[rows, wanted[rows]] = 0.0


# ---------------------------------------------------------------- decoding a batch


def suppressed_tokens(options: DecodingOptions, tokenizer: Tokenizer) -> tuple[int, ...]:
    """The tokens never sampled: `options.suppress_tokens` and the special tokens."""
    suppress = options.suppress_tokens
    assert not isinstance(suppress, str), "DecodingOptions.__post_init__ parses it into token ids"
    tokens: set[int] = set(suppress or ())
    if -1 in tokens:
        tokens.discard(-1)
        tokens.update(tokenizer.non_speech_tokens)
    tokens.update((tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm, tokenizer.no_speech))
    return tuple(sorted(tokens))


def _text_tokens(value: str | Sequence[int] | None, tokenizer: Tokenizer) -> list[int]:
    if value is None:
        return []
    if isinstance(value, str):
        return tokenizer.encode(" " + value.strip()) if value.strip() else []
    return list(value)


def decode(
    model: Whisper,
    mel: Tensor,
    options: DecodingOptions = DecodingOptions(),
    prompts: Sequence[Sequence[int]] | None = None,
) -> list[DecodingResult]:
    """Decodes mel windows [B, n_mels, 3000] (or one window [n_mels, 3000]), one result per row.

    `prompts` gives each row its own previous-text tokens (instead of `options.prompt`).
    """
    if mel.ndim == 2:
        mel = mel[None]
    with torch.inference_mode():
        return decode_features(model, model.encode(mel), options, prompts)


def decode_features(
    model: Whisper,
    encoded: EncodedAudio,
    options: DecodingOptions,
    prompts: Sequence[Sequence[int]] | None = None,
    languages: Sequence[str] | None = None,
    drafts: Sequence[Sequence[int]] | None = None,
    forced: Sequence[Sequence[int]] | None = None,
) -> list[DecodingResult]:
    """Decodes encoded windows; `languages` (one per row) overrides
    `options.language` and detection. `drafts` (one per row, may be empty) are the tokens each
    row is expected to sample; greedy decoding checks them in one pass (see the module
    docstring), other strategies ignore them. `forced` (one per row, may be empty): the tokens
    each row's result must begin with (see the module docstring)."""
    n_audio = len(encoded)
    if prompts is not None and len(prompts) != n_audio:
        raise ValueError(f"{len(prompts)} prompts for {n_audio} windows")
    if drafts is not None and len(drafts) != n_audio:
        raise ValueError(f"{len(drafts)} drafts for {n_audio} windows")
    if forced is not None and len(forced) != n_audio:
        raise ValueError(f"{len(forced)} forced token lists for {n_audio} windows")
    if prompts is not None and options.prompt is not None:
        raise ValueError("give either options.prompt or per-row prompts, not both")
    language_probs: list[dict[str, float]] | None = None
    if not model.is_multilingual:
        languages = ["en"] * n_audio
    elif languages is None:
        if options.language is None:
            _, language_probs = detect_language(model, encoded, model_tokenizer(model))
            languages = [max(p, key=lambda code: p[code]) for p in language_probs]
        else:
            languages = [options.language] * n_audio
    elif len(languages) != n_audio:
        raise ValueError(f"{len(languages)} languages for {n_audio} windows")

    # Rows differ only in their language token and prompt; the rules depend on neither.
    tokenizers = [model_tokenizer(model, language, options.task) for language in languages]
    tokenizer = tokenizers[0]
    n_ctx = model.dims.n_text_ctx
    sample_len = options.sample_len or n_ctx // 2
    suffix = [] if not options.without_timestamps else [tokenizer.no_timestamps]
    suffix += _text_tokens(options.prefix, tokenizer)
    row_prompts = prompts if prompts is not None else [_text_tokens(options.prompt, tokenizer)] * n_audio
    rows = []
    for row_tokenizer, prompt in zip(tokenizers, row_prompts):
        head = [tokenizer.sot_prev, *list(prompt)[-(n_ctx // 2 - 1) :]] if len(prompt) else []
        rows.append(head + list(row_tokenizer.sot_sequence) + suffix)
    length = max(map(len, rows))
    pad_lengths = [length - len(row) for row in rows]
    device = model.device
    tokens = torch.tensor([[tokenizer.eot] * pad + row for pad, row in zip(pad_lengths, rows)], device=device)
    sot_index = length - len(tokenizer.sot_sequence) - len(suffix)
    sample_begin = length

    filters: list[LogitFilter] = []
    if options.suppress_blank:
        filters.append(SuppressBlank(tokenizer))
    filters.append(SuppressTokens(suppressed_tokens(options, tokenizer)))
    if not options.without_timestamps:
        max_initial = None
        if options.max_initial_timestamp is not None:
            max_initial = round(options.max_initial_timestamp / (CHUNK_LENGTH / model.dims.n_audio_ctx))
        filters.append(ApplyTimestampRules(tokenizer, max_initial))

    strategy: SearchStrategy
    if options.beam_size is not None:
        strategy = BeamSearchStrategy(options.beam_size, tokenizer.eot, n_audio, options.patience)
    else:
        per_audio = options.best_of if options.temperature > 0 and options.best_of else 1
        strategy = SamplingStrategy(options.temperature, tokenizer.eot, n_audio, per_audio)

    forcing = None
    forced_lengths = [0] * n_audio
    if forced is not None and any(forced):
        forced = [list(f)[: max(0, min(sample_len, n_ctx - length) - 1)] for f in forced]  # room for EOT
        forcing = ForcedTokens(forced, device)
        forced_lengths = forcing.lengths
        # A draft that does not go on from the forced tokens is no use; the forced ones are one.
        drafts = [d if list(d[: len(f)]) == f else f for d, f in zip(drafts or [()] * n_audio, forced)]
    cache = model.new_cache(encoded, torch.tensor(pad_lengths, device=device) if any(pad_lengths) else None)
    draft = None
    skip = max(0, min(forced_lengths) - 1)  # steps forced in every row: their logits are not needed
    if drafts is not None and options.temperature == 0 and options.beam_size is None:
        draft = _draft_tensor(drafts, min(skip + MAX_DRAFT, sample_len, n_ctx - length), device)
    if draft is None:
        skip = 0
        first = model.logits(tokens, cache, positions=[sot_index, length - 1])
    else:
        # The drafts go in with the prompt; a padded place (-1) is fed EOT and never matches.
        skip = min(skip, draft.shape[1] - 1)
        fed = torch.cat([tokens, draft.clamp(min=0).masked_fill(draft < 0, tokenizer.eot)], dim=1)
        first = model.logits(fed, cache, positions=[sot_index, length - 1, *range(length + skip, fed.shape[1])])
    no_speech_probs = first[:, 0].softmax(dim=-1)[:, tokenizer.no_speech].tolist()
    logits = first[:, 1]
    lookahead = None if draft is None else Lookahead(draft, first[:, 2:], cache.length, skip)
    row_audio = list(range(n_audio))
    if strategy.rows_per_audio > 1:
        repeat = torch.arange(n_audio, device=device).repeat_interleave(strategy.rows_per_audio)
        cache.reorder(repeat)
        tokens, logits, row_audio = tokens[repeat], logits[repeat], repeat.tolist()
    sum_logprobs = torch.zeros(tokens.shape[0], device=device)
    candidates = _search(model, cache, tokens, logits, sum_logprobs, row_audio, filters, strategy, sample_begin, sample_len, lookahead, forcing)

    ranker = MaximumLikelihoodRanker(options.length_penalty)
    results = []
    for audio, audio_candidates in enumerate(candidates):
        sampled, sum_logprob = ranker.best(audio_candidates)
        row_tokenizer = tokenizers[audio]
        text = row_tokenizer.decode(sampled).strip()
        results.append(
            DecodingResult(
                language=languages[audio],
                tokens=sampled,
                text=text,
                avg_logprob=sum_logprob / (len(sampled) - min(len(sampled), forced_lengths[audio]) + 1),
                sum_logprob=sum_logprob,
                no_speech_prob=no_speech_probs[audio],
                temperature=options.temperature,
                compression_ratio=compression_ratio(text),
                language_probs=language_probs[audio] if language_probs is not None else None,
            )
        )
    return results


def _search(
    model: Whisper,
    cache: KVCache,
    tokens: Tensor,
    logits: Tensor,
    sum_logprobs: Tensor,
    row_audio: list[int],
    filters: Sequence[LogitFilter],
    strategy: SearchStrategy,
    sample_begin: int,
    sample_len: int,
    lookahead: Lookahead | None = None,
    forcing: ForcedTokens | None = None,
) -> list[list[Candidate]]:
    """The token-by-token loop: filter, choose, feed the chosen tokens.

    `tokens`, `sum_logprobs` and `row_audio` describe the running rows; `slots` says which
    cache row each one is. A finished row stays in the cache (fed a dummy token, its output
    unused) until a quarter of the cache is finished: dropping rows copies the whole cache,
    and an idle row costs only its cross-attention each step. While every row chooses its
    draft token, `lookahead` has the next logits and the decoder is not run.
    """
    n_ctx = model.dims.n_text_ctx
    slots: Tensor | None = None  # None: the running rows are the cache rows, in order
    for _ in range(sample_len):
        sampled = tokens[:, sample_begin:]
        for logit_filter in filters:
            logit_filter.apply(logits, sampled)
        if forcing is not None:
            forcing.apply(logits, sampled, row_audio)
        step = strategy.step(sampled, logits, sum_logprobs, row_audio)
        if step.source is not None:  # rows finished, or beams moved
            row_audio = [row_audio[i] for i in step.source.tolist()]
            if not row_audio:
                return strategy.finished()
            tokens = tokens[step.source]
            moved = step.source if slots is None else slots[step.source]
            only_dropped = bool((moved[1:] > moved[:-1]).all())
            if only_dropped and len(row_audio) == cache.batch_size:
                slots = None  # nothing moved
            elif only_dropped and 4 * (cache.batch_size - len(row_audio)) < cache.batch_size:
                slots = moved
            else:
                cache.reorder(moved)
                slots = None
            if lookahead is not None:
                lookahead.select(step.source)
        tokens = torch.cat([tokens, step.tokens[:, None]], dim=1)
        sum_logprobs = step.sum_logprobs
        if tokens.shape[1] > n_ctx:
            break
        if lookahead is not None:
            ahead = lookahead.follow(step.tokens)
            if ahead is not None:
                logits = ahead
                continue
            cache.length = lookahead.valid_length  # the rest of the draft is overwritten from here
            lookahead = None
        if slots is None:
            logits = model.logits(tokens[:, -1:], cache)[:, -1]
        else:
            feed = torch.zeros((cache.batch_size, 1), dtype=tokens.dtype, device=tokens.device)
            feed[slots, 0] = step.tokens
            logits = model.logits(feed, cache)[:, -1].index_select(0, slots)
    return strategy.finalize(tokens[:, sample_begin:], sum_logprobs, row_audio)


def _draft_tensor(drafts: Sequence[Sequence[int]], limit: int, device: torch.device) -> Tensor | None:
    """Drafts as one [B, K] tensor padded with -1 (at most `limit` tokens); None when all are empty."""
    width = min(limit, max(map(len, drafts), default=0))
    if width <= 0:
        return None
    rows = [list(d)[:width] for d in drafts]
    return torch.tensor([row + [-1] * (width - len(row)) for row in rows], dtype=torch.long, device=device)
