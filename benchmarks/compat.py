"""Drop-in interfaces benchmark: the real SDKs against the real daemon, beside protocol v1.

    python -m benchmarks.compat [--model tiny.en] [--clips N] [--max-seconds S] [--speed 1] [--short-clips N] [--json FILE]

One daemon; for each shared `long` clip (or its first `--max-seconds`, for a smoke run), at
real-time pace (`--speed`):

- protocol v1 (`clients.replay`), the Deepgram SDK (`is_final` results) and the OpenAI Realtime
  GA SDK (deltas): streaming WER and stable-text latency per utterance (when the text holding an
  utterance's last word arrived, minus when the utterance's end was sent; `benchmarks.streaming`
  scores all three alike). Bars, over all the long clips together (corpus WER, the median of
  every utterance's latency): WER within 0.5 points, latency median within 0.2 s of v1's. Per
  clip they are printed too; a short clip's WER moves by a word's worth (0.5 points on
  `long_mixed_speakers`) between two runs of v1 itself, as decode timing differs.
- REST (`openai` SDK): `json`, `srt`, `verbose_json`, `stream=True`: WER beside the offline
  CLI's (`python -m model.transcribe`) on the same file, and wall time (bar: within 1.2x the CLI's,
  whose time includes loading its model: the daemon's is loaded already).
- a live protocol-v1 stream alone, then again while a long upload is transcribed: the rise of its
  stable-latency median (bar: at most 0.3 s).
- Wyoming (the `wyoming` package's client, as Home Assistant uses it): `describe` answered within
  1 s (the slowest of a few, connection included); the shared `short` clips, one connection each,
  streamed at `--speed`: WER beside the offline CLI's on the same clips (one process, all clips).

Each bar is printed as PASS or FAIL; the exit status is 1 when one fails. WER margins: 0.5 points
for what streams (the SDKs against v1, Wyoming against the CLI: text committed as audio arrives),
0.2 for REST against the CLI (the same long-form decode; the margin is rounding of dtypes).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.daemon import Daemon, free_port
from benchmarks.data import Clip, clips_of, long_clip_reference
from benchmarks.streaming import Event, percentile, replay, score_clip
from benchmarks.wer import word_error_rate
from clients.audio_file import AudioClip
from clients.pacing import PacingOptions, paced_frames

BARS = {
    "wer_margin_points": 0.5, "latency_margin_s": 0.2, "rest_wer_margin_points": 0.2, "rest_wall_ratio": 1.2,
    "upload_latency_rise_s": 0.3, "wyoming_describe_s": 1.0, "wyoming_wer_margin_points": 0.5,
}
CHUNK_SECONDS = 0.04  # the frames protocol v1 gets from clients.replay (--frame-ms 40): every interface at the same granularity
REALTIME_DRAIN_S = 5.0
DESCRIBE_TRIES = 5


@dataclass(frozen=True)
class StreamScore:
    interface: str
    clip: str
    wer: float
    latency_median_s: float
    latencies: tuple[float, ...]
    text: str  # the stable text
    reference: str


@dataclass(frozen=True)
class RestScore:
    clip: str
    response_format: str
    wer: float
    wall_s: float
    offline_wer: float
    offline_wall_s: float


@dataclass(frozen=True)
class Interference:
    clip: str
    alone_median_s: float
    with_upload_median_s: float
    upload_clip: str


@dataclass(frozen=True)
class WyomingScore:
    clips: int
    describe_s: float  # the slowest of DESCRIBE_TRIES, connection included
    wer: float
    offline_wer: float


@dataclass(frozen=True)
class Bar:
    what: str
    passed: bool


def encode(path: Path, *args: str) -> bytes:
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-ac", "1", *args, "pipe:1"]
    return subprocess.run(command, check=True, capture_output=True).stdout


def truncated(clip: Clip, seconds: float, directory: Path) -> Clip:
    """The clip's first `seconds` (the utterances wholly inside them), for smoke runs."""
    if seconds <= 0 or clip.duration_s <= seconds:
        return clip
    path = directory / f"{clip.id}-{seconds:.0f}s.wav"
    path.write_bytes(encode(clip.path, "-t", str(seconds), "-ar", "16000", "-f", "wav"))
    return replace(clip, path=path, duration_s=seconds, segments=tuple(s for s in clip.segments if s.end_s <= seconds))


