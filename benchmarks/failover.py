"""Failover: streams through nginx survive a replica's kill -9 and a rolling restart, losing nothing.

`python -m benchmarks.failover [--manifest M] [--clips A,B] [--streams 8] [--pace 1.0]` starts
redis-server, two daemons sharing it and Debian's nginx (deploy/nginx.conf) on 127.0.0.1 in a
temporary folder (`benchmarks.cluster`), then plays N streams of the clips (stream i plays clip
i mod len(clips)) through nginx with the client library's `ResumingStream`, three times:

  1. undisturbed: the reference for WER, and the load split (sessions opened per replica);
  2. kill: `kill -9` of the replica holding the most streams at `--disrupt-at` s;
  3. rolling: at `--disrupt-at` s each replica in turn gets SIGTERM (it drains), is started
     again, and is waited for on /readyz.

Per stream: stable ids contiguous from 0; the segments received are exactly those the shared
store holds for the session (none lost, none twice); WER against the clip's reference next to
the undisturbed run's; the gap, from losing the connection to the next stable text on the new
one. Bars (the exit status is 1 when one fails): the streams split evenly; after the kill and
the rolling restart 0 lost or duplicated and ids contiguous, every moved stream's WER within
`--wer-margin` points of the undisturbed run, gap median <= 2.0 s and max <= 5.0 s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis

from clients.audio_file import AudioClip, read_audio
from clients.connection import ConnectOptions, Resumed, ResumingStream
from clients.pacing import PacingOptions, paced_frames
from clients.protocol import Received
from wire import Stable, Start

from .cluster import Cluster, Replica
from .data import DATA_DIR, Clip, load_manifest
from .wer import word_error_rate

DEFAULT_CLIPS = "long_lj001_0001-0020,long_mixed_speakers"
GAP_MEDIAN_BAR, GAP_MAX_BAR = 2.0, 5.0
START_SPACING = 0.2  # s between two streams' starts: least_conn sees the previous one counted


@dataclass
class StreamRun:
    """What one stream's client saw."""

    clip: Clip
    session_id: str = ""
    stables: list[tuple[float, int, Stable]] = field(default_factory=list)  # (arrival, connection index, segment)
    resumes: list[Resumed] = field(default_factory=list)
    end_last_id: int | None = None
    error: str = ""

    @property
    def text(self) -> str:
        return "".join(s.text for _, _, s in self.stables)

    @property
    def moved(self) -> bool:
        return bool(self.resumes)

    def gaps(self) -> list[float]:
        """Per move: from losing the connection to the first stable on the next one."""
        out = []
        for index, resumed in enumerate(self.resumes, start=1):
            after = [t for t, connection, _ in self.stables if connection == index]
            out.append((after[0] if after else float("inf")) - resumed.lost_at)
        return out


@dataclass(frozen=True)
class StreamCheck:
    contiguous: bool
    lost: int  # stored segments never received
    duplicated: int  # segments received twice, or received but not stored
    wer: float


@dataclass(frozen=True)
class PhaseResult:
    name: str
    runs: list[StreamRun]
    checks: list[StreamCheck]
    sessions_per_replica: list[int]
    seconds: float


async def play(url: str, clip: Clip, audio: AudioClip, pace: float, run: StreamRun) -> None:
    def on_message(received: Received) -> None:
        if isinstance(received.message, Stable):
            run.stables.append((time.monotonic(), len(stream.resumes), received.message))

    stream = ResumingStream(ConnectOptions(url), Start(sample_rate=audio.sample_rate, language=clip.language), on_message)
    try:
        task = asyncio.ensure_future(stream.run(paced_frames(audio, PacingOptions(speed=pace))))
        while stream.session_id is None and not task.done():
            await asyncio.sleep(0.01)
        run.session_id = stream.session_id or ""
        end = await task
        run.end_last_id = end.last_stable_id
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    run.resumes = list(stream.resumes)


async def run_streams(cluster: Cluster, clips: Sequence[Clip], audio: dict[str, AudioClip], streams: int, pace: float,
                      disrupt: Callable[[], None] | None, disrupt_at: float) -> list[StreamRun]:
    runs = [StreamRun(clips[i % len(clips)]) for i in range(streams)]
    tasks = []
    for run in runs:
        tasks.append(asyncio.create_task(play(cluster.url, run.clip, audio[run.clip.id], pace, run)))
        await asyncio.sleep(START_SPACING)
    if disrupt is not None:
        await asyncio.sleep(disrupt_at)
        await asyncio.to_thread(disrupt)
    await asyncio.gather(*tasks)
    return runs


