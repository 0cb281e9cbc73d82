"""model/: weights, features, tokenizer and network against transformers' Whisper as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.audio import N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim, resample
from model.tokenizer import get_tokenizer
from model.weights import build_model, load_checkpoint
from tests.conftest import clip_by_id

transformers = pytest.importorskip("transformers")


def _hf_model(checkpoint):
    from model.convert import to_hf_state_dict

    config, sd = to_hf_state_dict(checkpoint)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config)).eval()
    result = model.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys and not result.missing_keys
    return model


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_transformers(shared_data, n_mels):
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    clips = [c for c in shared_data if c.kind in ("short", "multilingual")][::4]
    audios = [load_audio(c.path) for c in clips]
    ours = log_mel_spectrogram(np.stack([pad_or_trim(a) for a in audios]), n_mels=n_mels)
    for audio, mel in zip(audios, ours):
        reference = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
        assert mel.shape == reference.shape == (n_mels, 3000)
        assert np.abs(mel.numpy() - reference).max() < 1e-3


def test_load_audio_resamples_and_pads(shared_data, tmp_path):
    clip = clip_by_id(shared_data, "jfk_inaugural_excerpt")
    audio = load_audio(clip.path)
    assert audio.dtype == np.float32 and abs(len(audio) / 16000 - clip.duration_s) < 0.01
    up = resample(audio, 16000, 44100)
    assert abs(len(up) - len(audio) * 44100 / 16000) < 2
    assert pad_or_trim(audio).shape == (N_SAMPLES,)
    assert torch.equal(pad_or_trim(torch.ones(10)), torch.cat([torch.ones(10), torch.zeros(N_SAMPLES - 10)]))
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"not audio at all")
    from model.audio import AudioLoadError

    with pytest.raises(AudioLoadError):
        load_audio(bogus)


@pytest.mark.parametrize("name", ["tiny.en", "base"])
@pytest.mark.slow  # loads a real model
def test_tokenizer_matches_transformers(shared_data, name):
    checkpoint = load_checkpoint(name)
    multilingual = checkpoint.dims.is_multilingual
    ours = get_tokenizer(checkpoint.tokenizer_file, multilingual=multilingual, language="en" if multilingual else None)
    reference = transformers.WhisperTokenizerFast(tokenizer_file=str(checkpoint.tokenizer_file))
    for clip in shared_data:
        if clip.text:
            text = " " + clip.text
            ids = ours.encode(text)
            assert ids == reference.encode(text, add_special_tokens=False)
            assert ours.decode(ids) == reference.decode(ids) == text
    for special in ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startofprev|>", "<|notimestamps|>", "<|en|>"):
        assert ours.tokenizer.token_to_id(special) == reference.convert_tokens_to_ids(special)
    # Timestamps follow <|notimestamps|>: 1501 of them fill the vocabulary exactly.
    assert ours.timestamp_begin == ours.no_timestamps + 1
    assert ours.timestamp_begin + 1500 == checkpoint.dims.n_vocab - 1
    ids = [ours.timestamp_begin, *ours.encode(" Hello."), ours.timestamp_begin + 54]
    assert ours.decode_with_timestamps(ids) == "<|0.00|> Hello.<|1.08|>"
    assert ours.decode(ids) == " Hello."
    assert len(ours.non_speech_tokens) > 50 and ours.encode(" (")[0] in ours.non_speech_tokens


@pytest.mark.slow  # loads a real model
def test_tokenizer_languages_and_words():
    checkpoint = load_checkpoint("base")
    tokenizer = get_tokenizer(checkpoint.tokenizer_file, multilingual=True, language="German", task="translate")
    assert tokenizer.language == "de" and len(tokenizer.all_language_codes) == 99
    assert tokenizer.all_language_codes[:4] == ("en", "zh", "de", "es")
    assert tokenizer.sot_sequence == (tokenizer.sot, tokenizer.to_language_token("de"), tokenizer.translate)
    words, tokens = tokenizer.split_to_word_tokens(tokenizer.encode(" Guten Tag, Welt."))
    assert "".join(words) == " Guten Tag, Welt." and sum(map(len, tokens)) == len(tokenizer.encode(" Guten Tag, Welt."))
    with pytest.raises(ValueError):
        get_tokenizer(checkpoint.tokenizer_file, multilingual=True, language="klingon")


@pytest.mark.parametrize("name", ["tiny.en", "base"])
@pytest.mark.slow  # loads a real model
def test_logits_match_transformers(shared_data, name):
    checkpoint = load_checkpoint(name)
    ours = build_model(checkpoint, "cpu", "float32")
    reference = _hf_model(checkpoint)
    tokenizer = get_tokenizer(ours.tokenizer_file, multilingual=ours.is_multilingual, language="en")
    clips = [clip_by_id(shared_data, "jfk_inaugural_excerpt"), clip_by_id(shared_data, "ls_1272-128104-0000")]
    mel = log_mel_spectrogram(np.stack([pad_or_trim(load_audio(c.path)) for c in clips]))
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    rows = [prompt + tokenizer.encode(" " + c.text)[:12] for c in clips]
    tokens = torch.tensor(rows)
    with torch.inference_mode():
        expected = reference(input_features=mel, decoder_input_ids=tokens).logits
        actual = ours(mel, tokens)
        assert (actual - expected).abs().max() < 1e-3

        # The key/value cache, fed token by token, gives the same logits.
        cache = ours.new_cache(ours.encode(mel))
        steps = [ours.logits(tokens[:, :4], cache)] + [ours.logits(tokens[:, i : i + 1], cache) for i in range(4, tokens.shape[1])]
        assert (torch.cat(steps, dim=1) - expected).abs().max() < 1e-3

        # Left padding (rows with prompts of other lengths) leaves a row's logits unchanged.
        padded = torch.cat([torch.full((2, 3), tokenizer.eot), tokens], dim=1)
        cache = ours.new_cache(ours.encode(mel), pad_lengths=torch.tensor([3, 3]))
        assert (ours.logits(padded, cache)[:, 3:] - expected).abs().max() < 1e-3


@pytest.mark.slow  # loads a real model
def test_conversion_round_trip(tmp_path):
    from model.convert import main as convert

    original = load_checkpoint("tiny.en")
    assert convert(["tiny.en", str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert convert([str(tmp_path / "hf"), str(tmp_path / "tiny.pt"), "--to", "openai"]) == 0
    from_hf = load_checkpoint(tmp_path / "hf")
    from_pt = load_checkpoint(tmp_path / "tiny.pt")
    for checkpoint in (from_hf, from_pt):
        assert checkpoint.dims == original.dims
        assert checkpoint.alignment_heads == original.alignment_heads
        assert checkpoint.state_dict.keys() == original.state_dict.keys()
        for key, value in original.state_dict.items():
            # The shipped weights are float16, so the float16 .pt loses nothing.
            assert torch.equal(checkpoint.state_dict[key], value), key
    assert from_hf.tokenizer_file.name == "tokenizer.json"


@pytest.mark.slow  # loads a real model
def test_int8_and_short_names():
    from model.weights import load_model, resolve

    with pytest.raises(FileNotFoundError, match=r"tiny\.en"):
        resolve("no-such-model")
    model = load_model("tiny.en", device="cpu", dtype="int8")
    full = load_model("tiny.en", device="cpu", dtype="float32")
    mel = log_mel_spectrogram(torch.zeros(1, N_SAMPLES))
    tokens = torch.tensor([[50257, 50362]])
    with torch.inference_mode():
        quantised, exact = model(mel, tokens), full(mel, tokens)
    assert quantised.shape == exact.shape
    assert quantised[0, -1].argmax() == exact[0, -1].argmax()


def test_bfloat16_cross_attention_of_a_decoding_step_matches_float32():
    """A decoding step's attention over the audio frames takes a hand-written path in CPU
    bfloat16 (faster than the SDPA kernel there); it must give what float32 SDPA gives."""
    from model.whisper import SHORT_QUERY, MultiHeadAttention

    torch.manual_seed(0)
    attention = MultiHeadAttention(384, 6).eval()
    audio = torch.randn(2, 1500, 384)
    with torch.inference_mode():
        for rows in (1, SHORT_QUERY):
            x = torch.randn(2, rows, 384)
            expected = attention.attend(x, *attention.keys_values(audio))
            half = attention.to(torch.bfloat16)
            got = half.attend(x.bfloat16(), *half.keys_values(audio.bfloat16())).float()
            attention.float()
            assert torch.allclose(got, expected, atol=3e-2, rtol=3e-2), (got - expected).abs().max()
            assert (got - expected).abs().mean() < 5e-3