def paced(pcm: bytes, rate: int, speed: float, send: Callable[[bytes], None], on_sent: Callable[[float, float], None]) -> None:
    """Sends `pcm` (16-bit) in CHUNK_SECONDS chunks at `speed` × real time, each once its audio
    has happened (as `clients.pacing.paced_frames`, for the SDKs' blocking sends);
    `on_sent(t, audio seconds)` after each."""
    step = int(rate * CHUNK_SECONDS) * 2
    began = time.monotonic()
    for offset in range(0, len(pcm), step):
        due = began + min(len(pcm), offset + step) / 2 / rate / speed
        time.sleep(max(0.0, due - time.monotonic()))
        send(pcm[offset : offset + step])
        on_sent(time.monotonic() - began, min(len(pcm), offset + step) / 2 / rate)


class _Log:
    """Messages of an SDK run as `benchmarks.streaming.Event`s (stable/partial-shaped)."""

    def __init__(self) -> None:
        self.began = 0.0
        self.sent = 0.0
        self.events: list[Event] = []
        self._stable_id = 0
        self.lock = threading.Lock()

    def on_sent(self, t: float, seconds: float) -> None:
        with self.lock:
            self.sent = seconds
            self.events.append(Event(t, seconds, {"type": "sent"}))

    def stable(self, text: str, start: float, end: float) -> None:
        with self.lock:
            t = time.monotonic() - self.began
            self.events.append(Event(t, self.sent, {"type": "stable", "id": self._stable_id, "text": " " + text, "start": start, "end": end}))
            self._stable_id += 1


def run_deepgram(address: str, clip: Clip, speed: float) -> list[Event]:
    from deepgram import DeepgramClient
    from deepgram.core.events import EventType
    from deepgram.environment import DeepgramClientEnvironment

    env = DeepgramClientEnvironment(base=f"http://{address}", production=f"ws://{address}", agent=f"ws://{address}", agent_rest=f"http://{address}")
    log = _Log()

    def on_message(message: Any) -> None:
        if getattr(message, "type", None) == "Results" and message.is_final and message.channel.alternatives[0].transcript:
            log.stable(message.channel.alternatives[0].transcript, message.start, message.start + message.duration)

    pcm = encode(clip.path, "-ar", "16000", "-f", "s16le") + bytes(32000)
    with DeepgramClient(api_key="bench", environment=env).listen.v1.connect(
        model="nova-3", language="en", encoding="linear16", sample_rate=16000, interim_results=True
    ) as conn:
        conn.on(EventType.MESSAGE, on_message)
        listener = threading.Thread(target=conn.start_listening, daemon=True)
        listener.start()
        log.began = time.monotonic()
        paced(pcm, 16000, speed, conn.send_media, log.on_sent)
        conn.send_close_stream()
        listener.join(120)
    return log.events


def run_realtime(address: str, clip: Clip, speed: float) -> list[Event]:
    from openai import OpenAI

    client = OpenAI(api_key="bench", base_url=f"http://{address}/v1", websocket_base_url=f"ws://{address}/v1", max_retries=0)
    log = _Log()
    pcm = encode(clip.path, "-ar", "24000", "-f", "s16le") + bytes(96000)
    done = threading.Event()
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                     "transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": {"type": "server_vad"}}}})

        def send() -> None:
            paced(pcm, 24000, speed, lambda c: conn.input_audio_buffer.append(audio=base64.b64encode(c).decode()), log.on_sent)
            done.wait(REALTIME_DRAIN_S)  # the last turn's final decode, after its trailing silence
            conn.close()  # the API has no end of stream: closing ends the SDK's iteration

        log.began = time.monotonic()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        for event in conn:
            delta = getattr(event, "delta", None) if event.type == "conversation.item.input_audio_transcription.delta" else None
            if isinstance(delta, str) and delta.strip():
                log.stable(delta.strip(), 0.0, 0.0)
        sender.join(10)
    return log.events


