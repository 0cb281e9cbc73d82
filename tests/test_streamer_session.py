"""A session driven by method calls on real audio, with a scripted stand-in for the model.

The stand-in hears the words of a real clip's reference, placed evenly over each utterance's
span (from the manifest), and only those its window contains; a word cut by the window's end is
misheard, as a real decoder would. That exercises VAD gating, ticks, LocalAgreement-2, endpoint
commits, trimming and numbering without a model (the real model is in test_streamer_daemon.py).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.data import Clip, clips_of, data_available, load_manifest
from model.audio import SAMPLE_RATE, load_audio
from streamer.config import Config, StreamConfig
from streamer.stream.session import ModelInfo, Session
from streamer.stream.tick import Hypothesis, TickKind, TickRequest, Word
from streamer.stream.vad import SpeechEnd, SpeechStart, VoiceActivityDetector
from wire import CloseCode, End, LanguageDetected, Partial, ProtocolError, Ready, Stable, Start, VadEvent

pytestmark = pytest.mark.skipif(not data_available(), reason="shared evaluation data not found")

ENGLISH = ModelInfo("tiny.en", multilingual=False)
FRAME = 320  # 20 ms frames, as a browser might send


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def voiced_spans(audio: np.ndarray) -> list[tuple[float, float]]:
    vad = VoiceActivityDetector(2, 0.15, 0.3)
    transitions = vad.feed(audio)
    starts = [t.time for t in transitions if isinstance(t, SpeechStart)]
    ends = [t.time for t in transitions if isinstance(t, SpeechEnd)] + [len(audio) / SAMPLE_RATE]
    return list(zip(starts, ends))


def scripted_words(clip: Clip, utterances: int) -> list[Word]:
    """The reference words of the first `utterances`, spread evenly over where the VAD hears voice."""
    texts = {c.id: c.text for c in load_manifest()}
    spans = voiced_spans(load_audio(clip.path)[: int(clip.segments[utterances - 1].end_s * SAMPLE_RATE) + SAMPLE_RATE])
    placed = []
    for utterance in clip.segments[:utterances]:
        spoken = texts[utterance.id].split()
        inside = [(s, e) for s, e in spans if utterance.start_s - 0.1 <= s < utterance.end_s]
        placed += spread(spoken, inside[0][0] + 0.1, min(inside[-1][1], utterance.end_s) - 0.1)
    return placed


def spread(spoken: list[str], begin: float, finish: float) -> list[Word]:
    """`spoken` as words spread evenly over `begin`..`finish`, the last one ending its segment."""
    step = (finish - begin) / len(spoken)
    return [Word(" " + w, begin + i * step, begin + (i + 0.8) * step, 0.9, ends_segment=i == len(spoken) - 1) for i, w in enumerate(spoken)]


def answer_due(session: Session, respond) -> list:
    """Answers each tick that is due at once; returns the messages."""
    produced: list = []
    while session.wants_tick:
        request = session.make_tick_request()
        produced.extend(session.apply_result(request, respond(request)))
    return produced


def hear(script: list[Word], request: TickRequest, **quality) -> Hypothesis:
    heard = []
    for w in script:
        if w.start >= request.window_start and w.end <= request.window_end:
            heard.append(w.shifted(-request.window_start))
        elif w.start >= request.window_start and w.start < request.window_end:
            heard.append(Word(w.text + "-", w.start - request.window_start, request.window_end - request.window_start, 0.3))
    return Hypothesis(
        words=tuple(heard),
        language=quality.get("language", "en"),
        language_probability=quality.get("language_probability", 1.0),
        avg_logprob=quality.get("avg_logprob", -0.3),
        no_speech_prob=quality.get("no_speech_prob", 0.01),
        compression_ratio=quality.get("compression_ratio", 1.5),
    )


def drive(session: Session, audio: np.ndarray, respond, *, stop: bool = True):
    """Feeds `audio` frame by frame; answers each due tick at once. Returns (messages, requests),
    each message paired with the stream time at which it was produced."""
    produced: list[tuple[float, object]] = []
    requests: list[TickRequest] = []

    def ticks() -> None:
        while session.wants_tick:
            request = session.make_tick_request()
            requests.append(request)
            produced.extend((session.audio_seconds, m) for m in session.apply_result(request, respond(request)))

    produced.extend((0.0, m) for m in session.open())
    for offset in range(0, len(audio), FRAME):
        produced.extend((session.audio_seconds, m) for m in session.on_audio(pcm(audio[offset : offset + FRAME])))
        ticks()
    if stop:
        produced.extend((session.audio_seconds, m) for m in session.stop())
        ticks()
    return produced, requests


@pytest.fixture(scope="module")
def mixed() -> tuple[Clip, np.ndarray]:
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)
    return clip, audio[: int(clip.segments[3].start_s * SAMPLE_RATE)]  # three utterances, 31.6 s


def new_session(**stream) -> Session:
    config = Config(stream=replace(StreamConfig(), **stream))
    return Session("s1", Start(events=("vad",)), config, ENGLISH)


def test_stable_text_is_the_script_once_in_order_and_ends_the_stream(mixed) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 3)
    produced, requests = drive(new_session(), audio, lambda r: hear(script, r))
    messages = [m for _, m in produced]
    assert isinstance(messages[0], Ready) and isinstance(messages[1], LanguageDetected)
    stables = [m for m in messages if isinstance(m, Stable)]
    assert [s.id for s in stables] == list(range(len(stables)))
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert all(not w.word.endswith("-") for s in stables for w in s.words)  # misheard edges never commit
    assert all(a.end <= b.start for a, b in itertools.pairwise(stables))
    assert isinstance(messages[-1], End) and messages[-1].last_stable_id == stables[-1].id
    assert len(requests) > 10  # it streamed, rather than decoding once at the end
    assert max(len(r.audio) for r in requests) <= 30 * SAMPLE_RATE


@pytest.mark.parametrize("seed", [8, 10, 11])
def test_no_word_is_lost_when_word_times_jitter_between_decodes(mixed, seed: int) -> None:
    """Word alignment moves boundaries by tenths of a second from one decode to the next and
    sometimes squeezes a word to a few ms; re-heard committed words must still be told from new
    ones (they were once dropped by a time cut: "the true printed book" → "the true book")."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    rng = np.random.default_rng(seed)

    def jittery(request: TickRequest) -> Hypothesis:
        # A word is placed anywhere from just before its start to its end, and may be squeezed
        # to 10 ms; a word is heard when the window holds more than 50 ms of it.
        heard = []
        for w in script:
            offset = request.window_start
            if offset + 0.05 < w.end <= request.window_end:
                start = rng.uniform(w.start - 0.05, w.end - 0.01)
                end = rng.uniform(start + 0.01, w.end + 0.05)
                heard.append(Word(w.text, max(0.0, start - offset), min(end, request.window_end) - offset, 0.9, w.ends_segment))
            elif offset <= w.start < request.window_end:  # cut by the window's end: misheard
                heard.append(Word(w.text + "-", w.start - offset, request.window_end - offset, 0.3))
        return replace(hear([], request), words=tuple(heard))

    produced, _ = drive(new_session(), audio, jittery)
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    times = [t for s in stables for w in s.words for t in (w.start, w.end)]
    assert times == sorted(times)  # stable times never go back, however the words jitter


