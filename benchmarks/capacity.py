"""Capacity benchmark: how many real-time streams one daemon serves well.

    python -m benchmarks.capacity [--streams 2,3,4,5,6,7,8] [--seconds 60] [--model tiny.en]
                                  [--png FILE] [--json FILE] [-- DAEMON FLAGS...]

Starts `python -m streamer --config config.toml` on a free loopback port. First every clip alone
(the single-stream baseline: its WER and worker cost), then for each N of the sweep N concurrent
streams from one asyncio load generator through real websockets: stream i plays clip i mod K
(the shared long clips, then one long clip built from the short ones, cut at the last utterance
that ends within `--seconds`) at real-time pace in 0.1 s frames (`clients.pacing`), starting `--stagger` s after
stream i-1 so that utterances do not end together. Per N:

- stable latency per utterance (its last word's stable message, minus when its end was sent; as
  `benchmarks.streaming` scores it), p50 / p90, per stream and pooled; first-partial p50;
- streaming WER of all streams against the baseline's WER of the same clips;
- the worker's busy fraction and worker seconds per audio second, from `/metrics` (and the split
  by stage: mel, encoder, language, decoder, alignment; decoder passes per window);
- the daemon's resident memory (peak VmRSS during the run), and refused or degraded streams.

"Sustained streams" is the largest N up to which every N of the sweep kept every stream's stable
p50 <= 1.0 s and p90 <= 2.0 s, pooled WER within 0.5 points of the baseline, and no stream
refused. Beside it, the first partial at N = 4 (p50 of every stream's) is judged against
`--first-partial-bar` (1.5 s): live captions show words while someone speaks. `--png` draws the
stable latency against N (matplotlib, from the `bench` extra). Exit status 0 when the sustained
count reaches `--bar` (default 6) and the first partial at N = 4 meets its bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import msgpack
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.daemon import Daemon
from benchmarks.data import Clip, clips_of, joined_clip, long_clip_reference
from benchmarks.load import rss_kib
from benchmarks.streaming import Event, percentile, score_clip
from benchmarks.wer import word_error_rate
from clients.audio_file import AudioClip
from clients.pacing import PacingOptions, paced_frames
from model.audio import SAMPLE_RATE, load_audio

FRAME_MS = 100
LOAD_WINDOW = 11.0  # s: the daemon's admission looks at the last 10 s of worker load
SUSTAINED = {"stable_p50_s": 1.0, "stable_p90_s": 2.0, "wer_margin_points": 0.5}
METRICS = ("streamer_worker_busy_seconds_total", "streamer_audio_seconds_total", "streamer_decoder_passes_total", "streamer_decoded_windows_total")


@dataclass(frozen=True)
class StreamResult:
    clip: str
    admitted: bool
    degraded: bool
    close_code: int | None
    stable_p50: float
    stable_p90: float
    stable_latency: tuple[float, ...]
    first_partial_latency: tuple[float, ...]
    text: str


@dataclass(frozen=True)
class Level:
    """The figures of one N of the sweep."""

    streams: int
    results: tuple[StreamResult, ...]
    wer: float
    baseline_wer: float
    stable_p50: float
    stable_p90: float
    first_partial_p50: float
    busy_fraction: float
    worker_seconds_per_audio_second: float
    decoder_passes_per_window: float
    stage_seconds_per_audio_second: dict[str, float]
    rss_peak_mib: float
    wall_seconds: float
    sustained: bool = False
    failures: tuple[str, ...] = field(default=())


def cut_clip(clip: Clip, seconds: float) -> tuple[Clip, np.ndarray]:
    """The clip up to the end of its last utterance that ends within `seconds` (plus 1 s of its pause)."""
    audio = load_audio(clip.path)
    kept = tuple(u for u in clip.segments if u.end_s <= seconds) or clip.segments[:1]
    end = min(len(audio), int((kept[-1].end_s + 1.0) * SAMPLE_RATE))
    return replace(clip, segments=kept, duration_s=end / SAMPLE_RATE), audio[:end]


def read_metrics(http_url: str) -> dict[str, float]:
    """The daemon's counters that the benchmark reads (Prometheus text format)."""
    body = urllib.request.urlopen(f"{http_url}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name in METRICS or name.startswith("streamer_worker_stage_seconds_total{"):
            values[name] = float(value)
    return values


@dataclass
class _StreamLog:
    """What one stream's reader and sender have seen so far (both in the load generator's loop)."""

    events: list[Event] = field(default_factory=list)
    began: float = 0.0  # monotonic time of the first frame
    sent: float = 0.0  # seconds of audio sent
    admitted: bool = False
    degraded: bool = False  # the daemon warned (non-fatal 4429) that its latency is degraded

    def message(self, message: dict) -> None:
        self.events.append(Event(time.monotonic() - self.began, self.sent, message))
        self.admitted = self.admitted or message["type"] == "ready"
        if message["type"] == "error" and not message.get("fatal", True) and message["code"] == 4429:
            self.degraded = True


async def stream_clip(url: str, audio: np.ndarray, delay: float) -> tuple[list[Event], bool, bool, int | None]:
    """One real-time stream: its events (as `clients.replay --events` logs them), whether it was
    admitted, whether it was warned as degraded, and its close code."""
    await asyncio.sleep(delay)
    pcm = AudioClip((np.clip(audio, -1, 1) * 32767).astype(np.int16)[:, None], SAMPLE_RATE)
    stream = _StreamLog()
    async with connect(url, max_size=None, open_timeout=120) as ws:
        await ws.send(msgpack.packb({"type": "start"}))

        async def read() -> None:
            try:
                async for frame in ws:
                    stream.message(msgpack.unpackb(frame))
            except ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        stream.began = time.monotonic()
        try:
            async for frame in paced_frames(pcm, PacingOptions(frame_ms=FRAME_MS), stream.began):
                await ws.send(msgpack.packb({"type": "audio", "data": frame}))
                stream.sent += len(frame) / 2 / SAMPLE_RATE
            await ws.send(msgpack.packb({"type": "stop"}))
        except ConnectionClosed:
            pass  # refused or closed: the reader has seen why
        await asyncio.wait_for(reader, timeout=300)
        return stream.events, stream.admitted, stream.degraded, ws.close_code


def score_stream(clip: Clip, events: list[Event], admitted: bool, degraded: bool, close_code: int | None) -> StreamResult:
    report = score_clip(clip, events, offline_text="", speed=1.0)
    latency = list(report.stable_latency)
    return StreamResult(
        clip.id, admitted, degraded, close_code, percentile(latency, 50), percentile(latency, 90),
        report.stable_latency, report.first_partial_latency, report.stable_text,
    )


async def run_streams(url: str, clips: list[tuple[Clip, np.ndarray]], streams: int, stagger: float) -> list[StreamResult]:
    plays = [clips[i % len(clips)] for i in range(streams)]
    outcomes = await asyncio.gather(*(stream_clip(url, audio, i * stagger) for i, (_, audio) in enumerate(plays)))
    return [score_stream(clip, *outcome) for (clip, _), outcome in zip(plays, outcomes)]


async def sample_rss(pid: int, peak: list[float], done: asyncio.Event) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], rss_kib(pid) / 1024)
        await asyncio.sleep(0.5)


