"""streamer/stream/retry.py: when a decode is done again, each rule a pure predicate on plain values."""

from __future__ import annotations

import pytest

from streamer.stream.retry import contradicts_partial, heard_past_endpoint, missed_head, overlaps_committed, spoke_after_pause, unheard_tail
from streamer.stream.tick import Word


def word(text: str, start: float = 0.0, end: float = 0.3) -> Word:
    return Word(text, start, end, 0.9)


def words(*texts: str, begin: float = 0.0) -> list[Word]:
    return [word(t, begin + 0.4 * i, begin + 0.4 * i + 0.3) for i, t in enumerate(texts)]


# ---- missed_head -------------------------------------------------------------------------------

PROMPT = " And so, my fellow Americans, ask not what your country can do for you,"


def test_a_decode_that_begins_with_the_head_heard_it_whatever_its_case_and_punctuation() -> None:
    assert not missed_head("ask", PROMPT, words(" Ask", " what", " you"))
    assert not missed_head("ask", PROMPT, words(" ask,", " what"))


def test_a_decode_that_drops_the_head_or_hears_nothing_missed_it() -> None:
    """ "ask what you can do for your country" decoded as "can do for your country"."""
    assert missed_head("ask", PROMPT, words(" can", " do", " for", " your", " country."))
    assert missed_head("ask", PROMPT, [])


def test_without_a_head_or_a_prompt_nothing_was_missed() -> None:
    assert not missed_head(None, PROMPT, words(" can", " do"))
    assert not missed_head("ask", "", words(" can", " do"))  # unprompted already: nothing to drop


# ---- spoke_after_pause -------------------------------------------------------------------------


def test_speech_after_the_pause_that_the_decode_heard_is_spoken_after_the_pause() -> None:
    # Words end at 5.0; speech again from 6.0 to 9.0; the decode heard until 8.0: 2 s of it.
    assert spoke_after_pause(onset=6.0, voiced_end=9.0, words_end=5.0, heard_until=8.0, unheard_tail=0.6)


def test_speech_that_began_before_the_words_end_is_not_after_the_pause() -> None:
    assert not spoke_after_pause(onset=5.0, voiced_end=9.0, words_end=5.0, heard_until=8.0, unheard_tail=0.6)
    assert not spoke_after_pause(onset=4.0, voiced_end=9.0, words_end=5.0, heard_until=8.0, unheard_tail=0.6)


@pytest.mark.parametrize(("voiced_end", "heard_until"), [(6.25, 9.0), (9.0, 6.25), (6.5, 6.5)])
def test_no_more_than_the_unheard_tail_after_the_onset_is_not_enough(voiced_end: float, heard_until: float) -> None:
    """What counts is the speech both voiced and in the window, and it must exceed the tail
    (0.5 s here; (6.5, 6.5) is exactly 0.5 s of it)."""
    assert not spoke_after_pause(onset=6.0, voiced_end=voiced_end, words_end=5.0, heard_until=heard_until, unheard_tail=0.5)
    assert spoke_after_pause(onset=6.0, voiced_end=voiced_end + 0.5, words_end=5.0, heard_until=heard_until + 0.5, unheard_tail=0.5)


# ---- heard_past_endpoint -----------------------------------------------------------------------


def test_a_decode_past_the_endpoint_whose_words_end_clear_of_its_edge_stands_for_the_final_one() -> None:
    committing = words(" go", " forward", begin=1.0)  # end at 1.3 and 1.7
    assert heard_past_endpoint(until=2.0, window_end=2.5, words=committing, edge_margin=0.05)
    assert heard_past_endpoint(until=2.0, window_end=2.0, words=committing, edge_margin=0.05)  # up to the endpoint exactly


def test_a_decode_short_of_the_endpoint_or_without_one_does_not() -> None:
    committing = words(" go", " forward", begin=1.0)
    assert not heard_past_endpoint(until=None, window_end=9.0, words=committing, edge_margin=0.05)
    assert not heard_past_endpoint(until=2.0, window_end=1.99, words=committing, edge_margin=0.05)


def test_a_word_to_commit_that_runs_into_the_edge_may_be_cut_off() -> None:
    cut = [word(" go", 1.0, 1.3), word(" forward", 1.5, 1.97)]  # within 0.05 s of the window's end at 2.0
    assert not heard_past_endpoint(until=2.0, window_end=2.0, words=cut, edge_margin=0.05)
    # A word after the endpoint (not committed by it) may run into the edge.
    later = [word(" go", 1.0, 1.3), word(" on", 2.1, 2.5)]
    assert heard_past_endpoint(until=2.0, window_end=2.5, words=later, edge_margin=0.05)


# ---- unheard_tail ------------------------------------------------------------------------------


def test_speech_beyond_the_last_word_by_more_than_the_limit_is_an_unheard_tail() -> None:
    assert unheard_tail(voice_end=10.7, heard_until=10.0, limit=0.6)
    assert not unheard_tail(voice_end=10.5, heard_until=10.0, limit=0.6)
    assert not unheard_tail(voice_end=10.5, heard_until=10.0, limit=0.5)  # exactly the limit: not more
    assert not unheard_tail(voice_end=9.0, heard_until=10.0, limit=0.6)  # heard past the speech


# ---- overlaps_committed ------------------------------------------------------------------------


def test_new_words_starting_well_inside_the_committed_ones_overlap() -> None:
    committed = words(" ask", " not", begin=1.0)  # the last ends at 1.7
    assert overlaps_committed(committed, [word(" not", 1.3, 1.7)], merged_overlap=0.3)
    assert not overlaps_committed(committed, [word(" what", 1.45, 1.8)], merged_overlap=0.3)  # within the margin
    assert not overlaps_committed(committed, [word(" what", 1.8, 2.1)], merged_overlap=0.3)


def test_nothing_overlaps_without_committed_or_new_words() -> None:
    assert not overlaps_committed([], [word(" what", 0.0, 0.3)], merged_overlap=0.3)
    assert not overlaps_committed(words(" ask", " not", begin=1.0), [], merged_overlap=0.3)


# ---- contradicts_partial -----------------------------------------------------------------------


def test_new_words_that_do_not_begin_with_the_partials_first_word_contradict_it() -> None:
    partial = words(" Ask", " not")
    assert contradicts_partial(partial, words(" As", " not"))
    assert contradicts_partial(partial, [])  # the partial's words are gone
    assert not contradicts_partial(partial, words(" ask,", " what"))  # case and punctuation do not count
    assert not contradicts_partial([], words(" anything"))  # no partial: nothing to contradict
