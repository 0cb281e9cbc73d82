"""Streaming benchmark: the real daemon, long-form speech replayed at real-time pace.

    python -m benchmarks.streaming [--model tiny.en] [--commit-policy local-agreement] [--json FILE] [-- DAEMON FLAGS...]

Starts `python -m streamer` (port 0), replays every `long` clip with `python -m clients.replay`
(its `--events` file: one JSON line per server message, `{"t", "sent", "msg"}`), then `--joined`
more long clips built the same way from the English `short` clips (`benchmarks.data.joined_clip`:
each in another seeded order, with other pauses), then the `nonspeech` clips, and reports
against the bars:

- streaming WER of the stable text, beside offline WER (`model.transcribe`, greedy) on the same
  audio: at most 1.5 %, and at most 0.3 points above the offline WER;
- stable latency per utterance: when the stable message holding the utterance's last word
  arrived, minus when the end of the utterance was sent (local-agreement: median <= 0.8 s and
  p90 <= 1.5 s; alignatt: median <= 1.0 s); stable words are aligned to reference words on
  normalised text (difflib);
- first-partial latency: the first message with text from the utterance, minus when its start
  was sent (local-agreement: median <= 0.6 s);
- sentences (`benchmarks.sentences`): WER over words with their case and sentence-final
  punctuation, on the clips whose references are punctuated (the LJ Speech one), at most 1 point
  above the offline transcript's; and of the stable text's sentence breaks, at most one in ten
  where the offline transcript of the same audio has none (a *false* break);
- stable text revised (ids out of order or repeated): 0; text during nonspeech clips: none.

The bars are issue 14's (issue 33's for sentences), per commit policy (`--commit-policy`, passed on to the daemon); the exit
status is 1 when one fails.
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.daemon import Daemon
from benchmarks.data import Clip, clips_of, joined_clip, load_manifest, long_clip_reference
from benchmarks.sentences import Breaks, cased_error_rate, compare_breaks, is_punctuated
from benchmarks.wer import normalize, word_error_rate


@dataclass(frozen=True)
class Bars:
    """What one commit policy must show (None: no bar on that figure for it)."""

    stable_latency_median_s: float
    stable_latency_p90_s: float | None = None
    first_partial_latency_median_s: float | None = None
    max_wer: float = 0.015
    max_wer_over_offline: float = 0.003
    max_cased_wer_over_offline: float = 0.01
    max_false_break_share: float = 0.1


BARS = {"local-agreement": Bars(0.8, 1.5, 0.6), "alignatt": Bars(1.0)}


@dataclass(frozen=True)
class Event:
    t: float  # seconds since the first audio frame was sent
    sent: float  # seconds of audio sent by then
    msg: dict


@dataclass(frozen=True)
class ClipReport:
    clip: str
    audio_seconds: float
    streaming_wer: float
    offline_wer: float
    utterances: int
    utterances_found: int
    stable_latency: tuple[float, ...]
    first_partial_latency: tuple[float, ...]
    stable_revisions: int
    stable_text: str
    offline_text: str
    punctuated_reference: str | None  # None: the references do not all write sentences
    sentence_breaks: Breaks  # the stable text's, against the offline transcript's


@dataclass(frozen=True)
class Report:
    model: str
    commit_policy: str
    daemon_args: tuple[str, ...]
    clips: tuple[ClipReport, ...]
    streaming_wer: float
    offline_wer: float
    cased_wer: float | None  # pooled over the clips with punctuated references (None: there are none)
    offline_cased_wer: float | None
    sentence_breaks: Breaks
    stable_latency_median: float
    stable_latency_p90: float
    first_partial_latency_median: float
    stable_revisions: int
    nonspeech_text: tuple[str, ...]  # "clip: text" for every non-empty message during nonspeech clips
    passed: dict[str, bool]


def replay(url: str, clip: Clip, speed: float, workdir: Path) -> list[Event]:
    events_file = workdir / f"{clip.id}.jsonl"
    command = [sys.executable, "-m", "clients.replay", str(clip.path), "--url", url, "--speed", str(speed), "--events", str(events_file)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"replay of {clip.id} failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return [Event(float(e["t"]), float(e["sent"]), e["msg"]) for e in map(json.loads, events_file.read_text().splitlines())]


def send_time(events: list[Event], speed: float):
    """Audio position (s) → when it had been sent (s since the first frame), from the replay's log."""
    pairs = sorted({(e.sent, e.t) for e in events})
    if len(pairs) < 2:
        return lambda x: x / speed
    sent = np.array([p[0] for p in pairs])
    t = np.array([p[1] for p in pairs])

    def at(position: float) -> float:
        if position <= sent[0] or position >= sent[-1]:
            return position / speed + (t[0] - sent[0] / speed if position <= sent[0] else t[-1] - sent[-1] / speed)
        return float(np.interp(position, sent, t))

    return at