def score(interface: str, clip: Clip, events: list[Event], speed: float) -> StreamScore:
    report = score_clip(clip, events, "", speed)
    latency = percentile(list(report.stable_latency), 50)
    return StreamScore(interface, clip.id, report.streaming_wer, latency, report.stable_latency, report.stable_text, long_clip_reference(clip))


def pooled(scores: list[StreamScore]) -> list[StreamScore]:
    """Each interface's scores over all the clips (in order of appearance): corpus WER, the
    median of every utterance's latency."""
    totals = []
    for interface in dict.fromkeys(s.interface for s in scores):
        mine = [s for s in scores if s.interface == interface]
        latencies = tuple(x for s in mine for x in s.latencies)
        wer = word_error_rate([s.reference for s in mine], [s.text for s in mine])
        totals.append(StreamScore(interface, "all long clips", wer, percentile(list(latencies), 50), latencies, "", ""))
    return totals


def run_rest(address: str, clip: Clip, model: str, workdir: Path) -> list[RestScore]:
    from openai import OpenAI

    began = time.perf_counter()
    offline = subprocess.run([sys.executable, "-m", "model.transcribe", str(clip.path), "--model", model, "--no-progress"], capture_output=True, text=True, check=True)
    offline_wall = time.perf_counter() - began
    reference = long_clip_reference(clip)
    offline_wer = word_error_rate([reference], [offline.stdout])
    audio = OpenAI(api_key="bench", base_url=f"http://{address}/v1", max_retries=0, timeout=600).audio.transcriptions
    upload = (clip.path.name, clip.path.read_bytes(), "audio/wav")
    scores = []
    for fmt in ("json", "srt", "verbose_json", "stream"):
        began = time.perf_counter()
        if fmt == "stream":
            text = next(e.text for e in audio.create(model="whisper-1", file=upload, stream=True) if e.type == "transcript.text.done")
        elif fmt == "srt":
            blocks = audio.create(model="whisper-1", file=upload, response_format="srt").strip().split("\n\n")
            text = " ".join(" ".join(b.split("\n")[2:]) for b in blocks)
        elif fmt == "verbose_json":
            text = audio.create(model="whisper-1", file=upload, response_format="verbose_json").text
        else:
            text = audio.create(model="whisper-1", file=upload, response_format="json").text
        scores.append(RestScore(clip.id, fmt, word_error_rate([reference], [text]), time.perf_counter() - began, offline_wer, offline_wall))
    return scores


def run_interference(daemon: Daemon, clip: Clip, upload: Clip, speed: float, workdir: Path) -> Interference:
    from openai import OpenAI

    alone = score("v1", clip, replay(daemon.url, clip, speed, workdir), speed)
    audio = OpenAI(api_key="bench", base_url=f"{daemon.http_url}/v1", max_retries=0, timeout=600).audio.transcriptions
    uploader = threading.Thread(target=lambda: audio.create(model="whisper-1", file=(upload.path.name, upload.path.read_bytes(), "audio/wav")), daemon=True)
    uploader.start()
    time.sleep(0.5)  # the upload is decoding when the stream starts
    loaded = score("v1", clip, replay(daemon.url, clip, speed, workdir), speed)
    uploader.join(600)
    return Interference(clip.id, alone.latency_median_s, loaded.latency_median_s, upload.id)


async def _describe_seconds(port: int) -> float:
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    began = time.monotonic()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        event = await asyncio.wait_for(client.read_event(), 5)
        if event is None or not Info.is_type(event.type):
            raise RuntimeError(f"wyoming: describe answered {event!r}")
    return time.monotonic() - began