def measure(daemon: Daemon, clips: list[tuple[Clip, np.ndarray]], streams: int, stagger: float) -> tuple[list[StreamResult], dict[str, float], float, float]:
    """Runs one level: the streams' results, the daemon's counter deltas, peak RSS and wall seconds."""
    before = read_metrics(daemon.http_url)

    async def level() -> tuple[list[StreamResult], float]:
        peak, done = [0.0], asyncio.Event()
        sampler = asyncio.create_task(sample_rss(daemon.process.pid, peak, done))
        results = await run_streams(daemon.url, clips, streams, stagger)
        done.set()
        await sampler
        return results, peak[0]

    began = time.monotonic()
    results, peak = asyncio.run(level())
    wall = time.monotonic() - began
    after = read_metrics(daemon.http_url)
    return results, {k: after[k] - before.get(k, 0.0) for k in after}, peak, wall


def summarize(
    streams: int, results: list[StreamResult], counters: dict[str, float], rss: float, wall: float, references: dict[str, str], baseline: dict[str, str]
) -> Level:
    """One level's figures; `baseline` holds each clip's stable text when streamed alone."""
    admitted = [r for r in results if r.admitted]
    wer = word_error_rate([references[r.clip] for r in admitted], [r.text for r in admitted]) if admitted else float("nan")
    base = word_error_rate([references[r.clip] for r in admitted], [baseline[r.clip] for r in admitted]) if admitted else float("nan")
    stable = [x for r in admitted for x in r.stable_latency]
    first = [x for r in admitted for x in r.first_partial_latency]
    busy = counters.get("streamer_worker_busy_seconds_total", 0.0)
    audio = max(counters.get("streamer_audio_seconds_total", 0.0), 1e-9)
    windows = max(counters.get("streamer_decoded_windows_total", 0.0), 1.0)
    stages = {
        key.split('"')[1]: round(value / audio, 4) for key, value in counters.items() if key.startswith("streamer_worker_stage_seconds_total{")
    }
    failures = [f"stream {i} ({r.clip}) refused" for i, r in enumerate(results) if not r.admitted]
    failures += [f"stream {i} ({r.clip}) stable p50 {r.stable_p50:.2f} s" for i, r in enumerate(admitted) if not r.stable_p50 <= SUSTAINED["stable_p50_s"]]
    failures += [f"stream {i} ({r.clip}) stable p90 {r.stable_p90:.2f} s" for i, r in enumerate(admitted) if not r.stable_p90 <= SUSTAINED["stable_p90_s"]]
    if not wer <= base + SUSTAINED["wer_margin_points"] / 100:
        failures.append(f"WER {wer:.2%} against {base:.2%} alone")
    return Level(
        streams, tuple(results), wer, base, percentile(stable, 50), percentile(stable, 90), percentile(first, 50),
        busy / wall, busy / audio, counters.get("streamer_decoder_passes_total", 0.0) / windows, stages, rss, wall,
        failures=tuple(failures),
    )