def stable_revisions(events: list[Event]) -> int:
    """Stable messages whose id is not the next one: a repeat or a gap would mean revised text."""
    ids = [e.msg["id"] for e in events if e.msg.get("type") == "stable"]
    return sum(1 for i, j in enumerate(ids) if j != i)


def score_clip(clip: Clip, events: list[Event], offline_text: str, speed: float) -> ClipReport:
    manifest = {c.id: c for c in load_manifest()}
    texts = {i: c.text for i, c in manifest.items()}
    punctuated = all(is_punctuated(manifest[u.id].text_punct or manifest[u.id].text) for u in clip.segments)
    reference = long_clip_reference(clip)
    stables = [e for e in events if e.msg.get("type") == "stable"]
    stable_text = "".join(e.msg["text"] for e in stables)
    sent_at = send_time(events, speed)

    # Reference words, each tagged with its utterance; stable words, each with its arrival time.
    ref_words: list[str] = []
    ref_utterance: list[int] = []
    for index, utterance in enumerate(clip.segments):
        words = normalize(texts[utterance.id]).split()
        ref_words += words
        ref_utterance += [index] * len(words)
    hyp_words: list[str] = []
    hyp_arrival: list[float] = []
    for e in stables:
        words = normalize(e.msg["text"]).split()
        hyp_words += words
        hyp_arrival += [e.t] * len(words)
    matcher = difflib.SequenceMatcher(a=ref_words, b=hyp_words, autojunk=False)
    arrival_of_ref: dict[int, float] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            arrival_of_ref[block.a + k] = hyp_arrival[block.b + k]

    stable_latency: list[float] = []
    first_partial_latency: list[float] = []
    for index, utterance in enumerate(clip.segments):
        matched = [i for i, u in enumerate(ref_utterance) if u == index and i in arrival_of_ref]
        if matched:
            stable_latency.append(arrival_of_ref[max(matched)] - sent_at(utterance.end_s))
        first = next((e for e in events if _has_text_within(e.msg, utterance.start_s, utterance.end_s)), None)
        if first is not None:
            first_partial_latency.append(first.t - sent_at(utterance.start_s))
    return ClipReport(
        clip=clip.id,
        audio_seconds=clip.duration_s,
        streaming_wer=word_error_rate([reference], [stable_text]),
        offline_wer=word_error_rate([reference], [offline_text]),
        utterances=len(clip.segments),
        utterances_found=len(stable_latency),
        stable_latency=tuple(round(x, 3) for x in stable_latency),
        first_partial_latency=tuple(round(x, 3) for x in first_partial_latency),
        stable_revisions=stable_revisions(events),
        stable_text=stable_text.strip(),
        offline_text=offline_text.strip(),
        punctuated_reference=long_clip_reference(clip, punctuated=True) if punctuated else None,
        sentence_breaks=compare_breaks(stable_text, offline_text),
    )


def _has_text_within(msg: dict, start: float, end: float) -> bool:
    """A partial or stable message with a word of [start, end] (word times when present)."""
    if msg.get("type") not in ("partial", "stable") or not msg.get("text", "").strip():
        return False
    spans = [(w["start"], w["end"]) for w in msg.get("words", [])] or [(msg["start"], msg["end"])]
    return any(s < end and e > start + 0.05 for s, e in spans)


