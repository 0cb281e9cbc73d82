"""benchmarks/wer.py: the normaliser and the error rates every accuracy bar is judged on, against
hand-counted substitutions (S), deletions (D) and insertions (I): WER = (S + D + I) / reference words."""

from __future__ import annotations

import pytest

from benchmarks.wer import error_rate, normalize, normalize_any, word_error_rate

# ---- the normaliser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("Ask not what your country can do for you.", "ask not what your country can do for you"),
        ("Ask not [what] your country", "ask not what your country"),  # bracketed words are spoken words here
        ("He said (quietly) hello", "he said quietly hello"),
        ("and there for...", "and there for"),  # an ellipsis is not a word
        ("and there for…", "and there for"),
        ("Don't STOP, we're here!", "do not stop we are here"),
        ("Mr. Smith has ten dollars.", "mister smith has $10"),  # Whisper's English normaliser: titles, numbers
        ("Hmm, uh, okay", "okay"),  # hesitations are not scored
    ],
)
def test_english_normaliser(text: str, normal: str) -> None:
    assert normalize(text) == normal


def test_other_languages_keep_their_letters_and_lose_punctuation_and_case() -> None:
    assert normalize_any("Guten Tag,  Welt!  Für dich.", "de") == "guten tag welt für dich"
    assert normalize_any("Don't STOP.", "en") == "do not stop"  # English: the English normaliser


# ---- word error rate ---------------------------------------------------------------------------


def test_substitution_deletion_and_insertion_each_count_one_edit() -> None:
    # "sat" -> "sit" (S), the second "the" dropped (D), "today" added (I): 3 edits over 6 words.
    assert word_error_rate(["the cat sat on the mat"], ["the cat sit on mat today"]) == pytest.approx(3 / 6)
    assert word_error_rate(["the cat sat on the mat"], ["the cat sat on the mat"]) == 0.0
    assert word_error_rate(["the cat sat"], ["a dog stood up there"]) == pytest.approx(5 / 3)  # 3 S + 2 I: above 1


def test_case_punctuation_and_spelling_variants_are_no_errors() -> None:
    assert word_error_rate(["Ask not what your country can do for you."], ["ask not, what your country can do for you"]) == 0.0
    assert word_error_rate(["The colour of ten apples"], ["the color of 10 apples"]) == 0.0


def test_corpus_wer_is_total_edits_over_total_reference_words_not_a_mean_of_rates() -> None:
    # 1 edit in 2 words (50 %) and none in 8: corpus 1 / 10, where a mean of rates would say 25 %.
    references = ["hello world", "one more sentence of eight words right here"]
    hypotheses = ["hello word", "one more sentence of eight words right here"]
    assert word_error_rate(references, hypotheses) == pytest.approx(0.1)


def test_empty_references_are_left_out_and_nothing_to_score_is_an_error() -> None:
    assert word_error_rate(["", "go forward"], ["made up words", "go backward"]) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="no non-empty reference"):
        word_error_rate(["", "..."], ["text", "text"])
    with pytest.raises(ValueError):
        word_error_rate(["one", "two"], ["one"])  # one hypothesis per reference


# ---- per-language error rate -------------------------------------------------------------------


def test_english_error_rate_is_the_english_wer() -> None:
    assert error_rate("en", ["Mr. Smith has ten dollars."], ["mister smith has $10"]) == 0.0
    assert error_rate("en", ["the cat sat on the mat"], ["the cat sit on mat today"]) == pytest.approx(0.5)


def test_other_languages_count_words_with_diacritics() -> None:
    # "für" -> "fur" is one substitution in 4 words; punctuation and case are not errors.
    assert error_rate("de", ["Guten Tag, für dich."], ["guten tag fur dich"]) == pytest.approx(1 / 4)


@pytest.mark.parametrize("language", ["zh", "ja", "ko"])
def test_chinese_japanese_and_korean_count_characters_without_spaces(language: str) -> None:
    # "你好世界" against "你好 世间": the space is dropped, "界" -> "间" is 1 of 4 characters.
    assert error_rate(language, ["你好世界"], ["你好 世间"]) == pytest.approx(1 / 4)
    assert error_rate(language, ["你好世界"], ["你 好 世 界。"]) == 0.0
