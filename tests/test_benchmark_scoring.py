"""The benchmarks' scoring, on made-up event logs and figures: what decides their PASS and FAIL.

`benchmarks.streaming.score_clip` (stable latency per utterance: when the stable text holding its
last word arrived, minus when its end was sent; first-partial latency; revisions), the percentile
the bars are judged on, `benchmarks.capacity`'s levels and sustained count, `benchmarks.compat`'s
pooled scores and bars, `benchmarks.failover`'s stream check, `benchmarks.languages`' verdicts and
`benchmarks.offline`'s long-form checks. No model, no daemon, no shared data.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import benchmarks.data
from benchmarks import capacity, compat, failover, languages, offline, streaming
from benchmarks.data import Clip, Utterance
from benchmarks.streaming import Event

# ---- a long clip of two utterances, and what a daemon sent while it was replayed ---------------

HELLO = Clip("hello", Path("short/hello.wav"), 1.5, "en", "Hello there.", "short")
KENOBI = Clip("kenobi", Path("short/kenobi.wav"), 2.5, "en", "General Kenobi, you are bold.", "short")
LONG = Clip("long_two", Path("long/two.wav"), 6.0, "en", "Hello there. General Kenobi, you are bold.", "long",
            (Utterance("hello", 0.0, 1.5), Utterance("kenobi", 2.5, 5.0)))  # fmt: skip


@pytest.fixture
def manifest(monkeypatch: pytest.MonkeyPatch) -> list[Clip]:
    """The three clips as the shared manifest (score_clip reads the utterances' texts from it)."""
    clips = [HELLO, KENOBI, LONG]

    def load_manifest(data_dir: Path | None = None) -> list[Clip]:
        return clips

    monkeypatch.setattr(streaming, "load_manifest", load_manifest)
    monkeypatch.setattr(benchmarks.data, "load_manifest", load_manifest)
    return clips


def words(*spans: tuple[str, float, float]) -> list[dict[str, Any]]:
    return [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in spans]


def stable(i: int, text: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "stable", "id": i, "start": spans[0]["start"], "end": spans[-1]["end"], "text": text, "words": spans, "language": "en"}


def partial(text: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "partial", "text": text, "start": spans[0]["start"], "end": spans[-1]["end"], "words": spans}


def at(t: float, msg: dict[str, Any]) -> Event:
    """A message that arrived `t` s after the first frame, audio sent at real time (sent == t)."""
    return Event(t, t, msg)


def events(last_stable: str = " bold.") -> list[Event]:
    """Hello (0-1.5 s) and Kenobi (2.5-5.0 s): first partials at 0.9 and 3.3 s; Hello stable at
    2.0 s; Kenobi stable in two parts, its last word at 6.0 s."""
    return [
        at(0.1, {"type": "ready", "session_id": "s", "model": "tiny.en", "sample_rate": 16000}),
        at(0.9, partial(" Hello", words((" Hello", 0.1, 0.5)))),
        at(2.0, stable(0, " Hello there.", words((" Hello", 0.1, 0.5), (" there.", 0.6, 1.4)))),
        at(3.3, partial(" General", words((" General", 2.6, 3.0)))),
        at(5.4, stable(1, " General Kenobi, you are", words((" General", 2.6, 3.0), (" Kenobi,", 3.1, 3.6), (" you", 3.8, 4.0), (" are", 4.1, 4.3)))),
        at(6.0, stable(2, last_stable, words((last_stable, 4.4, 4.9)))),
        at(6.5, {"type": "end", "last_stable_id": 2, "audio_seconds": 6.0}),
    ]


def test_stable_latency_is_when_an_utterances_last_word_arrived_minus_when_its_end_was_sent(manifest: list[Clip]) -> None:
    report = streaming.score_clip(LONG, events(), offline_text="Hello there. General Kenobi, you are old.", speed=1.0)
    assert report.stable_latency == (pytest.approx(2.0 - 1.5), pytest.approx(6.0 - 5.0))
    assert report.first_partial_latency == (pytest.approx(0.9 - 0.0), pytest.approx(3.3 - 2.5))
    assert (report.utterances, report.utterances_found, report.stable_revisions) == (2, 2, 0)
    assert report.stable_text == "Hello there. General Kenobi, you are bold."
    assert report.streaming_wer == 0.0
    assert report.offline_wer == pytest.approx(1 / 7)  # "bold" -> "old": 1 of 7 reference words


def test_a_misheard_last_word_leaves_the_latency_at_the_last_word_heard_right(manifest: list[Clip]) -> None:
    """Stable words are aligned to the reference's on normalised text: "old" matches no word of
    Kenobi's, so its latency is that of "are" (5.4 s), and the WER counts the substitution."""
    report = streaming.score_clip(LONG, events(" old."), offline_text="", speed=1.0)
    assert report.stable_latency == (pytest.approx(0.5), pytest.approx(5.4 - 5.0))
    assert report.streaming_wer == pytest.approx(1 / 7)


def test_an_utterance_with_no_stable_word_is_not_found(manifest: list[Clip]) -> None:
    only_hello = [e for e in events() if e.msg.get("type") != "stable" or e.msg["id"] == 0]
    report = streaming.score_clip(LONG, only_hello, offline_text="", speed=1.0)
    assert (report.utterances, report.utterances_found) == (2, 1)
    assert report.stable_latency == (pytest.approx(0.5),)
    assert len(report.first_partial_latency) == 2  # Kenobi's partial still came
    assert report.streaming_wer == pytest.approx(5 / 7)  # 5 of Kenobi's words deleted


def test_latency_counts_from_when_the_audio_was_sent_not_from_its_position(manifest: list[Clip]) -> None:
    """Replayed 1 s behind: every message and every frame 1 s later, the latencies unchanged."""
    late = [Event(e.t + 1.0, e.sent, e.msg) for e in events()]
    report = streaming.score_clip(LONG, late, offline_text="", speed=1.0)
    assert report.stable_latency == (pytest.approx(0.5), pytest.approx(1.0))


def test_send_time_interpolates_the_replays_log_and_extrapolates_at_the_replay_speed() -> None:
    log = [Event(1.2, 1.0, {}), Event(2.5, 2.0, {}), Event(2.5, 2.0, {})]
    sent_at = streaming.send_time(log, speed=1.0)
    assert sent_at(1.5) == pytest.approx(1.85)  # halfway between (1.0, 1.2) and (2.0, 2.5)
    assert sent_at(3.0) == pytest.approx(3.5)  # after the log: 1 s more at speed 1, from (2.0, 2.5)
    assert sent_at(0.5) == pytest.approx(0.7)  # before it: the first pair's lag
    assert streaming.send_time(log, speed=2.0)(4.0) == pytest.approx(2.5 + (4.0 - 2.0) / 2)
    assert streaming.send_time(log[:1], speed=2.0)(3.0) == pytest.approx(1.5)  # no log to go by: the speed alone


def test_stable_ids_out_of_order_or_repeated_are_revisions() -> None:
    def log(*ids: int) -> list[Event]:
        return [at(i, {"type": "partial", "text": ""}) for i in range(2)] + [at(2 + k, {"type": "stable", "id": i}) for k, i in enumerate(ids)]

    assert streaming.stable_revisions(log(0, 1, 2)) == 0
    assert streaming.stable_revisions(log(0, 1, 1, 2)) == 2  # the repeat, and every id after it
    assert streaming.stable_revisions(log(1, 2)) == 2  # a gap at the start
    assert streaming.stable_revisions(log()) == 0


def test_text_within_an_utterance_is_a_word_overlapping_it_by_more_than_50_ms() -> None:
    inside = partial(" go", words((" go", 2.0, 2.4)))
    assert streaming._has_text_within(inside, 2.3, 4.0)
    assert not streaming._has_text_within(inside, 2.36, 4.0)  # 40 ms of overlap: a word of the utterance before
    assert not streaming._has_text_within(inside, 2.4, 4.0)
    assert not streaming._has_text_within(inside, 0.0, 2.0)  # ends where the word begins
    assert not streaming._has_text_within({"type": "partial", "text": " ", "start": 2.0, "end": 3.0, "words": []}, 2.0, 3.0)
    assert not streaming._has_text_within({"type": "language", "text": "es", "start": 2.0, "end": 3.0}, 2.0, 3.0)
    assert streaming._has_text_within({"type": "stable", "text": " go", "start": 2.0, "end": 3.0}, 2.5, 2.8)  # no word times: the message's


def test_percentile_interpolates_and_no_figures_fail_every_bar() -> None:
    for percentile in (streaming.percentile, compat.percentile):
        assert percentile([3.0, 1.0, 2.0, 4.0], 50) == pytest.approx(2.5)
        assert percentile([float(x) for x in range(1, 11)], 90) == pytest.approx(9.1)
        assert math.isnan(percentile([], 50))
        assert not percentile([], 50) <= 1.0  # a bar judged on nothing is not met


def test_the_streaming_bars_per_commit_policy() -> None:
    assert streaming.BARS["local-agreement"] == streaming.Bars(0.8, 1.5, 0.6, max_wer=0.015, max_wer_over_offline=0.003)
    assert streaming.BARS["alignatt"].stable_latency_p90_s is None and streaming.BARS["alignatt"].stable_latency_median_s == 1.0


# ---- benchmarks.capacity ------------------------------------------------------------------------

REFERENCES = {"a": " ".join(["word"] * 200), "b": "go forward ten meters"}


def result(clip: str, latencies: tuple[float, ...], text: str | None = None, admitted: bool = True) -> capacity.StreamResult:
    values = list(latencies)
    return capacity.StreamResult(
        clip, admitted, False, 1000 if admitted else 4429, streaming.percentile(values, 50), streaming.percentile(values, 90),
        latencies, (0.4, 0.6), REFERENCES[clip] if text is None else text,
    )


def level(streams: int, results: list[capacity.StreamResult], counters: dict[str, float] | None = None) -> capacity.Level:
    return capacity.summarize(streams, results, counters or {}, 800.0, 60.0, REFERENCES, REFERENCES)


def test_a_level_within_every_bar_is_sustained_and_its_figures_pool_the_streams() -> None:
    counters = {
        "streamer_worker_busy_seconds_total": 30.0, "streamer_audio_seconds_total": 120.0, "streamer_decoded_windows_total": 50.0,
        "streamer_decoder_passes_total": 400.0, 'streamer_worker_stage_seconds_total{stage="encoder"}': 12.0,
    }  # fmt: skip
    figures = level(2, [result("a", (0.5, 0.7, 0.9)), result("b", (0.6, 1.0))], counters)
    assert figures.failures == ()
    assert figures.wer == figures.baseline_wer == 0.0
    assert figures.stable_p50 == pytest.approx(0.7) and figures.stable_p90 == pytest.approx(0.96)  # over all 5 latencies
    assert figures.first_partial_p50 == pytest.approx(0.5)
    assert figures.busy_fraction == pytest.approx(30 / 60) and figures.worker_seconds_per_audio_second == pytest.approx(30 / 120)
    assert figures.decoder_passes_per_window == pytest.approx(8.0)
    assert figures.stage_seconds_per_audio_second == {"encoder": pytest.approx(0.1)}


def test_a_stream_over_the_p50_or_p90_bar_or_without_a_stable_fails_the_level() -> None:
    assert level(1, [result("b", (1.2, 1.2))]).failures == ("stream 0 (b) stable p50 1.20 s",)
    assert level(1, [result("b", (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 3.0, 3.0))]).failures == ("stream 0 (b) stable p90 3.00 s",)
    assert len(level(1, [result("b", ())]).failures) == 2  # no latency at all: neither bar is met


def test_the_p50_bar_is_inclusive() -> None:
    assert level(1, [result("b", (1.0, 1.0))]).failures == ()
    assert level(1, [result("b", (2.0, 2.0))]).failures == ("stream 0 (b) stable p50 2.00 s",)  # p90 2.0 is within its bar


def test_a_refused_stream_fails_the_level_and_is_left_out_of_its_figures() -> None:
    figures = level(2, [result("a", (0.5,)), result("b", (9.0,), text="", admitted=False)])
    assert figures.failures == ("stream 1 (b) refused",)
    assert figures.wer == 0.0 and figures.stable_p90 == pytest.approx(0.5)


def test_wer_may_rise_half_a_point_over_the_streams_alone() -> None:
    one_error = " ".join(["word"] * 199 + ["bird"])  # 1 of 200 words: +0.5 points
    assert level(1, [result("a", (0.5,), one_error)]).failures == ()
    two_errors = " ".join(["word"] * 198 + ["bird"] * 2)
    assert level(1, [result("a", (0.5,), two_errors)]).failures == ("WER 1.00% against 0.00% alone",)


def test_sustained_streams_is_the_largest_n_before_the_first_level_that_fails() -> None:
    ok, failed = level(1, [result("a", (0.5,))]), ("stream 0 (a) refused",)
    levels = [replace(ok, streams=n) for n in (1, 2, 3, 4, 5)]
    assert capacity.sustained_streams(levels) == 5
    assert capacity.sustained_streams(list(reversed(levels))) == 5  # in order of N, whatever the list's
    levels[3] = replace(levels[3], failures=failed)  # N = 4 fails: 5 does not count though it passed
    assert capacity.sustained_streams(levels) == 3
    assert capacity.sustained_streams([replace(ok, failures=failed)]) == 0


# ---- benchmarks.compat --------------------------------------------------------------------------


def score(interface: str, clip: str, wer: float, latencies: tuple[float, ...], text: str = "", reference: str = "") -> compat.StreamScore:
    return compat.StreamScore(interface, clip, wer, compat.percentile(list(latencies), 50), latencies, text, reference)


def test_pooled_scores_are_corpus_wer_and_the_median_of_every_utterances_latency() -> None:
    scores = [
        score("v1", "x", 0.5, (0.1, 0.2), "hello word", "hello world"),
        score("deepgram", "x", 0.0, (5.0,), "hello world", "hello world"),
        score("v1", "y", 0.0, (0.3, 0.4, 0.5), "one more sentence of eight words right here", "one more sentence of eight words right here"),
    ]
    v1, deepgram = compat.pooled(scores)
    assert (v1.interface, deepgram.interface) == ("v1", "deepgram")  # in order of appearance
    assert v1.wer == pytest.approx(0.1)  # 1 edit in 10 words, not the mean of 50 % and 0 %
    assert v1.latencies == (0.1, 0.2, 0.3, 0.4, 0.5) and v1.latency_median_s == pytest.approx(0.3)
    assert deepgram.wer == 0.0 and deepgram.latency_median_s == 5.0


def test_compat_bars_allow_half_a_point_and_a_fifth_of_a_second_over_v1() -> None:
    def passed(totals: list[compat.StreamScore], **others: Any) -> list[bool]:
        return [b.passed for b in compat.judge(totals, others.get("rest", []), others.get("interference", []), others.get("wyoming"))]

    v1 = score("v1", "all", 0.0, (0.25,))
    assert passed([v1, score("deepgram", "all", 0.005, (0.45,))]) == [True, True]  # +0.5 points, +0.2 s: at the bars
    assert passed([v1, score("deepgram", "all", 0.006, (0.46,))]) == [False, False]
    rest = [compat.RestScore("c", "json", 0.002, 6.0, 0.0, 5.0), compat.RestScore("c", "srt", 0.003, 6.1, 0.0, 5.0)]
    assert passed([v1], rest=rest) == [True, True, False, False]  # +0.2 points and 1.2x: in; +0.3 points and 1.22x: out
    interference = [compat.Interference("c", 0.5, 0.75, "u"), compat.Interference("c", 0.5, 0.85, "u")]  # +0.25 s, +0.35 s (bar 0.3)
    assert passed([v1], interference=interference) == [True, False]
    assert passed([v1], wyoming=compat.WyomingScore(3, 0.99, 0.005, 0.0)) == [True, True]
    assert passed([v1], wyoming=compat.WyomingScore(3, 1.0, 0.006, 0.0)) == [False, False]  # describe under 1 s, strictly


# ---- benchmarks.failover ------------------------------------------------------------------------


def segment(i: int, text: str) -> Any:
    return failover.Stable(i, float(i), i + 0.9, text, (), "en")


def run_of(*segments: tuple[int, str], end_last_id: int | None = None) -> failover.StreamRun:
    return failover.StreamRun(LONG, "s", [(float(k), 0, segment(i, text)) for k, (i, text) in enumerate(segments)], end_last_id=end_last_id)


def test_a_stream_that_received_what_the_store_holds_lost_nothing() -> None:
    stored = [" Hello there.", " General Kenobi,", " you are bold."]
    check = failover.check_stream(run_of(*enumerate(stored), end_last_id=2), stored, LONG.text)
    assert check == failover.StreamCheck(contiguous=True, lost=0, duplicated=0, wer=0.0)


def test_missing_repeated_or_different_segments_are_lost_or_duplicated() -> None:
    stored = [" Hello there.", " General Kenobi,", " you are bold."]
    missing = failover.check_stream(run_of((0, stored[0]), (1, stored[1])), stored, LONG.text)
    assert (missing.contiguous, missing.lost, missing.duplicated) == (True, 1, 0)
    assert missing.wer == pytest.approx(100 * 3 / 7)  # in percent
    repeated = failover.check_stream(run_of((0, stored[0]), (1, stored[1]), (1, stored[1]), (2, stored[2])), stored, LONG.text)
    assert (repeated.contiguous, repeated.duplicated) == (False, 2)  # one too many, and an id twice
    different = failover.check_stream(run_of((0, stored[0]), (1, " General Kenobi!"), (2, stored[2])), stored, LONG.text)
    assert (different.lost, different.duplicated) == (1, 0)


def test_an_end_that_disagrees_with_the_last_id_or_an_error_breaks_the_stream() -> None:
    stored = [" Hello there."]
    assert not failover.check_stream(run_of((0, stored[0]), end_last_id=1), stored, HELLO.text).contiguous
    errored = run_of((0, stored[0]))
    errored.error = "ConnectionClosed: 1011"
    assert not failover.check_stream(errored, stored, HELLO.text).contiguous


# ---- benchmarks.languages -----------------------------------------------------------------------


def clip_result(language: str, announced: tuple[str, ...], streaming_error: float, offline_error: float) -> languages.ClipResult:
    return languages.ClipResult(f"clip_{language}", language, announced, 1.0, 1.2, streaming_error, offline_error, language, "", "")


def test_languages_pass_when_announced_and_final_languages_are_the_references() -> None:
    report = languages.summarize("base", [clip_result("es", ("es",), 0.10, 0.06), clip_result("de", ("de",), 0.18, 0.14)], [], [])
    assert report.passed == {"announced_reference_language": True, "final_language_right": True, "error_within_margin": True}
    assert report.streaming_error == pytest.approx(0.14) and report.offline_error == pytest.approx(0.10)  # means over the clips


def test_languages_fail_on_a_wrong_first_or_final_language_or_errors_past_the_margin() -> None:
    switched = languages.summarize("base", [clip_result("es", ("pt", "es"), 0.1, 0.1)], [], []).passed
    assert not switched["announced_reference_language"] and switched["final_language_right"]
    wrong = languages.summarize("base", [clip_result("es", ("es", "pt"), 0.1, 0.1)], [], []).passed
    assert wrong["announced_reference_language"] and not wrong["final_language_right"]
    assert not languages.summarize("base", [clip_result("es", (), 0.1, 0.1)], [], []).passed["final_language_right"]
    assert not languages.summarize("base", [clip_result("es", ("es",), 0.16, 0.10)], [], []).passed["error_within_margin"]  # 6 > 5 points


def test_a_sequence_part_and_a_restricted_clip_must_keep_to_their_languages() -> None:
    good = languages.PartResult("es", ("es", "es"), 0.1, " hola")
    mixed = languages.PartResult("de", ("de", "en"), 0.1, " hallo")
    base = [clip_result("es", ("es",), 0.1, 0.1)]
    assert languages.summarize("base", base, [good], []).passed["sequence_parts_in_own_language"]
    assert not languages.summarize("base", base, [good, mixed], []).passed["sequence_parts_in_own_language"]
    assert not languages.summarize("base", base, [languages.PartResult("es", (), 1.0, "")], []).passed["sequence_parts_in_own_language"]
    within = languages.RestrictedResult("c", ("pt", "it"), ("pt", "pt"))
    outside = languages.RestrictedResult("c", ("pt", "it"), ("pt", "es"))
    assert languages.summarize("base", base, [], [within]).passed["languages_set_respected"]
    assert not languages.summarize("base", base, [], [outside]).passed["languages_set_respected"]
    assert not languages.summarize("base", base, [], [languages.RestrictedResult("c", ("pt",), ())]).passed["languages_set_respected"]
    assert "sequence_parts_in_own_language" not in languages.summarize("base", base, [], []).passed  # no es/de/fr clip: no check


def test_each_sequence_part_gets_the_stables_that_start_in_its_span() -> None:
    es = Clip("es", Path("es.wav"), 3.0, "es", "Hola amigo.", "multilingual")
    de = Clip("de", Path("de.wav"), 3.0, "de", "Hallo Freund.", "multilingual")
    log = [
        languages.Event(1.0, 1.0, {"type": "stable", "start": 0.2, "text": " Hola", "language": "es"}),
        languages.Event(3.0, 3.0, {"type": "stable", "start": 1.0, "text": " amigo.", "language": "es"}),
        languages.Event(6.0, 6.0, {"type": "stable", "start": 5.0, "text": " Hallo Freund.", "language": "de"}),
    ]
    es_part, de_part = languages.score_sequence([es, de], [(0.0, 3.0), (5.0, 8.0)], log)
    assert (es_part.text, es_part.stable_languages, es_part.error) == (" Hola amigo.", ("es", "es"), 0.0)
    assert (de_part.text, de_part.stable_languages, de_part.error) == (" Hallo Freund.", ("de",), 0.0)


# ---- benchmarks.offline -------------------------------------------------------------------------


def test_long_form_segments_must_go_forward_within_the_clip() -> None:
    def problems(*segments: tuple[float, float]) -> list[str]:
        run = offline.Run("ours", 1.0, 100.0, {"two": {"text": "", "segments": [{"start": s, "end": e} for s, e in segments]}})
        return offline.long_form_problems(run, [LONG])

    assert problems((0.0, 1.5), (1.5, 4.0), (4.2, 6.0)) == []
    assert problems((0.0, 1.5), (1.4, 4.0)) == ["long_two: segments overlap or go back at 1.40s"]
    assert problems((0.0, 6.1)) == ["long_two: segment 0.00-6.10s outside 0-6.00s"]
    assert problems((0.0, 6.02)) == []  # 20 ms of rounding past the end is allowed