def unheard_if_cut(script: list[Word], request: TickRequest) -> Hypothesis:
    """Like `hear`, but a word cut by the window's end is left out, as Whisper often does."""
    hypothesis = hear(script, request)
    return replace(hypothesis, words=tuple(w for w in hypothesis.words if not w.text.endswith("-")))


@pytest.mark.parametrize("lag", [0.5, 1.0, 2.0, 3.0])
def test_no_word_is_lost_when_audio_arrives_while_a_decode_runs(mixed, lag: float) -> None:
    """A busy worker answers `lag` s of stream time after each request: speech, endpoints and
    the stop arrive while decodes run."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    session = new_session()
    session.open()
    produced: list[object] = []
    in_flight: tuple[TickRequest, int] | None = None
    frames = range(0, len(audio), FRAME)

    def answer() -> None:
        nonlocal in_flight
        assert in_flight is not None
        produced.extend(session.apply_result(in_flight[0], unheard_if_cut(script, in_flight[0])))
        in_flight = None

    for i, offset in enumerate(frames):
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        if in_flight is not None and (i - in_flight[1]) * FRAME >= lag * SAMPLE_RATE:
            answer()
        if in_flight is None and session.wants_tick:
            in_flight = session.make_tick_request(), i
    produced.extend(session.stop())
    while in_flight is not None or session.wants_tick:
        if in_flight is None:
            in_flight = session.make_tick_request(), 0
        answer()
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert isinstance(produced[-1], End)


def test_speech_said_while_the_endpoint_decode_runs_is_not_lost() -> None:
    """The endpoint decode after "…can do for you," is asked for just after the next words began,
    and the rest of the stream (with the stop) arrives while it runs: that decode heard none of
    them, so it cannot end the stream. (It did, in the daemon under load: "ask what you can do
    for your country" was dropped.)"""
    clip = next(c for c in load_manifest() if c.id == "jfk_inaugural_excerpt")
    audio = load_audio(clip.path)
    (first_start, first_end), (second_start, second_end) = voiced_spans(audio)
    first, second = clip.text.split(", ask what")
    script = spread((first + ",").split(), first_start + 0.1, first_end) + spread(("ask what" + second).split(), second_start + 0.1, second_end)
    session = new_session()
    produced = list(session.open())
    frames = iter(range(0, len(audio), FRAME))
    for offset in frames:  # the first utterance, its decodes answered at once
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        produced.extend(answer_due(session, lambda request: unheard_if_cut(script, request)))
        if session.audio_seconds >= first_end - 0.2:
            break
    for offset in frames:  # the worker is busy: nothing is decoded until the next onset
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        if any(isinstance(m, VadEvent) and m.event == "speech_start" and m.time > first_end for m in produced):
            break
    request = session.make_tick_request()
    assert request.final and unheard_if_cut(script, request).words[-1].text == " you,"
    for offset in frames:
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
    produced.extend(session.stop())
    produced.extend(session.apply_result(request, unheard_if_cut(script, request)))
    produced.extend(answer_due(session, lambda request: unheard_if_cut(script, request)))
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert isinstance(produced[-1], End)


def test_words_said_between_a_late_endpoint_and_the_next_onset_are_not_lost() -> None:
    """A decode asked for just before the speaker stopped is answered only after they said a few
    more words, paused and went on again: the cut for the next utterance must fall before those
    words, not at the latest speech start (it did, under a late worker: "de grano medio y" lost)."""
    clips = {c.id: c for c in load_manifest()}
    pause = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    keys = ("lj_LJ001-0013", "lj_LJ001-0008", "lj_LJ001-0002")
    parts = [load_audio(clips[k].path) for k in keys]
    audio = np.concatenate([parts[0], pause, parts[1], pause, parts[2]])
    spans, utterances, position = voiced_spans(audio), [], 0.0
    for key, part in zip(keys, parts, strict=True):
        end = position + len(part) / SAMPLE_RATE
        inside = [(a, b) for a, b in spans if position - 0.3 <= a < end]
        utterances.append(spread(clips[key].text.split(), inside[0][0] + 0.1, inside[-1][1] - 0.1))
        position = end + len(pause) / SAMPLE_RATE
    script = [w for words in utterances for w in words]
    first_end, third_start = utterances[0][-1].end + 0.1, utterances[2][0].start
    session = new_session()
    produced = list(session.open())
    frames = iter(range(0, len(audio), FRAME))
    for offset in frames:  # the first utterance, its decodes answered at once until it ends
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        if session.wants_tick:
            request = session.make_tick_request()
            if session.audio_seconds >= first_end:
                break
            produced.extend(session.apply_result(request, hear(script, request)))
    assert not request.final and request.window_end >= first_end  # heard it all, before the endpoint
    for offset in frames:  # the worker is busy through the second utterance, into the third
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        if session.audio_seconds >= third_start + 0.3:
            break
    produced.extend(session.apply_result(request, hear(script, request)))
    for offset in frames:
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        produced.extend(answer_due(session, lambda request: hear(script, request)))
    produced.extend(session.stop())
    produced.extend(answer_due(session, lambda request: hear(script, request)))
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def race_to_the_next_utterance(audio: np.ndarray, clip: Clip, script: list[Word], respond, **stream: float):
    """Drives a session whose decode that ends the first utterance is answered only after the
    speaker began the next one (half a second into it); the others at once."""
    first_end = next(w.end for w in script if w.ends_segment)
    session = new_session(**stream)
    produced = list(session.open())
    requests: list[TickRequest] = []
    held: TickRequest | None = None
    for offset in range(0, len(audio), FRAME):
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        onset_seen = any(isinstance(m, VadEvent) and m.event == "speech_start" and m.time > first_end for m in produced)
        if held is not None and onset_seen and session.audio_seconds > clip.segments[1].start_s + 0.5:
            produced.extend(session.apply_result(held, respond(held)))
            held = None
        while held is None and session.wants_tick:
            request = session.make_tick_request()
            requests.append(request)
            if not onset_seen and first_end < request.window_end < clip.segments[1].start_s:
                held = request  # the worker is slow with this one
                break
            produced.extend(session.apply_result(request, respond(request)))
    produced.extend(session.stop())
    while session.wants_tick:
        request = session.make_tick_request()
        requests.append(request)
        produced.extend(session.apply_result(request, respond(request)))
    assert held is None and any(first_end < r.window_end < clip.segments[1].start_s for r in requests)
    return produced, requests


def test_the_next_utterance_hears_the_last_one_as_context_when_it_began_during_the_endpoint_decode(mixed) -> None:
    """The decode that ends an utterance is answered after the speaker began the next one:
    the next decodes begin with the last one's words as context, as after a pause in silence."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    first_end = next(w.end for w in script if w.ends_segment)
    produced, requests = race_to_the_next_utterance(audio, clip, script, lambda r: unheard_if_cut(script, r))
    second = [r for r in requests if clip.segments[1].start_s + 0.5 < r.window_end < clip.segments[1].end_s and not r.final]
    assert second and all(r.context and r.context[-1].end <= first_end < r.context[-1].end + 0.5 for r in second[:1])
    assert all(sum(w.end - w.start for w in r.context) < 10.0 for r in second)
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert isinstance(produced[-1], End)


def test_without_context_the_next_utterance_is_decoded_alone_when_it_began_during_the_endpoint_decode(mixed) -> None:
    """With `stream.overlap` 0, that next utterance is decoded from the pause on, not after the
    old one's tail heard again."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    first_end = next(w.end for w in script if w.ends_segment)
    produced, requests = race_to_the_next_utterance(audio, clip, script, lambda r: unheard_if_cut(script, r), overlap=0.0)
    second = [r for r in requests if r.window_end > clip.segments[1].start_s + 0.5 and not r.final]
    assert second and all(r.window_start > first_end for r in second), [r.window_start for r in second]
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert isinstance(produced[-1], End)


def test_a_phrase_skipped_after_the_prompt_is_decoded_again_without_it(mixed) -> None:
    """After that cut in the pause, Whisper may drop the new utterance's first phrase when it
    repeats the end of the prompt: a decode that does not begin as the one before it heard the
    utterance begin is done again without the prompt, and no word is lost."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    first_end = next(w.end for w in script if w.ends_segment)
    second_starts = next(i for i, w in enumerate(script) if w.start > first_end)

    def skipping(request: TickRequest) -> Hypothesis:
        hypothesis = unheard_if_cut(script, request)
        if request.prompt and first_end < request.window_start <= script[second_starts].start:
            skipped = {(w.start, w.end) for w in script[second_starts : second_starts + 3]}
            kept = [w for w in hypothesis.words if (w.start + request.window_start, w.end + request.window_start) not in skipped]
            return replace(hypothesis, words=tuple(kept))
        return hypothesis

    produced, requests = race_to_the_next_utterance(audio, clip, script, skipping, overlap=0.0)
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert any(r.prompt == "" and r.window_start > first_end for r in requests)


def test_a_final_decode_done_again_that_hears_nothing_loses_no_word(mixed) -> None:
    """The stream stops mid-utterance; its final decode breaks from the partial ("asked" after
    "ask"), so it is done again on a shorter window, and that one hears nothing (tiny.en did so
    at a shutdown): the words of the first one are committed, not dropped."""
    clip, audio = mixed
    script = scripted_words(clip, 1)
    stop_at = 4.6
    finals: list[TickRequest] = []

    def respond(request: TickRequest) -> Hypothesis:
        hypothesis = unheard_if_cut(script, request)
        if not request.final or request.window_end < stop_at - 0.5:  # not the opening blip's
            return hypothesis
        finals.append(request)
        if len(finals) == 1:  # differs from the partial in its words' form only
            return replace(hypothesis, words=tuple(replace(w, text=w.text + "ed") for w in hypothesis.words))
        return replace(hypothesis, words=())

    produced, _ = drive(new_session(), audio[: int(stop_at * SAMPLE_RATE)], respond)
    assert len(finals) == 2
    stables = [w.removesuffix("ed") for _, m in produced if isinstance(m, Stable) for w in m.text.split()]
    assert stables == [w.text.strip() for w in script if w.end < stop_at]
    assert isinstance(produced[-1][1], End)


def test_a_click_after_the_last_decode_of_an_utterance_does_not_hold_it_open(mixed) -> None:
    """A click (voice, but no onset) while the decode that ends an utterance runs: the audio
    after that decode is heard by one more final decode, the utterance ends, and the next one
    is decoded from its own onset, not after the old utterance and the pause."""
    clip, audio = mixed
    script = scripted_words(clip, 2)
    first_end = next(w.end for w in script if w.ends_segment)
    audio = audio[: int((clip.segments[1].end_s + 1.0) * SAMPLE_RATE)]
    click = (0.5 * np.sin(2 * np.pi * 300 * np.arange(960) / SAMPLE_RATE)).astype(np.float32)  # 60 ms
    session = new_session(overlap=0.0)  # so the next utterance's decodes show where they start
    produced = list(session.open())
    requests: list[TickRequest] = []

    def feed(offset: int, *, answer: bool = True) -> None:
        produced.extend(session.on_audio(pcm(audio[offset : offset + FRAME])))
        while answer and session.wants_tick:
            request = session.make_tick_request()
            requests.append(request)
            produced.extend(session.apply_result(request, unheard_if_cut(script, request)))

    frames = iter(range(0, len(audio), FRAME))
    for offset in frames:  # the utterance, decoded at once...
        feed(offset)
        if session.audio_seconds >= first_end - 0.2:
            break
    for offset in frames:  # ...but its end, till the pause has begun
        feed(offset, answer=False)
        if session.audio_seconds >= first_end + 0.35:
            break
    held = session.make_tick_request()  # it hears past the end of speech: it can be the final one
    for offset in frames:  # the endpoint comes while it runs, and then a click
        feed(offset, answer=False)
        if any(isinstance(m, VadEvent) and m.event == "speech_end" and m.time > first_end - 0.5 for m in produced):
            break
    produced.extend(session.on_audio(pcm(click)))
    produced.extend(session.apply_result(held, unheard_if_cut(script, held)))
    for offset in frames:
        feed(offset)
    produced.extend(session.stop())
    while session.wants_tick:
        request = session.make_tick_request()
        requests.append(request)
        produced.extend(session.apply_result(request, unheard_if_cut(script, request)))
    second = [r for r in requests if r.window_end > clip.segments[1].start_s + 0.5 and not r.final]
    assert second and all(r.window_start > first_end for r in second), [(r.window_start, r.window_end) for r in second[:3]]
    stables = [m for m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def test_a_final_decode_that_stops_early_is_decoded_again(mixed) -> None:
    """Whisper at times ends a window early, leaving the utterance's last words out; at the
    endpoint those words are decoded once more rather than dropped."""
    clip, audio = mixed
    script = scripted_words(clip, 1)
    last_end = script[-1].end
    early: list[TickRequest] = []

    def stops_early(request: TickRequest) -> Hypothesis:
        hypothesis = hear(script, request)
        if request.window_end >= last_end + 0.1 and len(early) < 2:  # both decodes past the end of speech
            early.append(request)
            return replace(hypothesis, words=hypothesis.words[:-4])
        return hypothesis

    produced, requests = drive(new_session(), audio[: int((clip.segments[0].end_s + 1.0) * SAMPLE_RATE)], stops_early)
    assert early, "no decode heard the end of the utterance"
    retry = requests[requests.index(early[-1]) + 1]
    missed = script[-3]  # " welcome": the tail of words the early decodes left out begins there
    # The second decode hears some audio before the words it missed, not a sliver (0.2 s of
    # committed words gave "the prophet of the prophet…" in the daemon).
    assert retry.final and retry.window_start <= missed.start - 0.3
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def test_each_utterance_is_stable_soon_after_it_ends(mixed) -> None:
    """Endpointing: the 0.8 s pauses commit each utterance without waiting for the next one."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    produced, _ = drive(new_session(endpoint_silence=0.4), audio, lambda r: hear(script, r), stop=False)
    stable_at = {w.start: t for t, m in produced if isinstance(m, Stable) for w in m.words}
    for utterance in clip.segments[:3]:
        last = max((w for w in script if w.end <= utterance.end_s), key=lambda w: w.end)
        when = next(t for s, t in stable_at.items() if abs(s - last.start) < 1e-6)
        assert when - utterance.end_s < 1.0, f"{utterance.id}: stable {when - utterance.end_s:.2f} s after its end"


def test_the_first_decode_to_hear_new_speech_is_a_first_partial_and_the_rest_are_not(mixed) -> None:
    """`TickKind.FIRST` (due at once: the first words a listener sees of new speech) is the
    first decode after each speech start, unless a commit decode heard it first; the scheduler
    thins out only the `PARTIAL`s that follow under load."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    session = new_session()
    onsets: list[list[TickKind]] = []  # the kinds of the decodes after each speech start, in order
    session.open()
    for offset in range(0, len(audio), FRAME):
        if any(isinstance(m, VadEvent) and m.event == "speech_start" for m in session.on_audio(pcm(audio[offset : offset + FRAME]))):
            onsets.append([])
        while (kind := session.due_tick) is not None:
            onsets[-1].append(kind)
            request = session.make_tick_request()
            session.apply_result(request, hear(script, request))
    heard = [kinds for kinds in onsets if kinds]
    assert sum(kinds[0] is TickKind.FIRST for kinds in heard) >= 3
    assert all(kinds[0] in (TickKind.FIRST, TickKind.PAUSE, TickKind.FINAL) and TickKind.FIRST not in kinds[1:] for kinds in heard), heard
    assert sum(kinds.count(TickKind.PARTIAL) for kinds in heard) > 10


def test_the_first_decode_of_speech_after_context_hears_it_alone_for_the_partial(mixed) -> None:
    """After a short pause the last utterance stays as context, and a whole decode of the window
    mostly ends its text before the new half second: the first decode of the new speech is a probe
    of it alone (from its onset, the text before as the prompt), whose words are the partial."""
    clip, audio = mixed
    script = scripted_words(clip, 2)
    produced, requests = drive(new_session(), audio[: int(clip.segments[1].end_s * SAMPLE_RATE)], lambda r: hear(script, r))
    second = clip.segments[1]
    probe = next(r for r in requests if r.probe)
    first_end = next(w.end for w in script if w.ends_segment)
    assert not probe.context and not probe.final and first_end < probe.window_start <= second.start_s + 0.3
    assert probe.prompt.endswith(next(w.text for w in script if w.ends_segment))  # the first utterance, as text
    after = [m for t, m in produced if isinstance(m, Partial) and t >= probe.window_end]
    assert after[0].text and after[0].start >= probe.window_start  # the new speech's first words, at once
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def test_a_stream_sets_its_own_endpoint_silence(mixed) -> None:
    """`start.endpoint_silence` (the drop-in interfaces' endpointing) overrides the daemon's: the
    clip's 0.8 s pauses end utterances at 0.4 s, not at 2 s; either way no word is lost."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    config = Config(stream=replace(StreamConfig(), endpoint_silence=0.4))
    ends = {}
    for silence in (None, 2.0):
        session = Session("s1", Start(events=("vad",), endpoint_silence=silence), config, ENGLISH)
        produced, _ = drive(session, audio, lambda r: hear(script, r))
        ends[silence] = [m for _, m in produced if isinstance(m, VadEvent) and m.event == "speech_end"]
        stables = [m for _, m in produced if isinstance(m, Stable)]
        assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert len(ends[None]) >= 2 and ends[2.0] == []
    with pytest.raises(ProtocolError):
        Start(endpoint_silence=20.0)


def test_decodes_only_while_there_is_speech(mixed) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 3)
    silence = np.zeros(5 * SAMPLE_RATE, np.float32)
    produced, requests = drive(new_session(), np.concatenate([silence, audio[: int(clip.segments[0].end_s * SAMPLE_RATE)], silence[:SAMPLE_RATE]]), lambda r: hear([w.shifted(5.0) for w in script], r))
    assert requests, "the utterance was never decoded"
    for request in requests:
        assert request.window_start >= 5.0 - 0.7, "the silence before the speech was sent to the decoder"
    vad = [m for _, m in produced if isinstance(m, VadEvent)]
    assert vad[0].event == "speech_start" and abs(vad[0].time - 5.3) < 0.5
    assert vad[1].event == "speech_end"

    silent = new_session()
    produced, requests = drive(silent, np.zeros(10 * SAMPLE_RATE, np.float32), lambda r: pytest.fail("decoded silence"))
    assert requests == [] and [type(m) for _, m in produced] == [Ready, LanguageDetected, End]


def test_a_decode_that_ends_at_its_context_is_followed_by_ones_without_it(mixed) -> None:
    """Whisper may end its text right after the forced context though the speaker went on: the
    buffer is cut after the committed words, so the captions go on before the endpoint."""
    clip, audio = mixed
    script = scripted_words(clip, 2)

    def stops_at_context(request: TickRequest) -> Hypothesis:
        hypothesis = hear(script, request)
        if not request.context or not request.context[-1].ends_segment:  # only where a pause follows
            return hypothesis
        end = request.context[-1].end - request.window_start
        return replace(hypothesis, words=tuple(w for w in hypothesis.words if w.end <= end + 0.01))

    produced, requests = drive(new_session(), audio[: int(clip.segments[1].end_s * SAMPLE_RATE)], stops_at_context)
    second = clip.segments[1]
    partials = [t for t, m in produced if isinstance(m, Partial) and m.text and second.start_s < m.start]
    assert partials and min(partials) < second.end_s - 2.0  # live captions, not only at the endpoint
    first_end = next(w.end for w in script if w.ends_segment)
    assert any(not r.context and first_end <= r.window_start < second.start_s < r.window_end for r in requests)
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


@pytest.mark.parametrize("pause", [0.0, 4.0])
def test_the_last_utterance_is_the_next_ones_context_across_a_short_pause_only(mixed, pause: float) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 2)
    split = int((clip.segments[0].end_s + clip.segments[1].start_s) / 2 * SAMPLE_RATE)
    joined = np.concatenate([audio[:split], np.zeros(int(pause * SAMPLE_RATE), np.float32), audio[split : int(clip.segments[1].end_s * SAMPLE_RATE)]])
    moved = [w if w.start < split / SAMPLE_RATE else w.shifted(pause) for w in script]
    produced, requests = drive(new_session(), joined, lambda r: hear(moved, r))
    first_end = next(w.end for w in moved if w.ends_segment)
    second = next(r for r in requests if r.window_end > first_end + pause + 1.5)
    if pause < StreamConfig().context_pause - 1.0:
        assert second.context and second.context[-1].end == first_end  # the first utterance's last words
        assert second.context[-1].end - second.context[0].start <= 10.0 + 1.0  # about stream.overlap of them
    else:
        assert second.window_start > first_end and all(w.start > first_end for w in second.context)
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def test_buffer_is_trimmed_at_the_last_commit(mixed) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 3)
    _, requests = drive(new_session(), audio, lambda r: hear(script, r))
    starts = [r.window_start for r in requests if not r.probe]  # a probe hears new speech alone, not the buffer
    assert starts == sorted(starts)
    assert starts[-1] > clip.segments[2].start_s - 1.0  # the third utterance is decoded on its own
    for request in requests:
        assert request.window_start == pytest.approx(round(request.window_start * SAMPLE_RATE) / SAMPLE_RATE)


