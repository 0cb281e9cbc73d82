"""Word error rate with Whisper's English text normaliser (see ../shared/data/SOURCES.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    # The normaliser deletes anything in brackets; some references put spoken words there.
    # It also leaves an ellipsis ("there for...", Whisper's mark of speech trailing off) as a
    # lone "." word, so ellipses go first: punctuation is not a word.
    return _english_normalizer()(re.sub(r"[()\[\]]|\.{2,}|…", " ", text))


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level WER (total edits / total reference words) after normalising both sides."""
    import jiwer

    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty reference to score against")
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


CHARACTER_LANGUAGES = frozenset({"zh", "ja", "ko"})  # scored per character (CER): words are not space-separated


@lru_cache(maxsize=1)
def _basic_normalizer():
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def normalize_any(text: str, language: str) -> str:
    """Whisper's normaliser for `language`: the English one for English, else the basic one
    (lower case, no punctuation or symbols; letters and diacritics kept)."""
    return normalize(text) if language == "en" else " ".join(_basic_normalizer()(text).split())


def error_rate(language: str, references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level CER for zh/ja/ko (spaces dropped), WER otherwise, after normalising both sides."""
    if language == "en":
        return word_error_rate(references, hypotheses)
    import jiwer

    refs = [normalize_any(r, language) for r in references]
    hyps = [normalize_any(h, language) for h in hypotheses]
    if language in CHARACTER_LANGUAGES:
        refs, hyps = [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty reference to score against")
    measure = jiwer.cer if language in CHARACTER_LANGUAGES else jiwer.wer
    return float(measure([r for r, _ in pairs], [h for _, h in pairs]))
