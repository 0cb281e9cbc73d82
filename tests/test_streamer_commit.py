"""LocalAgreement-2 and the loop guard; the audio buffer's trimming and times."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.stream.buffer import AudioBuffer
from streamer.stream.commit import LocalAgreement, find_repetition_loop, skip_committed
from streamer.stream.tick import Word


def words(text: str, start: float = 0.0) -> list[Word]:
    return [Word(" " + w, start + i * 0.3, start + i * 0.3 + 0.25, 0.9) for i, w in enumerate(text.split())]


def test_local_agreement_commits_the_prefix_two_hypotheses_share() -> None:
    policy = LocalAgreement(2)
    assert policy.decide(words("the cat"), final=False) == 0  # nothing to agree with yet
    assert policy.decide(words("the cat sat on"), final=False) == 2
    # The next decode sees only what follows "the cat"; it must agree with "sat on".
    assert policy.decide(words("sat on the mat"), final=False) == 2
    assert policy.decide(words("the matt"), final=False) == 1  # "the" agrees, "matt" ≠ "mat"
    assert policy.decide(words("mat"), final=False) == 0
    assert policy.decide(words("mad. And"), final=True) == 2  # an endpoint commits everything


def test_local_agreement_ignores_case_and_punctuation_only() -> None:
    policy = LocalAgreement(2)
    policy.decide(words("Hello, world"), final=False)
    assert policy.decide(words("hello world."), final=False) == 2
    policy = LocalAgreement(2)
    policy.decide(words("hello word"), final=False)
    assert policy.decide(words("hello world"), final=False) == 1


def test_local_agreement_compares_decodes_that_heard_enough_apart() -> None:
    """With `gap` 0.6 s, a decode agrees with the latest one that heard at least 0.6 s less:
    two decodes 0.3 s apart hear nearly the same and make the same mistakes."""
    policy = LocalAgreement(2, gap=0.6)
    assert policy.decide(words("the cat"), final=False, window_end=1.0) == 0
    assert policy.decide(words("the cat sat"), final=False, window_end=1.3) == 0  # only 0.3 s later
    assert policy.decide(words("the cat sat on"), final=False, window_end=1.6) == 2  # against the one at 1.0
    # The decode at 1.3 began with the committed words: its "sat" is agreed on 0.6 s later.
    assert policy.decide(words("sat on the"), final=False, window_end=1.9) == 1
    assert policy.decide(words("on the mat"), final=False, window_end=2.2) == 1  # the one at 1.6 heard "on" only
    # A hypothesis of unknown end (a stream continued elsewhere) is one to agree with at once.
    resumed = LocalAgreement(2, gap=0.6)
    resumed.decide(words("one two"), final=False)
    assert resumed.decide(words("one two three"), final=False, window_end=5.0) == 2


def test_reset_forgets_the_previous_hypothesis() -> None:
    policy = LocalAgreement(2)
    policy.decide(words("one two"), final=False)
    policy.reset()
    assert policy.decide(words("one two"), final=False) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8), min_size=1, max_size=12), st.sampled_from([0.0, 0.6]))
def test_committed_words_are_a_prefix_of_the_hypothesis_they_come_from(hypotheses: list[list[str]], gap: float) -> None:
    """Whatever the hypotheses, a commit takes words from the current one's front, and only
    words that an earlier hypothesis (at least `gap` s before; decodes 0.3 s apart) had in the
    same place, after the words committed since (so nothing is ever taken back)."""
    policy = LocalAgreement(2, gap=gap)
    earlier: list[tuple[float, list[str]]] = []
    committed = 0
    for i, hypothesis in enumerate(hypotheses):
        end = 0.3 * (i + 1)
        count = policy.decide(words(" ".join(hypothesis)), final=False, window_end=end)
        assert 0 <= count <= len(hypothesis)
        if count:
            assert any(h[:count] == hypothesis[:count] for t, h in earlier if t <= end - gap + 1e-6)
        earlier = [(t, h[count:]) for t, h in earlier if h[:count] == hypothesis[:count]] + [(end, hypothesis[count:])]
        committed += count


def test_re_heard_committed_words_are_found_by_text_not_by_time() -> None:
    # As seen in the daemon: "true" was committed squeezed to 40 ms at its end; the next decode
    # puts "printed" 20 ms after the committed start of "true". A time cut would drop it.
    committed = [Word(" of", 26.22, 26.68, 0.9), Word(" the", 26.68, 26.96, 0.9), Word(" true", 26.96, 27.04, 0.9)]
    heard = [Word(" of", 26.22, 26.66, 0.9), Word(" the", 26.66, 26.78, 0.9), Word(" true", 26.78, 26.98, 0.9), Word(" printed", 26.98, 27.34, 0.9)]
    assert skip_committed(committed, heard) == 3
    # A re-heard word misheard ("true" → "through") still matches; so does one the decode left out.
    misheard = heard[:2] + [Word(" through", 26.78, 26.98, 0.5)] + heard[3:]
    assert skip_committed(committed, misheard) == 3
    dropped = heard[:2] + heard[3:]
    assert skip_committed(committed, dropped) == 2
    # Nothing like the committed words: no match (the caller falls back to times).
    assert skip_committed(committed, words("entirely different words here", 26.2)) is None
    assert skip_committed([], heard) == 0
    # Committed words at the window's start that the decode left out (up to two), the rest heard.
    tail = words("to form letterpress", 70.0)
    assert skip_committed(tail, words("letterpress it is of the first", 70.6)) == 1
    assert skip_committed(tail, words("form letterpress it is of the first", 70.3)) == 2
    assert skip_committed(tail, words("it is of the first", 71.0)) is None  # all of it missing: by time
    assert skip_committed(tail, words("letter press it is", 70.6)) is None
    # A phrase said again right after is new, however close its words are to the committed ones.
    said = words("ask not what your country can do for you ask")
    again = words("ask not what your country can do for you ask what you can do for your country")
    assert skip_committed(said, again) == len(said)
    assert skip_committed(said[-2:], again[8:]) == 2


def test_repetition_loops_are_found_after_their_first_occurrence() -> None:
    assert find_repetition_loop(words("we went to the shop and bought bread")) is None
    assert find_repetition_loop(words("no no no")) is None  # people say that
    text = "and then I said thank you thank you thank you thank you"
    assert find_repetition_loop(words(text)) == len("and then I said thank you".split())
    assert find_repetition_loop(words("so the the the the the")) == 2
    assert find_repetition_loop(words("a b c d a b c d a b c d e")) == 4


def test_buffer_keeps_absolute_times_across_trims() -> None:
    buffer = AudioBuffer(initial_seconds=1.0)
    ramp = np.arange(48000, dtype=np.float32)  # 3 s, grows the 1 s storage twice
    for piece in np.array_split(ramp, 7):
        buffer.append(piece)
    assert buffer.end == 48000 and buffer.duration == 3.0
    buffer.trim_to(16000)
    assert buffer.start_time == 1.0 and buffer.end_time == 3.0
    window = buffer.window(8000)
    assert window[0] == 16000 and window[-1] == 23999 and len(window) == 8000
    buffer.trim_to(100)  # before the start: nothing happens
    assert buffer.start == 16000
    buffer.trim_to(10**9)  # past the end: empties, times continue
    assert buffer.duration == 0 and buffer.start == 48000
    buffer.append(np.ones(160, np.float32))
    assert buffer.end_time == 3.01 and buffer.window(10**6).sum() == 160