async def _wyoming_transcript(port: int, clip: Clip, speed: float) -> str:
    """One connection, one utterance: transcribe, audio-start, CHUNK_SECONDS chunks at `speed`, audio-stop."""
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    samples = np.frombuffer(encode(clip.path, "-ar", "16000", "-f", "s16le"), "<i2").reshape(-1, 1)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language=clip.language).event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        async for chunk in paced_frames(AudioClip(samples, 16000), PacingOptions(round(CHUNK_SECONDS * 1000), speed)):
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event())
        await client.write_event(AudioStop().event())
        while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text
    raise RuntimeError(f"wyoming: the connection for {clip.id} closed without a transcript")


def run_wyoming(port: int, clips: list[Clip], model: str, speed: float, workdir: Path) -> WyomingScore:
    describe = max(asyncio.run(_describe_seconds(port)) for _ in range(DESCRIBE_TRIES))
    texts = [asyncio.run(_wyoming_transcript(port, clip, speed)) for clip in clips]
    out = workdir / "wyoming-offline"
    subprocess.run([sys.executable, "-m", "model.transcribe", *(str(c.path) for c in clips), "--model", model, "--language", "en",
                    "--output-format", "json", "--output-dir", str(out), "--no-progress"], capture_output=True, check=True)  # fmt: skip
    offline = [json.loads((out / f"{c.path.stem}.json").read_text())["text"] for c in clips]
    references = [c.text for c in clips]
    return WyomingScore(len(clips), describe, word_error_rate(references, texts), word_error_rate(references, offline))