def test_a_decode_is_drafted_from_the_last_one_of_the_same_window_start(mixed) -> None:
    """The worker checks the previous decode's tokens as a draft: only when that decode heard
    the same window start after the same prompt (else its timestamps would not fit)."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    answered: list[tuple[TickRequest, Hypothesis]] = []

    def respond(request: TickRequest) -> Hypothesis:
        hypothesis = replace(hear(script, request), tokens=(request.serial, 7))
        answered.append((request, hypothesis))
        return hypothesis

    drive(new_session(), audio, respond)
    drafted = 0
    # A probe (new speech heard alone) neither takes a draft nor leaves one: the decode after it
    # is drafted from the last decode of the buffer.
    decodes = [(request, answer) for request, answer in answered if not request.probe]
    assert all(not request.draft for request, _ in answered if request.probe)
    for (before, answer), (request, _) in itertools.pairwise(decodes):
        same = (before.window_start, before.prompt) == (request.window_start, request.prompt)
        assert request.draft == (answer.tokens if same else ())
        drafted += same
    assert 0 < drafted < len(decodes) - 1  # most ticks are drafted, not those after a cut


def test_the_prompt_ends_where_a_segment_ends(mixed) -> None:
    """A prompt that stops mid-phrase is continued by the decoder instead of the audio being
    followed, so the prompt holds committed text only up to the last finished segment."""
    clip, audio = mixed
    script = scripted_words(clip, 3)
    closing = tuple(w.text for w in script if w.ends_segment)
    _, requests = drive(new_session(trim_after=3.0, overlap=1.0), audio, lambda r: hear(script, r))
    mid_utterance = [r for r in requests if any(u.start_s + 1.0 < r.window_start < u.end_s - 1.0 for u in clip.segments[:3])]
    assert mid_utterance, "no cut inside an utterance"
    assert all(r.prompt == "" or r.prompt.endswith(closing) for r in requests), {r.prompt[-30:] for r in requests}
    assert any(r.prompt.endswith(closing) for r in mid_utterance if r.window_start > clip.segments[1].start_s)


def test_no_speech_results_emit_nothing(mixed) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 1)
    produced, requests = drive(new_session(), audio[: 7 * SAMPLE_RATE], lambda r: hear(script, r, no_speech_prob=0.9, avg_logprob=-1.5))
    assert requests
    assert not [m for _, m in produced if isinstance(m, (Stable, Partial))]


def test_unsure_fillers_alone_are_noise(mixed) -> None:
    _clip, audio = mixed
    fillers = (Word(" Mm", 0.2, 0.9, 0.23), Word("-hmm.", 0.9, 1.0, 0.64))
    produced, requests = drive(new_session(), audio[: 4 * SAMPLE_RATE], lambda r: replace(hear([], r), words=fillers))
    assert requests and not [m for _, m in produced if isinstance(m, (Stable, Partial)) and m.text]
    sure = tuple(replace(w, probability=0.9) for w in fillers)  # said clearly, "mm-hmm" is speech
    produced, _ = drive(new_session(), audio[: 4 * SAMPLE_RATE], lambda r: replace(hear([], r), words=sure))
    assert [m for _, m in produced if isinstance(m, Stable) and "hmm" in m.text]


def test_a_repetition_loop_is_never_committed_and_resets_the_prompt(mixed) -> None:
    clip, audio = mixed
    loop = [Word(" thank you", 0.5 + 0.4 * i, 0.8 + 0.4 * i, 0.5) for i in range(8)]
    calls: list[TickRequest] = []

    def looping(request: TickRequest) -> Hypothesis:
        calls.append(request)
        head = [Word(" so", 0.1, 0.3, 0.9)]
        return Hypothesis(tuple(head + loop), "en", 1.0, -0.4, 0.01, 1.8)

    produced, _ = drive(new_session(), audio[: int(clip.segments[0].end_s * SAMPLE_RATE) + 16000], looping)
    stable_text = "".join(w.word for _, m in produced if isinstance(m, Stable) for w in m.words)
    assert stable_text.startswith(" so")
    assert " thank you thank you" not in stable_text  # the loop never reaches stable text
    # The context that led into a loop is not given again.
    assert all("thank you thank you" not in r.prompt for r in calls)


def test_words_made_up_after_the_speech_are_never_committed(mixed) -> None:
    """Seen in the daemon: a decode ended "…10 meters. Go forward 10 meters.", its last four
    words aligned to one instant: text the model made up, not audio it heard (here the
    classic "Thank you for watching.")."""
    clip, audio = mixed
    script = scripted_words(clip, 1)

    def repeats(request: TickRequest) -> Hypothesis:
        hypothesis = hear(script, request)
        end = hypothesis.words[-1].end if hypothesis.words else 0.0
        made_up = tuple(Word(text, end, end, 0.8) for text in (" Thank", " you", " for", " watching."))
        return replace(hypothesis, words=hypothesis.words + made_up)

    produced, _requests = drive(new_session(), audio[: int((clip.segments[0].end_s + 1.0) * SAMPLE_RATE)], repeats)
    stable = "".join(m.text for _, m in produced if isinstance(m, Stable))
    assert stable.split() == [w.text.strip() for w in script]
    assert not [m for _, m in produced if isinstance(m, Partial) and "watching" in m.text]


def test_unsure_words_aligned_to_no_audio_are_never_committed(mixed) -> None:
    """Seen in the daemon after a cut inside a phrase: "…incurred in casting…" decoded as
    "In case you are not required in casting…", the made-up words each 0 ms long and of
    probability 0.0-0.3. Such a run is dropped wherever it is; the words around it stand."""
    clip, audio = mixed
    script = scripted_words(clip, 1)

    def makes_up(request: TickRequest) -> Hypothesis:
        hypothesis = hear(script, request)
        words = list(hypothesis.words)
        if len(words) > 4:
            at = words[3].end
            words[4:4] = [Word(text, at, at, 0.1) for text in (" case", " you", " are", " not")]
        return replace(hypothesis, words=tuple(words))

    produced, _ = drive(new_session(), audio[: int((clip.segments[0].end_s + 1.0) * SAMPLE_RATE)], makes_up)
    stable = "".join(m.text for _, m in produced if isinstance(m, Stable))
    assert stable.split() == [w.text.strip() for w in script]


def test_language_is_detected_once_then_kept(mixed) -> None:
    clip, audio = mixed
    script = scripted_words(clip, 1)
    session = Session("m", Start(), Config(), ModelInfo("base", multilingual=True))
    guesses = iter([("de", 0.3), ("en", 0.8)] + [("fr", 0.99)] * 1000)

    def detect(request: TickRequest) -> Hypothesis:
        language, probability = next(guesses) if request.language is None else (request.language, 1.0)
        return hear(script, request, language=language, language_probability=probability)

    produced, requests = drive(session, audio[: 8 * SAMPLE_RATE], detect)
    languages = [m for _, m in produced if isinstance(m, LanguageDetected)]
    assert [(m.language, m.probability) for m in languages] == [("en", 0.8)]
    assert requests[0].language is None and requests[-1].language == "en"


def test_english_only_model_refuses_other_languages() -> None:
    with pytest.raises(ProtocolError) as raised:
        Session("x", Start(language="de"), Config(), ENGLISH)
    assert raised.value.code == CloseCode.UNSUPPORTED


def test_a_cut_in_the_pause_never_falls_before_a_committed_word_ends() -> None:
    """A late decode committed the next utterance's first word (its start aligned before the
    endpoint): cut in the pause, its audio would be heard again without it as context, twice."""
    from streamer.stream.context import StreamBuffer

    buffer = StreamBuffer(Config())
    buffer.audio.append(np.zeros(6 * SAMPLE_RATE, np.float32))
    buffer.committed = [Word(" blancas", 2.2, 2.76, 0.9), Word(" de", 3.0, 3.72, 0.9)]
    assert buffer.cut_in_pause(3.06, 3.57) == pytest.approx(3.72)
    assert buffer.audio.start_time == pytest.approx(3.72) and buffer.committed == []
    plain = StreamBuffer(Config())
    plain.audio.append(np.zeros(6 * SAMPLE_RATE, np.float32))
    assert plain.cut_in_pause(3.06, 3.57) == pytest.approx(3.315)  # the pause's middle


def test_a_final_commit_stops_before_a_word_that_runs_into_the_next_utterance(mixed) -> None:
    """A late worker's final decode of an utterance hears the next one begin; the alignment may
    put that one's first word back into the pause, before the endpoint's `until` ("¿Déjame" from
    10.94 s, for German from 11.04 s): it is the next utterance's, not committed with this one."""
    from streamer.stream.endpointer import Endpointer

    clip, audio = mixed
    endpointer = Endpointer(Config())
    endpointer.feed(audio[: int((clip.segments[0].end_s - 0.5) * SAMPLE_RATE)])
    endpointer.final_reason = endpointer.endpoint_time = None  # its endpoints so far: decoded, committed
    boundaries = endpointer.feed(audio[int((clip.segments[0].end_s - 0.5) * SAMPLE_RATE) : int(clip.segments[1].start_s * SAMPLE_RATE)])
    speech_end = [b.time for b in boundaries if b.event == "speech_end"][-1]
    until = endpointer.endpoint_until()
    assert until is not None and until > speech_end
    last = Word(" end.", speech_end - 0.5, speech_end - 0.1, 0.9, ends_segment=True)
    assert endpointer.utterance_bound([last], until) == until  # no speech since: nothing to stop before
    boundaries = endpointer.feed(audio[int(clip.segments[1].start_s * SAMPLE_RATE) : int((clip.segments[1].start_s + 1.5) * SAMPLE_RATE)])
    onset = next(b.time for b in boundaries if b.event == "speech_start")
    straddling = Word(" Next", until - 0.05, onset + 0.3, 0.6)
    assert endpointer.utterance_bound([last, straddling, Word(" words", onset + 0.3, onset + 0.6, 0.9)], until) == straddling.start
    inside = Word(" too", until - 0.05, onset - 0.05, 0.6)  # ends before the next speech: this utterance's
    assert endpointer.utterance_bound([last, inside], until) == until
    stretched = Word(" you.", speech_end - 0.3, onset + 0.3, 0.9)  # begun before the pause: this utterance's
    assert endpointer.utterance_bound([stretched], until) == until


