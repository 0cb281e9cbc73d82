"""model/decoding.py: search, logit rules and language detection, on the real model and clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.audio import load_audio, log_mel_spectrogram, pad_or_trim
from model.decoding import (
    ApplyTimestampRules,
    DecodingOptions,
    decode,
    decode_features,
    detect_language,
    model_tokenizer,
    suppressed_tokens,
)
from tests.conftest import clip_by_id

SHORT_CLIPS = ("ls_1272-128104-0000", "lj_LJ001-0002")


def _mel(clips) -> torch.Tensor:
    return log_mel_spectrogram(np.stack([pad_or_trim(load_audio(c.path)) for c in clips]))


@pytest.fixture(scope="module")
def short_mel(shared_data) -> torch.Tensor:
    return _mel([clip_by_id(shared_data, i) for i in SHORT_CLIPS])


@pytest.fixture(scope="module")
def tokenizer(tiny_en):
    return model_tokenizer(tiny_en)


# ---------------------------------------------------------------- options


def test_options_are_validated():
    with pytest.raises(ValueError):
        DecodingOptions(beam_size=5, best_of=5, temperature=0.5)
    with pytest.raises(ValueError):
        DecodingOptions(best_of=5)  # sampling several at temperature 0 makes no sense
    with pytest.raises(ValueError):
        DecodingOptions(patience=2.0)
    with pytest.raises(ValueError):
        DecodingOptions(length_penalty=1.5)
    with pytest.raises(ValueError):
        DecodingOptions(task="summarize")
    with pytest.raises(ValueError):
        DecodingOptions(language="klingon")
    assert DecodingOptions(language="English").language == "en"
    assert DecodingOptions(suppress_tokens="-1,220").suppress_tokens == (-1, 220)
    assert DecodingOptions(prompt=[1, 2]).prompt == (1, 2)  # type: ignore[arg-type]  # lists are accepted at run time


# ---------------------------------------------------------------- timestamp rules


def _rules(tokenizer, max_initial: int | None = 50) -> ApplyTimestampRules:
    return ApplyTimestampRules(tokenizer, max_initial)


def _allowed(rules, tokenizer, sampled: list[int], logits: torch.Tensor | None = None) -> torch.Tensor:
    if logits is None:  # text more likely than timestamps, so only the grammar masks
        logits = torch.zeros(1, tokenizer.timestamp_begin + 1501)
        logits[0, tokenizer.timestamp_begin :] = -10.0
    logits = logits.clone()
    rules.apply(logits, torch.tensor([sampled], dtype=torch.long).reshape(1, -1))
    return torch.isfinite(logits[0])


def test_timestamps_come_first_and_early(tokenizer):
    begin = tokenizer.timestamp_begin
    allowed = _allowed(_rules(tokenizer, 50), tokenizer, [])
    assert not allowed[:begin].any()  # no text, no EOT before the first timestamp
    assert allowed[begin : begin + 51].all() and not allowed[begin + 51 :].any()  # <= 1.00 s


def test_timestamps_pair_up(tokenizer):
    begin, eot = tokenizer.timestamp_begin, tokenizer.eot
    text = tokenizer.encode(" hello")[0]
    rules = _rules(tokenizer)
    # After the opening timestamp: text only.
    allowed = _allowed(rules, tokenizer, [begin])
    assert not allowed[begin:].any() and allowed[text]
    # After text: text, EOT or a closing timestamp.
    allowed = _allowed(rules, tokenizer, [begin, text])
    assert allowed[text] and allowed[eot] and allowed[begin + 1]
    # After text and a closing timestamp: the next segment's timestamp or EOT, no text.
    allowed = _allowed(rules, tokenizer, [begin, text, begin + 20])
    assert not allowed[:eot].any() and allowed[eot] and allowed[begin + 20]
    # After a pair: text again.
    allowed = _allowed(rules, tokenizer, [begin, text, begin + 20, begin + 20])
    assert not allowed[begin:].any() and allowed[text]
    assert not allowed[tokenizer.no_timestamps]


def test_timestamps_never_go_back(tokenizer):
    begin = tokenizer.timestamp_begin
    text = tokenizer.encode(" hello")[0]
    rules = _rules(tokenizer)
    # A segment has a nonzero length: its end is after its start.
    allowed = _allowed(rules, tokenizer, [begin + 10, text])
    assert not allowed[begin : begin + 11].any() and allowed[begin + 11]
    # The next segment starts no earlier than the previous one ended.
    allowed = _allowed(rules, tokenizer, [begin + 10, text, text, begin + 30])
    assert not allowed[begin : begin + 30].any() and allowed[begin + 30 :].all()


def test_timestamp_mass_beats_best_text_token(tokenizer):
    begin = tokenizer.timestamp_begin
    text = tokenizer.encode(" hello")[0]
    rules = _rules(tokenizer)
    logits = torch.full((1, begin + 1501), -30.0)
    logits[0, text] = 2.0
    logits[0, begin + 20 : begin + 30] = 0.0  # each less likely than the text token, together more
    allowed = _allowed(rules, tokenizer, [begin, text], logits)
    assert not allowed[:begin].any()
    logits[0, begin + 20 : begin + 30] = -1.0  # together less likely: text stays allowed
    allowed = _allowed(rules, tokenizer, [begin, text], logits)
    assert allowed[text]


def _reference_rules(tokenizer, logits: torch.Tensor, tokens: list[list[int]], max_initial: int) -> torch.Tensor:
    """openai/whisper's ApplyTimestampRules loop, row by row, as the reference."""
    logits = logits.clone()
    begin = tokenizer.timestamp_begin
    logits[:, tokenizer.no_timestamps] = -math.inf
    for k, seq in enumerate(tokens):
        last_was_timestamp = len(seq) >= 1 and seq[-1] >= begin
        penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= begin
        if last_was_timestamp:
            if penultimate_was_timestamp:
                logits[k, begin:] = -math.inf
            else:
                logits[k, : tokenizer.eot] = -math.inf
        timestamps = [t for t in seq if t >= begin]
        if timestamps:
            last = timestamps[-1] if last_was_timestamp and not penultimate_was_timestamp else timestamps[-1] + 1
            logits[k, begin:last] = -math.inf
    if len(tokens[0]) == 0:
        logits[:, :begin] = -math.inf
        logits[:, begin + max_initial + 1 :] = -math.inf
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for k in range(len(tokens)):
        if logprobs[k, begin:].logsumexp(dim=-1) > logprobs[k, :begin].max():
            logits[k, :begin] = -math.inf
    return logits


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_vectorised_rules_match_openai_loop(tokenizer, data):
    begin = tokenizer.timestamp_begin
    rows = data.draw(st.integers(1, 4))
    length = data.draw(st.integers(0, 6))
    # Sequences that follow the grammar so far: monotonic timestamps mixed with text.
    tokens = []
    for _ in range(rows):
        seq, time = [], 0
        for _ in range(length):
            if data.draw(st.booleans()):
                time = data.draw(st.integers(time, time + 40))
                seq.append(begin + time)
            else:
                seq.append(data.draw(st.sampled_from([220, 257, 1000, 13])))
        tokens.append(seq)
    seed = data.draw(st.integers(0, 2**16))
    logits = torch.randn(rows, begin + 1501, generator=torch.Generator().manual_seed(seed)) * 3
    expected = _reference_rules(tokenizer, logits, tokens, 50)
    actual = logits.clone()
    ApplyTimestampRules(tokenizer, 50).apply(actual, torch.tensor(tokens, dtype=torch.long).reshape(rows, length))
    assert torch.equal(torch.isfinite(actual), torch.isfinite(expected))