def print_level(level: Level) -> None:
    print(
        f"N={level.streams:<3} stable p50 {level.stable_p50:5.2f} s  p90 {level.stable_p90:5.2f} s  1st partial {level.first_partial_p50:5.2f} s  "
        f"WER {level.wer:6.2%} (alone {level.baseline_wer:6.2%})  busy {level.busy_fraction:4.0%}  "
        f"worker s/audio s {level.worker_seconds_per_audio_second:.3f}  passes/window {level.decoder_passes_per_window:4.1f}  "
        f"RSS {level.rss_peak_mib:6.0f} MiB  {'sustained' if not level.failures else 'NOT sustained: ' + '; '.join(level.failures[:3])}",
        flush=True,
    )
    print(f"      worker s per audio s by stage: {level.stage_seconds_per_audio_second}", flush=True)


def draw(levels: list[Level], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [lv.streams for lv in levels]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(n, [lv.stable_p50 for lv in levels], "o-", label="stable latency p50")
    axis.plot(n, [lv.stable_p90 for lv in levels], "s-", label="stable latency p90")
    axis.plot(n, [lv.first_partial_p50 for lv in levels], "^--", label="first partial p50")
    axis.axhline(SUSTAINED["stable_p50_s"], color="gray", linestyle=":", label="p50 bar (1.0 s)")
    axis.axhline(SUSTAINED["stable_p90_s"], color="black", linestyle=":", label="p90 bar (2.0 s)")
    axis.set_xlabel("concurrent real-time streams")
    axis.set_ylabel("seconds behind speech")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def sustained_streams(levels: list[Level]) -> int:
    count = 0
    for level in sorted(levels, key=lambda lv: lv.streams):
        if level.failures:
            break
        count = level.streams
    return count


def baseline(daemon: Daemon, clips: list[tuple[Clip, np.ndarray]], references: dict[str, str]) -> tuple[Level, dict[str, str]]:
    """Every clip alone, one after the other: the single-stream figures and each clip's text."""
    results: list[StreamResult] = []
    counters: dict[str, float] = {}
    rss, wall = 0.0, 0.0
    for clip in clips:
        one, delta, peak, seconds = measure(daemon, [clip], 1, 0.0)
        results += one
        counters = {k: counters.get(k, 0.0) + v for k, v in delta.items()}
        rss, wall = max(rss, peak), wall + seconds
        print(f"alone: {clip[0].id} ({clip[0].duration_s:.0f} s): stable p50 {one[0].stable_p50:.2f} s", flush=True)
    texts = {r.clip: r.text for r in results}
    return summarize(1, results, counters, rss, wall, references, texts), texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="2,3,4,5,6,7,8", help="the sweep of N beyond the single-stream baseline (comma-separated)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of each clip to play (cut at an utterance end)")
    parser.add_argument("--stagger", type=float, default=1.7, help="seconds between the starts of two streams")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--bar", type=int, default=6, help="sustained streams needed for exit status 0")
    parser.add_argument("--first-partial-bar", type=float, default=1.5, help="first-partial p50 at N = 4 needed for exit status 0 (s)")
    parser.add_argument("--png", type=Path, default=None, help="draw latency against N here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("daemon_args", nargs="*", help="extra daemon flags, after --")
    args = parser.parse_args(argv)
    sweep = sorted({int(n) for n in args.streams.split(",") if n.strip()} - {1})
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        sources = clips_of("long") + [joined_clip("joined_en_seed0", clips_of("short", "en"), 0, Path(tmp))]
        clips = [cut_clip(c, args.seconds) for c in sources]
    references = {clip.id: long_clip_reference(clip) for clip, _ in clips}
    max_streams = max([1, *sweep]) + 1
    daemon = Daemon("--config", "config.toml", "--max-streams", str(max_streams), *args.daemon_args, model=args.model)
    try:
        levels = run_sweep(daemon, clips, references, sweep, args.stagger)
    finally:
        daemon.stop()
    count = sustained_streams(levels)
    print(f"\nsustained streams ({args.model}): {count}  (bar {args.bar})")
    one = levels[0]
    at4 = next((lv for lv in levels if lv.streams == 4), None)
    first_partial_ok = True
    if at4 is not None:
        ratio = at4.worker_seconds_per_audio_second / one.worker_seconds_per_audio_second
        print(f"worker seconds per audio second at N=4 / at N=1: {ratio:.2f} (bar <= 0.7)")
        first_partial_ok = at4.first_partial_p50 <= args.first_partial_bar
        print(f"first partial p50 at N=4: {at4.first_partial_p50:.2f} s (bar <= {args.first_partial_bar} s): {'ok' if first_partial_ok else 'FAIL'}")
    if len(levels) > 1:
        top = levels[-1]
        print(f"RSS per added stream: {(top.rss_peak_mib - one.rss_peak_mib) / (top.streams - 1):.1f} MiB (bar <= 25 MB)")
    if args.json is not None:  # before the plot, so that a plotting failure keeps the figures
        args.json.write_text(json.dumps({"sustained_streams": count, "levels": [asdict(lv) for lv in levels]}, indent=2) + "\n")
    if args.png is not None:
        draw(levels, args.png, f"whisper-streamer {args.model}: stable text behind speech")
    return 0 if count >= args.bar and first_partial_ok else 1


def run_sweep(daemon: Daemon, clips: list[tuple[Clip, np.ndarray]], references: dict[str, str], sweep: list[int], stagger: float) -> list[Level]:
    clip, audio = clips[0]
    measure(daemon, [(clip, audio[: 15 * SAMPLE_RATE])], 1, 0.0)  # warm-up: a fresh worker's first decodes are slow
    one, texts = baseline(daemon, clips, references)
    one = replace(one, sustained=not one.failures)
    print_level(one)
    levels = [one]
    for streams in sweep:
        time.sleep(LOAD_WINDOW)  # the last level's load and lags leave the admission window first
        results, counters, rss, wall = measure(daemon, clips, streams, stagger)
        level = summarize(streams, results, counters, rss, wall, references, texts)
        levels.append(replace(level, sustained=not level.failures))
        print_level(levels[-1])
    return levels


if __name__ == "__main__":
    sys.exit(main())
