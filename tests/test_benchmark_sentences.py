"""`benchmarks.sentences`: case and sentence ends scored, false sentence breaks counted."""

from __future__ import annotations

import pytest

from benchmarks.sentences import Breaks, cased_error_rate, cased_words, compare_breaks, is_punctuated


def test_words_keep_case_and_sentence_ends_but_no_other_punctuation() -> None:
    words = cased_words('Printing, in the "only" sense. Is it? Yes! forty-two')
    assert [w.token for w in words] == ["Printing", "in", "the", "only", "sense.", "Is", "it.", "Yes.", "forty", "two"]
    assert [w.bare for w in words][:2] == ["printing", "in"]


def test_a_full_stop_inside_quotes_still_ends_the_sentence() -> None:
    assert cased_words('he said "go."')[-1].ends_sentence


def test_only_references_that_write_sentences_are_punctuated() -> None:
    assert is_punctuated("Mr. Quilter is the apostle.")
    assert not is_punctuated("MR QUILTER IS THE APOSTLE")
    assert is_punctuated("in being comparatively modern.")  # an LJ Speech clip ends a sentence begun in the last
    assert not is_punctuated("mr quilter is the apostle")


def test_a_false_break_costs_two_cased_words_and_nothing_in_plain_wer() -> None:
    reference = "printed in letters which are an exact imitation of the more formal writing."
    broken = "printed in letters which are an exact imitation. Of the more formal writing."
    assert cased_error_rate([reference], [reference]) == 0.0
    assert cased_error_rate([reference], [broken]) == pytest.approx(2 / 13)


def test_breaks_are_judged_against_the_other_transcript() -> None:
    offline = "It was late. The letters were an exact imitation of the formal hand. Then it ended."
    stream = "It was late. The letters were an exact imitation. Of the formal hand, then it ended."
    assert compare_breaks(stream, offline) == Breaks(breaks=2, false=1, missed=1)
    assert compare_breaks(offline, offline) == Breaks(breaks=2, false=0, missed=0)
    assert compare_breaks(stream, offline).false_share == 0.5


def test_the_last_word_is_not_a_break() -> None:
    assert compare_breaks("One. Two.", "One two.") == Breaks(breaks=1, false=1, missed=0)