def check_stream(run: StreamRun, stored: list[str], reference: str) -> StreamCheck:
    ids = [s.id for _, _, s in run.stables]
    received = [s.text for _, _, s in run.stables]
    contiguous = ids == list(range(len(ids))) and (run.end_last_id is None or run.end_last_id == len(ids) - 1) and not run.error
    lost = max(0, len(stored) - len(received)) + sum(a != b for a, b in zip(stored, received, strict=False))
    duplicated = max(0, len(received) - len(stored)) + len(ids) - len(set(ids))
    return StreamCheck(contiguous, lost, duplicated, 100.0 * word_error_rate([reference], [run.text]))


def stored_segments(redis: Redis, session_id: str) -> list[str]:
    import json

    return [json.loads(s)["text"] for s in redis.lrange(f"whisper-streamer:segments:{session_id}", 0, -1)]


def sessions_opened(cluster: Cluster) -> list[int]:
    return [int(r.metric("streamer_sessions_total")) if r.process and r.process.poll() is None else -1 for r in cluster.nodes]


def kill_busiest(cluster: Cluster) -> Callable[[], None]:
    def disrupt() -> None:
        busiest = max(cluster.nodes, key=lambda r: r.metric("streamer_active_streams"))
        print(f"  kill -9 {busiest.name} ({busiest.metric('streamer_active_streams'):.0f} streams)", flush=True)
        busiest.kill()
    return disrupt


def rolling_restart(cluster: Cluster) -> Callable[[], None]:
    def disrupt() -> None:
        for replica in cluster.nodes:
            print(f"  SIGTERM {replica.name} ({replica.metric('streamer_active_streams'):.0f} streams), restart, wait /readyz", flush=True)
            replica.terminate()
            replica.wait_exit(60)
            replica.start()
            replica.wait_ready()
    return disrupt


def restart_dead(cluster: Cluster) -> None:
    for replica in cluster.nodes:
        if replica.process is None or replica.process.poll() is not None:
            replica.start()
            replica.wait_ready()


def reference_of(clip: Clip, by_id: dict[str, Clip]) -> str:
    return " ".join(by_id[u.id].text for u in clip.segments) if clip.segments else clip.text


def run_phase(name: str, cluster: Cluster, clips: Sequence[Clip], audio: dict[str, AudioClip], args: argparse.Namespace,
              disrupt: Callable[[], None] | None, by_id: dict[str, Clip]) -> PhaseResult:
    print(f"{name}: {args.streams} stream(s) at {args.pace}x real time", flush=True)
    before = sessions_opened(cluster)
    began = time.monotonic()
    runs = asyncio.run(run_streams(cluster, clips, audio, args.streams, args.pace, disrupt, args.disrupt_at))
    seconds = time.monotonic() - began
    after = sessions_opened(cluster)
    redis = Redis.from_url(cluster.redis_url, decode_responses=True)
    checks = [check_stream(run, stored_segments(redis, run.session_id), reference_of(run.clip, by_id)) for run in runs]
    redis.close()
    split = [b - a if a >= 0 and b >= 0 else -1 for a, b in zip(before, after, strict=True)]
    return PhaseResult(name, runs, checks, split, seconds)