# ---------------------------------------------------------------- search, on the real model


def _hf_greedy(tiny_en, mel: torch.Tensor, prompt: list[int], suppress: list[int], eot: int) -> list[tuple[int, ...]]:
    transformers = pytest.importorskip("transformers")
    from model.convert import to_hf_state_dict
    from model.weights import load_checkpoint

    config, state_dict = to_hf_state_dict(load_checkpoint(tiny_en.name))
    reference = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config)).eval()
    loaded = reference.load_state_dict(state_dict, strict=False)
    assert not loaded.missing_keys and not loaded.unexpected_keys
    with torch.inference_mode():
        output = reference.generate(
            mel,
            decoder_input_ids=torch.tensor([prompt] * mel.shape[0]),
            suppress_tokens=suppress,
            begin_suppress_tokens=[*_blank_tokens(tiny_en), eot],
            do_sample=False,
            num_beams=1,
            max_new_tokens=224,
        ).tolist()
    rows = []
    for row in output:
        row = row[len(prompt) :] if row[: len(prompt)] == prompt else row  # versions differ in echoing the prompt
        rows.append(tuple(row[: row.index(eot)] if eot in row else row))
    return rows


def _blank_tokens(model) -> list[int]:
    return model_tokenizer(model).encode(" ")


def test_greedy_matches_transformers_generate(tiny_en, short_mel, tokenizer):
    options = DecodingOptions(without_timestamps=True)
    ours = decode(tiny_en, short_mel, options)
    expected = _hf_greedy(
        tiny_en, short_mel, list(tokenizer.sot_sequence_including_notimestamps), list(suppressed_tokens(options, tokenizer)), tokenizer.eot
    )
    assert [r.tokens for r in ours] == expected
    assert all(r.text and r.avg_logprob < 0 and 0 <= r.no_speech_prob <= 1 for r in ours)