def test_a_sentence_mark_the_decoder_writes_again_in_context_is_sent_once_before_what_follows(mixed) -> None:
    clip, audio = mixed
    script = [replace(w, text=w.text + ".") if w.ends_segment else w for w in scripted_words(clip, 3)]
    produced, _ = drive(new_session(), audio, lambda r: hear(script, r))
    messages = [m for _, m in produced]
    stables = [m for m in messages if isinstance(m, Stable)]
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]
    assert any(s.text.startswith(". ") for s in stables)  # held, then sent before the next sentence
    assert isinstance(messages[-1], End) and messages[-1].last_stable_id == stables[-1].id


def test_a_full_stop_heard_only_at_a_pause_is_dropped_when_the_decoder_goes_on_past_it(mixed) -> None:
    clip, audio = mixed
    placed = scripted_words(clip, 3)
    utterance_ends = {w.end for w in placed if w.ends_segment}
    script = [replace(w, ends_segment=False) for w in placed]  # one sentence: no segment ends at the pauses

    def at_a_pause(request: TickRequest) -> Hypothesis:
        # Whisper ends a window that ends in a pause with a full stop, but not the same words
        # heard with the speech after them: the sentence goes on.
        heard = hear(script, request)
        last = heard.words[-1] if heard.words else None
        if last is not None and any(abs(end - request.window_start - last.end) < 1e-6 for end in utterance_ends):
            heard = replace(heard, words=(*heard.words[:-1], replace(last, text=last.text + ".")))
        return heard

    produced, _ = drive(new_session(), audio, at_a_pause)
    stables = [m for _, m in produced if isinstance(m, Stable)]
    text = "".join(s.text for s in stables)
    assert text.split()[:-1] == [w.text.strip() for w in script][:-1] and text.count(".") == 1 and text.endswith(".")