def offline_transcripts(model_name: str, clips: list[Clip]) -> dict[str, str]:
    import torch

    from model.audio import load_audio
    from model.transcribe import transcribe
    from model.weights import load_model

    torch.set_num_threads(2)
    model = load_model(model_name)
    return {clip.id: transcribe(model, load_audio(clip.path)).text for clip in clips}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(
    model: str,
    speed: float,
    daemon_args: list[str],
    keep: Path | None = None,
    only: list[str] | None = None,
    joined: int = 1,
    commit_policy: str = "local-agreement",
) -> Report:
    daemon = Daemon("--config", "config.toml", "--stream.commit-policy", commit_policy, *daemon_args, model=model)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
            workdir = keep if keep is not None else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            shorts = clips_of("short", "en")
            built = [joined_clip(f"joined_en_seed{seed}", shorts, seed, workdir) for seed in range(joined)]
            long_clips = [c for c in clips_of("long") + built if not only or c.id in only]
            nonspeech = [c for c in clips_of("nonspeech") if not only or c.id in only]
            replays = {}
            for clip in long_clips:
                began = time.perf_counter()
                replays[clip.id] = replay(daemon.url, clip, speed, workdir)
                print(f"replayed {clip.id} ({clip.duration_s:.0f} s) in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            noise_text = []
            for clip in nonspeech:
                for e in replay(daemon.url, clip, speed, workdir):
                    if e.msg.get("type") in ("partial", "stable") and e.msg.get("text", "").strip():
                        noise_text.append(f"{clip.id}: {e.msg['text'].strip()}")
            offline = offline_transcripts(model, long_clips)  # while the built clips' files exist
    finally:
        daemon.stop()
    reports = tuple(score_clip(c, replays[c.id], offline[c.id], speed) for c in long_clips)
    references = [long_clip_reference(c) for c in long_clips]
    streaming_wer = word_error_rate(references, [r.stable_text for r in reports])
    offline_wer = word_error_rate(references, [offline[c.id] for c in long_clips])
    stable = [x for r in reports for x in r.stable_latency]
    first = [x for r in reports for x in r.first_partial_latency]
    revisions = sum(r.stable_revisions for r in reports)
    punctuated = [r for r in reports if r.punctuated_reference is not None]
    cased = cased_error_rate([r.punctuated_reference or "" for r in punctuated], [r.stable_text for r in punctuated]) if punctuated else None
    offline_cased = cased_error_rate([r.punctuated_reference or "" for r in punctuated], [r.offline_text for r in punctuated]) if punctuated else None
    breaks = sum((r.sentence_breaks for r in reports), Breaks(0, 0, 0))
    bars = BARS[commit_policy]
    passed = {
        "wer": streaming_wer <= bars.max_wer,
        "wer_over_offline": streaming_wer <= offline_wer + bars.max_wer_over_offline,
        "stable_latency_median": percentile(stable, 50) <= bars.stable_latency_median_s,
        "no_stable_revised": revisions == 0,
        "no_text_in_nonspeech": not noise_text,
        "every_utterance_found": all(r.utterances_found == r.utterances for r in reports),
        "false_sentence_breaks": breaks.false_share <= bars.max_false_break_share,
    }
    if cased is not None and offline_cased is not None:
        passed["cased_wer_over_offline"] = cased <= offline_cased + bars.max_cased_wer_over_offline
    if bars.stable_latency_p90_s is not None:
        passed["stable_latency_p90"] = percentile(stable, 90) <= bars.stable_latency_p90_s
    if bars.first_partial_latency_median_s is not None:
        passed["first_partial_latency_median"] = percentile(first, 50) <= bars.first_partial_latency_median_s
    return Report(
        model=model,
        commit_policy=commit_policy,
        daemon_args=tuple(daemon_args),
        clips=reports,
        streaming_wer=streaming_wer,
        offline_wer=offline_wer,
        cased_wer=cased,
        offline_cased_wer=offline_cased,
        sentence_breaks=breaks,
        stable_latency_median=percentile(stable, 50),
        stable_latency_p90=percentile(stable, 90),
        first_partial_latency_median=percentile(first, 50),
        stable_revisions=revisions,
        nonspeech_text=tuple(noise_text),
        passed=passed,
    )


def print_report(report: Report) -> None:
    print(f"streaming benchmark: {report.model}, {report.commit_policy}, daemon {' '.join(report.daemon_args)}")
    print()
    print(f"{'clip':<26} {'audio s':>8} {'stream WER':>11} {'offline WER':>12} {'stable p50':>11} {'stable p90':>11} {'1st partial p50':>16} {'found':>7}")
    for r in report.clips:
        print(
            f"{r.clip:<26} {r.audio_seconds:>8.1f} {r.streaming_wer:>10.2%} {r.offline_wer:>12.2%} "
            f"{percentile(list(r.stable_latency), 50):>10.2f}s {percentile(list(r.stable_latency), 90):>10.2f}s "
            f"{percentile(list(r.first_partial_latency), 50):>15.2f}s {r.utterances_found:>3}/{r.utterances:<3}"
        )
    print()
    p, bars = report.passed, BARS[report.commit_policy]

    def line(name: str, value: str, bar: str, key: str | None) -> None:
        verdict = "" if key is None else "(no bar)" if key not in p else "ok" if p[key] else "FAIL"
        print(f"{name:<34} {value:>10} {bar:>16}  {verdict}")

    def bar_s(limit: float | None) -> str:
        return "" if limit is None else f"<= {limit} s"

    print(f"{'metric':<34} {'value':>10} {'bar':>16}  result")
    line("streaming WER (all long clips)", f"{report.streaming_wer:.2%}", f"<= {bars.max_wer:.1%}", "wer")
    line("offline WER (model.transcribe)", f"{report.offline_wer:.2%}", "", None)
    line("streaming over offline", f"{100 * (report.streaming_wer - report.offline_wer):+.2f} pt", f"<= +{100 * bars.max_wer_over_offline:.1f} pt", "wer_over_offline")
    if report.cased_wer is not None and report.offline_cased_wer is not None:
        line("cased WER (punctuated clips)", f"{report.cased_wer:.2%}", "", None)
        line("offline cased WER", f"{report.offline_cased_wer:.2%}", "", None)
        over = 100 * (report.cased_wer - report.offline_cased_wer)
        line("cased streaming over offline", f"{over:+.2f} pt", f"<= +{100 * bars.max_cased_wer_over_offline:.0f} pt", "cased_wer_over_offline")
    b = report.sentence_breaks
    line("false sentence breaks", f"{b.false}/{b.breaks}", f"<= {bars.max_false_break_share:.0%}", "false_sentence_breaks")
    line("sentence breaks offline has, missed", str(b.missed), "", None)
    line("stable latency median", f"{report.stable_latency_median:.2f}s", bar_s(bars.stable_latency_median_s), "stable_latency_median")
    line("stable latency p90", f"{report.stable_latency_p90:.2f}s", bar_s(bars.stable_latency_p90_s), "stable_latency_p90")
    line("first-partial latency median", f"{report.first_partial_latency_median:.2f}s", bar_s(bars.first_partial_latency_median_s), "first_partial_latency_median")
    line("stable text revised", str(report.stable_revisions), "0", "no_stable_revised")
    line("text during nonspeech clips", str(len(report.nonspeech_text)), "none", "no_text_in_nonspeech")
    for text in report.nonspeech_text:
        print(f"    {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time, as the bars assume)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--clip", action="append", default=None, help="replay only this clip id (repeatable; default: every long and nonspeech clip)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the replays' event files (and built clips) in this folder")
    parser.add_argument("--joined", type=int, default=1, help="long clips to build from the short ones (0: the shared long clips only)")
    parser.add_argument("--commit-policy", choices=sorted(BARS), default="local-agreement", help="the daemon's stream.commit_policy, and whose bars apply")
    parser.add_argument("daemon_args", nargs="*", help="extra daemon flags, after --")
    args = parser.parse_args(argv)
    report = run(args.model, args.speed, args.daemon_args, args.keep, args.clip, args.joined, args.commit_policy)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0 if all(report.passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