def test_batch_equals_rows_alone_and_beam_beats_greedy(tiny_en, short_mel, tokenizer):
    with torch.inference_mode():
        features = tiny_en.encode(short_mel)
        prompts = [tokenizer.encode(" The president spoke."), tokenizer.encode(" Printing, in the only sense.")[:3]]
        batched = decode_features(tiny_en, features, DecodingOptions(), prompts)
        alone = [decode_features(tiny_en, features.select([i]), DecodingOptions(), [prompts[i]])[0] for i in range(2)]
        assert [r.tokens for r in batched] == [r.tokens for r in alone]
        for a, b in zip(batched, alone):
            assert a.sum_logprob == pytest.approx(b.sum_logprob, abs=1e-3)
            assert a.no_speech_prob == pytest.approx(b.no_speech_prob, abs=1e-4)
        # Timestamps: the first token is one, the text ends with one.
        begin = tokenizer.timestamp_begin
        assert all(r.tokens[0] >= begin and r.tokens[-1] >= begin for r in batched)

        greedy = decode_features(tiny_en, features, DecodingOptions(without_timestamps=True))
        beam = decode_features(tiny_en, features, DecodingOptions(without_timestamps=True, beam_size=5))
        for g, b in zip(greedy, beam):
            assert b.sum_logprob >= g.sum_logprob - 1e-4
            assert b.text


def count_decoder_passes(model, monkeypatch) -> list[int]:
    """A list that grows by one per decoder pass of `model` (its `logits` calls)."""
    passes: list[int] = []
    logits = model.logits

    def counted(*args, **kwargs):
        passes.append(1)
        return logits(*args, **kwargs)

    monkeypatch.setattr(model, "logits", counted)
    return passes