def report(baseline: PhaseResult, disrupted: Sequence[PhaseResult], streams: int, wer_margin: float) -> bool:
    """Prints the per-stream table and the bars; True when every bar holds."""
    ok = True
    split = baseline.sessions_per_replica
    even = sorted(split) == sorted([streams // len(split) + (i < streams % len(split)) for i in range(len(split))])
    ok &= _bar(f"load split {'/'.join(map(str, split))} (least connections, undisturbed)", even)
    for phase in disrupted:
        print(f"\n{phase.name} ({phase.seconds:.0f} s): stream  clip  moved  segments  lost  dup  contiguous  WER  (undisturbed)  gap")
        gaps: list[float] = []
        wer_ok = True
        for i, (run, check) in enumerate(zip(phase.runs, phase.checks, strict=True)):
            base = baseline.checks[i].wer
            run_gaps = run.gaps()
            gaps += run_gaps
            wer_ok &= not run.moved or check.wer <= base + wer_margin
            shown = ",".join(f"{g:.2f}" for g in run_gaps) or "-"
            shown += "".join(f" [{r.close_code} {r.seconds:.2f}s x{r.attempts} replay {r.replayed_seconds:.1f}s]" for r in run.resumes)
            print(f"  {i:2d}  {run.clip.id:24s} {len(run.resumes):d}  {len(run.stables):4d}  {check.lost:3d}  {check.duplicated:3d}  {check.contiguous!s:5s}"
                  f"  {check.wer:5.2f} % ({base:5.2f} %)  {shown}  {run.error}")
        ok &= _bar(f"{phase.name}: 0 lost, 0 duplicated, ids contiguous", all(c.lost == 0 and c.duplicated == 0 and c.contiguous for c in phase.checks))
        ok &= _bar(f"{phase.name}: {sum(r.moved for r in phase.runs)} moved stream(s), WER within {wer_margin} points of undisturbed", wer_ok)
        ok &= _bar(f"{phase.name}: some stream moved", any(r.moved for r in phase.runs))
        median = statistics.median(gaps) if gaps else float("inf")
        worst = max(gaps, default=float("inf"))
        ok &= _bar(f"{phase.name}: gap median {median:.2f} s <= {GAP_MEDIAN_BAR}, max {worst:.2f} s <= {GAP_MAX_BAR}", median <= GAP_MEDIAN_BAR and worst <= GAP_MAX_BAR)
    return ok


def _bar(what: str, passed: bool) -> bool:
    print(f"[{'PASS' if passed else 'FAIL'}] {what}", flush=True)
    return passed


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=DATA_DIR / "manifest.jsonl", help="a manifest.jsonl of the shared format")
    parser.add_argument("--clips", default=DEFAULT_CLIPS, help="comma-separated clip ids of the manifest, played round-robin")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--pace", type=float, default=1.0, help="x real time (more than 1 only for smoke runs; at most 4, the daemon's rate limit)")
    parser.add_argument("--disrupt-at", type=float, default=30.0, help="seconds after the last stream started when the kill / the rolling restart begins")
    parser.add_argument("--wer-margin", type=float, default=0.5, help="WER points a moved stream may lose against the undisturbed run")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's folder (daemon logs, nginx config) and print where")
    parser.add_argument("daemon_args", nargs="*", help="extra daemon flags, after --")
    args = parser.parse_args(list(argv))
    if args.streams < 1 or not 0 < args.pace <= 4:
        parser.error("--streams must be >= 1 and --pace in (0, 4]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    manifest = load_manifest(args.manifest.parent)
    by_id = {c.id: c for c in manifest}
    missing = [c for c in args.clips.split(",") if c not in by_id]
    if missing:
        print(f"failover: clip(s) not in {args.manifest}: {', '.join(missing)}", file=sys.stderr)
        return 2
    clips = [by_id[c] for c in args.clips.split(",")]
    audio = {c.id: read_audio(c.path) for c in clips}
    daemon_args = ("--model", args.model, "--max-streams", str(max(16, 2 * args.streams)), *args.daemon_args)
    directory = tempfile.mkdtemp(prefix="failover-")
    with Cluster(Path(directory), 2, daemon_args) as cluster:
        print(f"cluster: nginx {cluster.url}, replicas {', '.join(f'{r.name}:{r.port}' for r in cluster.nodes)}, redis {cluster.redis_url}")
        baseline = run_phase("undisturbed", cluster, clips, audio, args, None, by_id)
        killed = run_phase("kill -9", cluster, clips, audio, args, kill_busiest(cluster), by_id)
        restart_dead(cluster)
        rolling = run_phase("rolling restart", cluster, clips, audio, args, rolling_restart(cluster), by_id)
        _print_logs_on_error(cluster.nodes, [killed, rolling])
    if args.keep:
        print(f"cluster folder kept: {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return 0 if report(baseline, [killed, rolling], args.streams, args.wer_margin) else 1


def _print_logs_on_error(nodes: list[Replica], phases: list[PhaseResult]) -> None:
    if any(run.error for phase in phases for run in phase.runs):
        for replica in nodes:
            print(f"--- {replica.name} log (tail) ---\n{replica.log_path.read_text()[-4000:]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
