"""The language decider on scripted language-ID distributions (no model)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.data import clips_of, data_available
from model.audio import SAMPLE_RATE, load_audio
from streamer.config import Config, ConfigError, LanguageConfig, StreamConfig
from streamer.stream.language_decider import LanguageDecider
from streamer.stream.session import ModelInfo, Session
from wire import LanguageDetected, Partial, Stable, Start

from .test_streamer_session import answer_due, drive, hear, pcm, scripted_words

CONFIG = LanguageConfig(min_speech=2.0, confidence=0.8, switch_speech=2.0, switch_confidence=0.8, recheck_utterances=2, max_hold=6.0)


def ramp(decider: LanguageDecider, onset: float, voiced_start: float, observations: list[tuple[float, dict[str, float]]], *, final: bool = True):
    """Observations of one utterance: (voiced seconds into it, distribution); the last one final."""
    decisions = []
    for k, (voiced, probs) in enumerate(observations):
        last = final and k == len(observations) - 1
        decisions.append(decider.observe(onset, probs, voiced_start + voiced, onset + voiced + 0.2, final=last))
    return decisions


def test_early_confident_guess_on_too_little_speech_is_not_taken() -> None:
    # As the shared Spanish clip: Arabic at 0.93 after 1 s, Spanish once more is heard.
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    early = ramp(decider, 0.0, 0.0, [(0.6, {"en": 0.5, "ar": 0.1}), (1.2, {"ar": 0.93, "es": 0.05}), (2.0, {"es": 0.6, "ar": 0.3})], final=False)
    assert early == [None, None, None] and decider.holding
    [decision] = ramp(decider, 0.0, 0.0, [(2.4, {"es": 0.97, "ar": 0.02})], final=False)
    assert decision is not None and decision.language == "es" and decision.reason == "confident"
    assert decider.language == "es" and not decider.holding


def test_unsure_evidence_waits_then_max_hold_decides_on_what_there_is() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.5, 0.0)
    assert decider.observe(0.5, {"it": 0.6, "en": 0.4}, 3.0, 3.5) is None  # enough speech, not sure
    assert decider.holding and not decider.hold_expired(6.4)
    decision = decider.observe(0.5, {"it": 0.65, "en": 0.35}, 4.5, 6.6)
    assert decision is not None and (decision.language, decision.reason) == ("it", "max_hold")
    assert decision.probability == pytest.approx(0.65)


def test_before_the_decision_the_id_of_all_held_speech_counts_across_utterances() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.3, 0.1)
    assert decider.detect_from == 0.3
    assert decider.observe(0.3, {"de": 0.9, "nl": 0.1}, 1.1, 1.2, final=True) is None  # 1 s: too little
    decider.begin_utterance(2.0, 1.1)
    assert decider.detect_from == 0.3 and decider.holding  # the next decode hears both utterances
    decision = decider.observe(0.3, {"de": 0.85, "nl": 0.15}, 2.6, 3.2, final=True)
    assert decision is not None and decision.language == "de"
    assert decision.voiced_seconds == pytest.approx(2.5) and decision.probability == pytest.approx(0.85)
    assert decider.detect_from == 2.0  # from now on, each utterance's own language-ID


def test_force_decides_at_stop_and_without_evidence_releases_the_hold() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    decider.observe(0.0, {"ko": 0.7, "ja": 0.3}, 1.0, 1.2)
    decision = decider.force(1.5)
    assert decision is not None and (decision.language, decision.reason) == ("ko", "forced") and not decider.holding
    empty = LanguageDecider(CONFIG)
    empty.begin_utterance(0.0, 0.0)
    assert empty.force(1.0) is None and empty.language is None and not empty.holding


def test_one_utterance_in_another_language_switches_when_it_is_clear() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(3.0, {"es": 0.99})])
    decider.begin_utterance(8.0, 3.0)
    assert decider.holding  # a new utterance's text waits for its own language-ID
    assert decider.observe(8.0, {"de": 0.95, "es": 0.02}, 4.0, 9.2) is None  # 1 s into it: not checked yet
    assert decider.holding and decider.language == "es"
    switch = decider.observe(8.0, {"de": 0.95, "es": 0.02}, 5.2, 10.5)
    assert switch is not None and (switch.language, switch.reason, switch.since) == ("de", "switch", 8.0)
    assert [(u.language, u.onset) for u in decider.history] == [("es", 0.0)]


def test_a_stream_resumed_from_another_replica_holds_nothing_and_still_switches() -> None:
    decider = LanguageDecider(CONFIG)
    decider.resume("es", 20.0)
    assert decider.language == "es" and not decider.holding  # decided there: its text is not held here
    decider.begin_utterance(21.0, 0.0)
    assert decider.holding  # the next utterance is checked as it would have been there
    switch = decider.observe(21.0, {"de": 0.95, "es": 0.02}, 2.5, 23.6)
    assert switch is not None and (switch.language, switch.since) == ("de", 21.0)


def test_a_short_or_unsure_utterance_does_not_switch_but_two_together_do() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(3.0, {"en": 0.99})])
    decider.begin_utterance(5.0, 3.0)
    assert decider.observe(5.0, {"fr": 0.9, "en": 0.1}, 4.2, 6.5, final=True) is None  # 1.2 s: too little
    assert decider.waiting and decider.holding and decider.language == "en"  # its text waits for the next
    decider.begin_utterance(8.0, 4.2)
    assert decider.observe(8.0, {"fr": 0.6, "en": 0.4}, 6.3, 10.3, final=True) is None  # unsure
    assert not decider.holding  # no switch on both: the short one's text is in English
    decider.begin_utterance(12.0, 6.3)
    switch = decider.observe(12.0, {"fr": 0.95, "en": 0.05}, 7.5, 13.5, final=True)
    # The last two utterances (2.1 s + 1.2 s, at most `recheck_utterances`) hold French at ~0.73:
    # under 0.8, no switch; a clearer one does.
    assert switch is None
    decider.begin_utterance(15.0, 7.5)
    switch = decider.observe(15.0, {"fr": 0.99, "en": 0.01}, 8.8, 16.5, final=True)
    assert switch is not None and switch.language == "fr"
    assert switch.since == 12.0  # from the first utterance the switch's evidence gives to French


def test_a_new_speakers_short_first_words_wait_and_the_switch_takes_them() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(4.0, {"es": 0.99})])
    decider.begin_utterance(10.4, 4.0)
    assert decider.observe(10.4, {"de": 0.9, "es": 0.1}, 5.3, 11.9, final=True) is None  # 1.3 s: too little
    assert decider.holding and decider.waiting
    assert decider.hold_expired(16.5) and not decider.hold_expired(16.3)  # bounded from the first words
    decider.begin_utterance(12.3, 5.3)
    assert decider.holding and decider.detect_from == 12.3  # the next one's own ID
    switch = decider.observe(12.3, {"de": 0.97, "es": 0.03}, 7.4, 14.5)
    assert switch is not None and (switch.language, switch.since) == ("de", 10.4)
    assert not decider.waiting
    # The same short words followed by Spanish: they are Spanish, and nothing waits.
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(4.0, {"es": 0.99})])
    decider.begin_utterance(10.4, 4.0)
    decider.observe(10.4, {"de": 0.9, "es": 0.1}, 5.3, 11.9, final=True)
    decider.begin_utterance(12.3, 5.3)
    assert decider.observe(12.3, {"es": 0.97, "de": 0.03}, 7.4, 14.5) is None
    assert not decider.holding and decider.language == "es"


def test_short_words_heard_in_a_third_language_are_not_taken_by_the_switch() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(4.0, {"es": 0.99})])
    decider.begin_utterance(5.0, 4.0)
    assert decider.observe(5.0, {"pt": 0.9, "es": 0.1}, 5.5, 7.0, final=True) is None  # Spanish, heard as Portuguese
    assert decider.waiting
    decider.begin_utterance(8.0, 5.5)
    switch = decider.observe(8.0, {"de": 0.97, "es": 0.03}, 8.5, 11.2)
    assert switch is not None and (switch.language, switch.since) == ("de", 8.0)  # it stays Spanish
    assert not decider.waiting


def test_an_unclear_utterance_before_a_clear_new_language_does_not_outvote_it() -> None:
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(3.0, {"es": 0.99})])
    decider.begin_utterance(5.0, 3.0)
    assert decider.observe(5.0, {"pt": 0.74, "es": 0.1, "de": 0.16}, 6.2, 8.5, final=True) is None  # Spanish, heard as Portuguese
    decider.begin_utterance(11.0, 6.2)
    switch = decider.observe(11.0, {"de": 0.99, "pt": 0.01}, 10.2, 15.2, final=True)
    assert switch is not None and (switch.language, switch.since) == ("de", 11.0)


def test_a_late_final_decode_of_an_earlier_utterance_commits_only_once_the_language_is_decided() -> None:
    from streamer.stream.language import StreamLanguage

    lang = StreamLanguage(Start(), Config(language=CONFIG), "base", multilingual=True)
    lang.decider.begin_utterance(0.0, 0.0)
    lang.decider.observe(0.0, {"es": 0.6, "pt": 0.4}, 1.0, 1.2, final=True)  # 1 s, unsure
    lang.decider.begin_utterance(2.0, 1.0)
    assert lang.holds(final=True, earlier=True)  # no stable before the first `language`
    assert lang.decider.observe(2.0, {"es": 0.97, "pt": 0.03}, 3.5, 4.0) is not None
    lang.decider.begin_utterance(6.0, 3.5)
    assert lang.holds(final=False, earlier=False)  # the new utterance's own ID is not in
    assert not lang.holds(final=True, earlier=True)  # the one before it commits now


def test_a_late_worker_ids_the_utterance_its_final_decode_commits_on_its_own_audio() -> None:
    # Spanish, a click, German, then French begun before the German's final decode is asked for.
    decider = LanguageDecider(CONFIG)
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(4.0, {"es": 0.99})])
    decider.begin_utterance(10.5, 4.0)  # the click
    decider.begin_utterance(11.0, 4.15)  # the German
    assert (decider.detect_from, decider.detect_until) == (11.0, None)
    decider.begin_utterance(17.6, 8.15)  # the French
    # The click (short, ended) waits for the German's evidence; the German's text is held: its own ID, up to the French.
    assert (decider.detect_from, decider.detect_until) == (11.0, 17.6) and decider.holding
    switch = decider.observe(11.0, {"de": 0.99, "es": 0.01}, 8.5, 18.3, final=True)
    assert switch is not None and (switch.language, switch.since) == ("de", 10.5)
    assert (decider.detect_from, decider.detect_until) == (17.6, None)  # then the French's
    switch = decider.observe(17.6, {"fr": 0.99, "de": 0.01}, 11.5, 21.0)
    assert switch is not None and (switch.language, switch.since) == ("fr", 17.6)  # the German stays German


def test_an_utterance_won_by_the_current_language_breaks_the_run() -> None:
    decider = LanguageDecider(LanguageConfig(switch_speech=2.0, recheck_utterances=3, min_speech=1.0, confidence=0.5))
    decider.begin_utterance(0.0, 0.0)
    ramp(decider, 0.0, 0.0, [(2.0, {"en": 0.9, "de": 0.1})])
    for k, language in enumerate(["de", "en", "de"]):
        decider.begin_utterance(3.0 + 3 * k, 2.0 + 1.5 * k)
        assert decider.observe(3.0 + 3 * k, {language: 0.95}, 3.5 + 1.5 * k, 5.0 + 3 * k, final=True) is None
    assert decider.language == "en"  # 1.5 s of German since the last English utterance


def test_given_languages_restrict_detection_and_one_skips_it() -> None:
    decider = LanguageDecider(CONFIG, ["es", "en"])
    decider.begin_utterance(0.0, 0.0)
    decision = decider.observe(0.0, {"ar": 0.9, "es": 0.09, "en": 0.01}, 3.0, 3.2)
    assert decision is not None and decision.language == "es" and decision.probability == pytest.approx(0.9)
    single = LanguageDecider(CONFIG, ["de"])
    assert single.fixed and single.language == "de" and not single.holding


def test_language_config_is_validated() -> None:
    assert LanguageConfig(languages="es, EN").language_list == ("es", "en")
    with pytest.raises(ConfigError):
        LanguageConfig(languages="es,klingon")
    with pytest.raises(ConfigError):
        LanguageConfig(confidence=0.0)
    with pytest.raises(ConfigError):
        LanguageConfig(max_hold=60.0)


# ---- the session with a scripted decoder that reports language-ID distributions ----------------


def _session_with(script_probs, utterances: int, languages: tuple[str, ...] = ()):
    if not data_available():
        pytest.skip("shared evaluation data not found")

    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)[: int((clip.segments[utterances - 1].end_s + 1.0) * SAMPLE_RATE)]
    script = scripted_words(clip, utterances)
    session = Session("m", Start(languages=languages), Config(), ModelInfo("base", multilingual=True))

    def decode(request):
        probs = script_probs(request, session)
        top = max(probs, key=lambda k: probs[k])
        language = request.language or top
        hypothesis = hear(script, request, language=language, language_probability=probs[top])
        return replace(hypothesis, language_probs=probs if request.detect_language else None)

    produced, requests = drive(session, audio, decode)
    return clip, script, produced, requests


def test_session_holds_stable_text_until_decided_then_commits_all_of_it_in_that_language() -> None:
    def probs(request, session):
        heard = request.window_end - request.window_start
        return {"ar": 0.93, "es": 0.05, "en": 0.02} if heard < 2.0 else {"es": 0.97, "ar": 0.02, "en": 0.01}

    _, script, produced, requests = _session_with(probs, 1)
    kinds = [type(m) for _, m in produced]
    decided = kinds.index(LanguageDetected)
    assert Stable not in kinds[:decided] and Partial in kinds[:decided]  # partials show, nothing stable
    assert [m.language for _, m in produced if isinstance(m, LanguageDetected)] == ["es"]
    stables = [m for _, m in produced if isinstance(m, Stable)]
    assert {s.language for s in stables} == {"es"}
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]  # nothing lost
    assert requests[0].language is None and requests[0].detect_language
    assert all(r.language == "es" for r in requests if r.serial > requests[decided].serial + 2 and not r.detect_language)


def test_session_switches_on_an_utterance_clearly_in_another_language() -> None:
    second_onset = {"t": None}

    def probs(request, session):
        start = request.detect_from if request.detect_from is not None else request.window_start
        if second_onset["t"] is None and start > 1.0 and session.language == "es":
            second_onset["t"] = start
        in_second = second_onset["t"] is not None and start >= second_onset["t"]
        return {"de": 0.95, "es": 0.05} if in_second else {"es": 0.98, "de": 0.02}

    clip, script, produced, _ = _session_with(probs, 2)
    languages = [(t, m.language) for t, m in produced if isinstance(m, LanguageDetected)]
    assert [code for _, code in languages] == ["es", "de"]
    stables = [m for _, m in produced if isinstance(m, Stable)]
    first_end = clip.segments[0].end_s
    assert {s.language for s in stables if s.end <= first_end + 0.5} == {"es"}
    assert {s.language for s in stables if s.start > first_end + 0.5} == {"de"}
    assert "".join(s.text for s in stables).split() == [w.text.strip() for w in script]


def test_start_languages_are_parsed_and_checked_against_the_model() -> None:
    from streamer.config import load_config
    from wire import CloseCode, ProtocolError, parse_start

    assert parse_start({"type": "start", "languages": ["es", "en"]}).languages == ("es", "en")
    with pytest.raises(ProtocolError) as malformed:
        parse_start({"type": "start", "languages": "es"})
    assert malformed.value.code == CloseCode.MALFORMED
    for languages, model in ((("es",), ModelInfo("tiny.en", multilingual=False)), (("xx",), ModelInfo("base", multilingual=True))):
        with pytest.raises(ProtocolError) as refused:
            Session("x", Start(languages=languages), Config(), model)
        assert refused.value.code == CloseCode.UNSUPPORTED
    config = load_config(None, ["--language.languages", "es,en", "--min-speech", "1.5", "--max-hold", "4"])
    assert config.language.language_list == ("es", "en") and config.language.min_speech == 1.5
    single = Session("x", Start(languages=("Spanish",)), Config(), ModelInfo("base", multilingual=True))
    assert [(type(m).__name__, getattr(m, "language", None)) for m in single.open()] == [("Ready", None), ("LanguageDetected", "es")]


def test_a_decode_heard_in_another_language_is_not_committed_in_the_streams_when_an_endpoint_comes_meanwhile() -> None:
    """A late worker's decode of an utterance heard alone is answered after the speaker stopped
    and began the next one, so it commits at once (no second decode of the same audio, and the
    next one's check does not hold it); heard unclearly as Portuguese in a Spanish stream, its
    words must be decoded again in Spanish, not committed labelled Spanish (they were: "E tem
    muito pouca assistência")."""
    from streamer.stream.vad import SpeechEnd, SpeechStart, VoiceActivityDetector

    if not data_available():
        pytest.skip("shared evaluation data not found")
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)[: int((clip.segments[2].end_s + 1.0) * SAMPLE_RATE)]
    script = scripted_words(clip, 3)
    config = Config(language=CONFIG, stream=replace(StreamConfig(), overlap=0.0))  # the second utterance heard alone
    vad = VoiceActivityDetector(config.vad.aggressiveness, config.vad.speech_start, config.stream.endpoint_silence)
    transitions = vad.feed(audio)
    speech_end = [t.time for t in transitions if isinstance(t, SpeechEnd) and t.time < clip.segments[2].start_s][-1]
    next_start = next(t.time for t in transitions if isinstance(t, SpeechStart) and t.time > speech_end)
    session = Session("m", Start(), config, ModelInfo("base", multilingual=True))
    second, third = clip.segments[1].start_s - 0.5, clip.segments[2].start_s - 0.5

    def respond(request):
        start = request.detect_from if request.detect_from is not None else request.window_start
        probs = {"pt": 0.7, "es": 0.3} if second <= start < third else {"es": 0.98, "pt": 0.02}
        language = request.language or max(probs, key=lambda k: probs[k])
        heard = hear(script, request, language=language)
        tagged = tuple(replace(w, text=f"{w.text}~{language}") for w in heard.words)
        return replace(heard, words=tagged, language_probs=probs if request.detect_language else None)

    # Decodes are answered 0.3 s of audio after they are asked for; the one asked for 0.2 s after
    # the second utterance ended (it hears past the end) only once the third began.
    produced, in_flight, answer_at, late = [], None, 0.0, None
    for offset in range(0, len(audio), SAMPLE_RATE // 10):
        produced += session.on_audio(pcm(audio[offset : offset + SAMPLE_RATE // 10]))
        now = session.audio_seconds
        if in_flight is not None and now >= answer_at - 1e-6:
            produced += session.apply_result(in_flight, respond(in_flight))
            in_flight = None
        if in_flight is None and session.wants_tick and not speech_end - 1.0 <= now < speech_end + 0.2:
            in_flight = session.make_tick_request()
            answer_at = max(now, next_start) + 0.3 if late is None and now >= speech_end + 0.2 else now + 0.3
            late = in_flight if late is None and now >= speech_end + 0.2 else late
    produced += session.stop()
    if in_flight is not None:
        produced += session.apply_result(in_flight, respond(in_flight))
    produced += answer_due(session, respond)
    assert late is not None and not late.final and late.language is None  # the case: heard alone, before the endpoint
    stables = [m for m in produced if isinstance(m, Stable)]
    assert [m.language for m in produced if isinstance(m, LanguageDetected)] == ["es"]
    assert stables and all(w.endswith("~es") for s in stables for w in s.text.split()), [s.text for s in stables]
    assert [w.split("~")[0] for s in stables for w in s.text.split()] == [w.text.strip() for w in script]  # nothing lost