def test_a_draft_changes_no_token_and_saves_decoder_passes(tiny_en, short_mel, tokenizer, monkeypatch):
    passes = count_decoder_passes(tiny_en, monkeypatch)

    def run(features, drafts=None, prompts=None):
        passes.clear()
        results = decode_features(tiny_en, features, DecodingOptions(), prompts, drafts=drafts)
        return [(r.tokens, round(r.sum_logprob, 3), round(r.no_speech_prob, 4)) for r in results], len(passes)

    with torch.inference_mode():
        features = tiny_en.encode(short_mel)
        one = features.select([0])
        (plain,), plain_passes = run(one)
        tokens = list(plain[0])
        assert len(tokens) > 10
        # The right draft: one pass for prompt and draft, EOT included.
        assert run(one, [tokens]) == ([plain], 1)
        # A draft that goes wrong halfway: decoded on from there, the same tokens.
        wrong = tokens[: len(tokens) // 2] + [tokenizer.encode(" banana")[0]] * 5
        same, passes_wrong = run(one, [wrong])
        assert same == [plain] and passes_wrong == plain_passes - len(tokens) // 2
        # Wrong from the start, longer than the text, or empty: the same tokens still.
        assert run(one, [[tokenizer.timestamp_begin + 7] + tokens])[0] == [plain]
        assert run(one, [tokens + tokens])[0] == [plain]
        assert run(one, [[]]) == ([plain], plain_passes)
        # Rows of a batch with different drafts (and a left-padded prompt): as without drafts.
        prompts = [tokenizer.encode(" The president spoke."), []]
        batch, _ = run(features, prompts=prompts)
        drafted, batch_passes = run(features, [list(batch[0][0]), list(batch[1][0])[:4]], prompts)
        assert drafted == batch and batch_passes < plain_passes


def test_forced_tokens_begin_the_result_and_the_decode_goes_on_from_them(tiny_en, short_mel, tokenizer, monkeypatch):
    passes = count_decoder_passes(tiny_en, monkeypatch)
    begin = tokenizer.timestamp_begin
    with torch.inference_mode():
        features = tiny_en.encode(short_mel)
        plain = decode_features(tiny_en, features, DecodingOptions())
        passes.clear()
        decode_features(tiny_en, features.select([0]), DecodingOptions())
        plain_passes = len(passes)
        tokens = list(plain[0].tokens)
        # Its own first half forced on row 0, nothing on row 1: both decode as without.
        half = tokens[: len(tokens) // 2]
        passes.clear()
        forced = decode_features(tiny_en, features, DecodingOptions(), forced=[half, []])
        assert [r.tokens for r in forced] == [r.tokens for r in plain]
        assert forced[1].sum_logprob == pytest.approx(plain[1].sum_logprob, abs=1e-3)
        # The forced tokens add nothing to the log probability; the average is over the rest.
        assert forced[0].sum_logprob > plain[0].sum_logprob
        assert forced[0].avg_logprob == pytest.approx(forced[0].sum_logprob / (len(tokens) - len(half) + 1))
        passes.clear()
        decode_features(tiny_en, features.select([0]), DecodingOptions(), forced=[half])
        assert len(passes) == plain_passes - len(half)  # fed in one pass, like a draft
        # Words the audio does not hold: kept as given, and the timestamps go on after them.
        made_up = [begin, *tokenizer.encode(" Bananas are yellow."), begin + 40]
        for options in (DecodingOptions(), DecodingOptions(beam_size=3)):
            result = decode_features(tiny_en, features.select([0]), options, forced=[made_up])[0]
            assert list(result.tokens[: len(made_up)]) == made_up
            rest = [t - begin for t in result.tokens[len(made_up) :] if t >= begin]
            assert rest and rest[0] >= 40 and rest == sorted(rest)
            assert len(tokenizer.decode(result.tokens[len(made_up) :]).split()) > 3


def test_sampling_gives_text_at_temperature(tiny_en, short_mel):
    torch.manual_seed(0)
    results = decode(tiny_en, short_mel[:1], DecodingOptions(temperature=0.4, best_of=3))
    assert results[0].temperature == 0.4 and "apostle" in results[0].text.lower()


def test_language_detection(base_model, shared_data):
    clips = [clip_by_id(shared_data, i) for i in ("picovoice_de", "picovoice_es", "picovoice_fr")]
    tokenizer = model_tokenizer(base_model)
    with torch.inference_mode():
        features = base_model.encode(_mel(clips))
        tokens, probs = detect_language(base_model, features, tokenizer)
    assert [max(p, key=lambda code: p[code]) for p in probs] == ["de", "es", "fr"]
    assert tokens.tolist() == [tokenizer.to_language_token(c) for c in ("de", "es", "fr")]
    assert all(len(p) == base_model.num_languages and abs(sum(p.values()) - 1) < 1e-4 for p in probs)
    # decode() detects the language itself when none is given.
    results = decode_features(base_model, features, DecodingOptions(without_timestamps=True, sample_len=8))
    assert [r.language for r in results] == ["de", "es", "fr"] and all(r.language_probs for r in results)