def judge(totals: list[StreamScore], rest: list[RestScore], interference: list[Interference], wyoming: WyomingScore | None) -> list[Bar]:
    """Every bar of the issue, on the figures of this run (`totals`: the streams' `pooled` scores)."""
    bars = []
    base = next(s for s in totals if s.interface == "v1")
    for s in (s for s in totals if s is not base):
        wer_rise, latency_rise = 100 * (s.wer - base.wer), s.latency_median_s - base.latency_median_s
        bars.append(Bar(f"{s.interface} {s.clip}: WER {100 * s.wer:.2f} % ({wer_rise:+.2f} pts vs v1, bar {BARS['wer_margin_points']})", wer_rise <= BARS["wer_margin_points"]))
        bars.append(Bar(f"{s.interface} {s.clip}: latency median {s.latency_median_s:.2f} s ({latency_rise:+.2f} s vs v1, bar {BARS['latency_margin_s']})", latency_rise <= BARS["latency_margin_s"]))
    for r in rest:
        wer_rise, ratio = 100 * (r.wer - r.offline_wer), r.wall_s / r.offline_wall_s
        bars.append(Bar(f"REST {r.response_format} {r.clip}: WER {100 * r.wer:.2f} % ({wer_rise:+.2f} pts vs CLI, bar {BARS['rest_wer_margin_points']})", wer_rise <= BARS["rest_wer_margin_points"]))
        bars.append(Bar(f"REST {r.response_format} {r.clip}: wall {r.wall_s:.2f} s, {ratio:.2f}x the CLI's (bar {BARS['rest_wall_ratio']}x)", ratio <= BARS["rest_wall_ratio"]))
    for i in interference:
        rise = i.with_upload_median_s - i.alone_median_s
        bars.append(Bar(f"live stream during an upload: latency median {rise:+.2f} s (bar {BARS['upload_latency_rise_s']})", rise <= BARS["upload_latency_rise_s"]))
    if wyoming is not None:
        wer_rise = 100 * (wyoming.wer - wyoming.offline_wer)
        bars.append(Bar(f"Wyoming describe: {wyoming.describe_s:.3f} s (bar < {BARS['wyoming_describe_s']})", wyoming.describe_s < BARS["wyoming_describe_s"]))
        bars.append(Bar(f"Wyoming {wyoming.clips} short clips: WER {100 * wyoming.wer:.2f} % ({wer_rise:+.2f} pts vs CLI {100 * wyoming.offline_wer:.2f} %, bar {BARS['wyoming_wer_margin_points']})",
                        wer_rise <= BARS["wyoming_wer_margin_points"]))  # fmt: skip
    return bars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compat", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--clips", type=int, default=0, help="long clips to use (0: all)")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="cut each clip to this many seconds (smoke runs)")
    parser.add_argument("--speed", type=float, default=1.0, help="× real time (1: the bars' pace)")
    parser.add_argument("--short-clips", type=int, default=0, help="short clips for Wyoming (0: all; -1: skip Wyoming)")
    parser.add_argument("--json", type=Path, default=None)
    args, daemon_flags = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        longs = clips_of("long", "en")
        upload_clip = next((c for c in longs if 80 <= c.duration_s <= 100), longs[-1])
        clips = [truncated(c, args.max_seconds, workdir) for c in (longs[: args.clips] if args.clips else longs)]
        upload = truncated(upload_clip, args.max_seconds * 2, workdir)
        shorts = clips_of("short", "en")
        shorts = shorts[: args.short_clips] if args.short_clips > 0 else [] if args.short_clips < 0 else shorts
        wyoming_port = free_port()
        daemon = Daemon("--max-tick-lag", "600", "--uri", f"tcp://127.0.0.1:{wyoming_port}", *daemon_flags, model=args.model)
        try:
            streams: list[StreamScore] = []
            rest: list[RestScore] = []
            interference: list[Interference] = []
            wyoming = run_wyoming(wyoming_port, shorts, args.model, args.speed, workdir) if shorts else None
            for clip in clips:
                streams.append(score("v1", clip, replay(daemon.url, clip, args.speed, workdir), args.speed))
                streams.append(score("deepgram", clip, run_deepgram(daemon.address, clip, args.speed), args.speed))
                streams.append(score("openai_realtime", clip, run_realtime(daemon.address, clip, args.speed), args.speed))
                rest.extend(run_rest(daemon.address, clip, args.model, workdir))
            interference.append(run_interference(daemon, clips[0], upload, args.speed, workdir))
        finally:
            daemon.stop()
    totals = pooled(streams)
    bars = judge(totals, rest, interference, wyoming)
    report = {"bars": BARS, "streams": [asdict(s) for s in streams], "rest": [asdict(r) for r in rest], "interference": [asdict(i) for i in interference],
              "wyoming": asdict(wyoming) if wyoming else None, "judged": [asdict(b) for b in bars]}  # fmt: skip
    print_report(streams + totals, rest, interference)
    print()
    for bar in bars:
        print(f"[{'PASS' if bar.passed else 'FAIL'}] {bar.what}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(b.passed for b in bars) else 1


def print_report(streams: list[StreamScore], rest: list[RestScore], interference: list[Interference]) -> None:
    by_clip: dict[str, dict[str, StreamScore]] = {}
    for s in streams:
        by_clip.setdefault(s.clip, {})[s.interface] = s
    print(f"{'clip':28} {'interface':16} {'WER %':>6} {'Δ pts':>6} {'lat med s':>9} {'Δ s':>6}")
    for clip, scores in by_clip.items():
        v1 = scores["v1"]
        for name, s in scores.items():
            print(f"{clip:28} {name:16} {100 * s.wer:6.2f} {100 * (s.wer - v1.wer):6.2f} {s.latency_median_s:9.2f} {s.latency_median_s - v1.latency_median_s:6.2f}")
    print(f"\n{'clip':28} {'REST format':14} {'WER %':>6} {'CLI WER %':>9} {'wall s':>7} {'CLI wall s':>10} {'ratio':>6}")
    for r in rest:
        print(f"{r.clip:28} {r.response_format:14} {100 * r.wer:6.2f} {100 * r.offline_wer:9.2f} {r.wall_s:7.2f} {r.offline_wall_s:10.2f} {r.wall_s / r.offline_wall_s:6.2f}")
    for i in interference:
        print(f"\nlive v1 stream ({i.clip}) stable latency median: alone {i.alone_median_s:.2f} s, during an upload of {i.upload_clip}: {i.with_upload_median_s:.2f} s (rise {i.with_upload_median_s - i.alone_median_s:+.2f} s; bar <= {BARS['upload_latency_rise_s']})")


if __name__ == "__main__":
    raise SystemExit(main())
