"""`SentenceEnd`: the mark that ends an utterance's stable text is decided by what follows."""

from __future__ import annotations

from streamer.stream.sentence import SentenceEnd, capitalized
from streamer.stream.tick import Word


def held(text: str) -> SentenceEnd:
    sentence = SentenceEnd()
    kept = sentence.hold([Word(" it", 0.0, 0.2, 0.9), Word(text, 0.2, 0.6, 0.9)])
    assert kept[0].text == " it" and kept[-1].end == 0.6
    return sentence


def test_the_whole_run_of_marks_is_held() -> None:
    sentence = held(" ended?!")
    assert sentence.mark == "?!"
    assert held(" so...").mark == "..."


def test_a_word_without_a_mark_or_made_of_marks_holds_nothing() -> None:
    assert held(" ended").mark == ""
    assert held(" ...").mark == ""


def test_a_first_word_in_lower_case_goes_on_with_the_sentence_anything_else_begins_one() -> None:
    assert held(" ended.").before(" of")[0] == ""
    assert held(" ended.").before(" The") == (".", ".")  # the context lacks it too
    assert held(" ended.").before(" I")[0] == "."
    assert held(" ended.").before(" 1455")[0] == "."  # no letter says it goes on
    assert held(" ended.").before(' "quoted"')[0] == ""
    assert SentenceEnd().before(" The")[0] == ""  # nothing held


def test_a_mark_is_given_once() -> None:
    sentence = held(" ended.")
    assert sentence.release() == "."
    assert sentence.release() == "" and sentence.before(" The")[0] == ""


def test_a_decode_that_heard_the_word_in_context_decides_over_the_case() -> None:
    sentence = held(" ended.")
    context = (Word(" it", 0.0, 0.2, 0.9), Word(" ended", 0.2, 0.6, 0.9))
    assert sentence.heard(context, [Word(" it", 0.0, 0.2, 0.9), Word(" ended.", 0.2, 0.6, 0.9)]) == "."  # for the context at once
    assert sentence.heard(context, [Word(" it", 0.0, 0.2, 0.9), Word(" ended", 0.2, 0.6, 0.9)]) == ""  # the first decode decides
    assert sentence.before(" and") == (".", "")  # a sentence ended; the context has the mark already
    sentence = held(" ended.")
    sentence.heard(context, [Word(" it", 0.0, 0.2, 0.9), Word(" ended", 0.2, 0.6, 0.9)])
    assert sentence.before(" Paris")[0] == ""  # it went on: a capital alone does not end it


def test_a_decode_whose_context_ends_elsewhere_has_no_say() -> None:
    sentence = held(" ended.")
    other = (Word(" before", 0.0, 0.4, 0.9),)
    sentence.heard(other, [Word(" before", 0.0, 0.4, 0.9)])
    assert sentence.follows is None and sentence.before(" The")[0] == "."


def test_a_sentence_begins_with_a_capital() -> None:
    assert capitalized(Word(" and", 0.0, 0.2, 0.9)).text == " And"
    assert capitalized(Word(' "so', 0.0, 0.2, 0.9)).text == ' "So'
    assert capitalized(Word(" 1455", 0.0, 0.2, 0.9)).text == " 1455"


def test_a_comma_the_decoder_wrote_after_the_word_takes_the_marks_place() -> None:
    sentence = held(" ended.")
    context = (Word(" ended", 0.2, 0.6, 0.9),)
    sentence.heard(context, [Word(" ended,", 0.2, 0.6, 0.9)])
    assert sentence.before(" in")[0] == ","
    assert not SentenceEnd.ends_sentence(",") and SentenceEnd.ends_sentence("?")


def test_a_segment_the_decoder_ended_after_the_word_keeps_the_mark() -> None:
    sentence = held(" ended?")
    sentence.heard((Word(" ended", 0.2, 0.6, 0.9),), [Word(" ended", 0.2, 0.6, 0.9, ends_segment=True)])
    assert sentence.before(" go")[0] == "?"
