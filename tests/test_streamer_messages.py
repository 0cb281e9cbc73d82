"""streamer/stream/messages.py: stable and partial messages from words."""

from __future__ import annotations

import pytest

from streamer.stream.messages import partial, stables, timings
from streamer.stream.tick import Word

# " Ask not what your country can do for you," | " ask what you can do." (a segment each), then " And"
WORDS = [
    Word(" Ask", 1.0, 1.2, 0.9),
    Word(" not", 1.3, 1.5, 0.8),
    Word(" what,", 1.6, 1.9, 0.7, ends_segment=True),
    Word(" ask", 2.5, 2.7, 0.95),
    Word(" you.", 2.8, 3.1, 0.6, ends_segment=True),
    Word(" And", 4.0, 4.2, 0.5),
]


def test_timings_carry_each_words_text_times_and_probability() -> None:
    (first, second) = timings(WORDS[:2])
    assert (first.word, first.start, first.end, first.probability) == (" Ask", 1.0, 1.2, 0.9)
    assert (second.word, second.start, second.end, second.probability) == (" not", 1.3, 1.5, 0.8)
    assert timings([]) == ()


def test_one_stable_per_whisper_segment_numbered_on_from_the_first_id() -> None:
    messages = stables(WORDS, first_id=7, language="en")
    assert [m.id for m in messages] == [7, 8, 9]
    assert [m.text for m in messages] == [" Ask not what,", " ask you.", " And"]  # the leading space kept
    assert [(m.start, m.end) for m in messages] == [(1.0, 1.9), (2.5, 3.1), (4.0, 4.2)]
    assert [[w.word for w in m.words] for m in messages] == [[" Ask", " not", " what,"], [" ask", " you."], [" And"]]
    assert {m.language for m in messages} == {"en"}
    assert "".join(m.text for m in messages) == "".join(w.text for w in WORDS)  # joined: the transcript


def test_the_last_words_are_a_stable_even_when_no_segment_ends_there() -> None:
    messages = stables(WORDS[3:4] + WORDS[5:], first_id=0, language="de")
    assert [(m.id, m.text, m.language) for m in messages] == [(0, " ask And", "de")]


def test_no_words_no_stables() -> None:
    assert stables([], first_id=3, language="en") == []


def test_a_partial_is_every_uncommitted_word_in_one_message() -> None:
    message = partial(WORDS, empty_at=0.0)
    assert message.text == " Ask not what, ask you. And"
    assert (message.start, message.end) == (1.0, 4.2)
    assert [w.word for w in message.words] == [w.text for w in WORDS]
    assert message.words[4].probability == pytest.approx(0.6)


def test_no_words_make_an_empty_partial_at_the_given_time() -> None:
    message = partial([], empty_at=12.5)
    assert (message.text, message.start, message.end, tuple(message.words)) == ("", 12.5, 12.5, ())
