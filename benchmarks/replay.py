"""A deterministic replay of shared clips through real sessions and the real model, in virtual time.

    python -m benchmarks.replay [--clips long_lj001_0001-0020,long_mixed_speakers,picovoice_empty_noise]
        [--seconds 60] [--model tiny.en] [--policy local-agreement] --out replay.json
    python -m benchmarks.replay --model base --clips picovoice_es,picovoice_es+picovoice_it --out ml.json
    python -m benchmarks.replay --compare before.json after.json

Each clip (cut to --seconds) is fed to one `Session` 0.1 s at a time; a virtual clock advances
0.1 s per frame, and every decode takes a fixed --step of virtual seconds (no real clock, so two
runs of the same code give the same messages). Every stable and partial message is written with
the virtual time it was sent, and so is every `language` message. A clip id `a+b` replays the
two clips one after the other in one stream (a language switch, with a multilingual model). Two outputs of this script are compared with --compare: a change
meant to preserve behaviour (a refactor) must give identical stable texts, ids and timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.data import load_manifest
from model.audio import SAMPLE_RATE, load_audio
from streamer.config import Config, ModelConfig, StreamConfig
from streamer.engine.worker import ModelWorker
from streamer.stream.session import ModelInfo, Session
from wire import LanguageDetected, Partial, ServerMessage, Stable, Start

FRAME = SAMPLE_RATE // 10
DEFAULT_CLIPS = "long_lj001_0001-0020,long_mixed_speakers,picovoice_empty_noise"


@dataclass(frozen=True)
class Event:
    """One stable or partial message, and the virtual time it was sent."""

    time: float
    kind: str  # stable | partial | language
    id: int  # the stable's id; -1 for a partial or a language
    text: str
    start: float
    end: float


def _events(messages: list[ServerMessage], now: float) -> list[Event]:
    events = []
    for m in messages:
        if isinstance(m, Stable):
            events.append(Event(round(now, 3), "stable", m.id, m.text, round(m.start, 3), round(m.end, 3)))
        elif isinstance(m, Partial):
            events.append(Event(round(now, 3), "partial", -1, m.text, round(m.start, 3), round(m.end, 3)))
        elif isinstance(m, LanguageDetected):
            events.append(Event(round(now, 3), "language", -1, m.language, round(m.probability, 3), 0.0))
    return events


def replay(worker: ModelWorker, model: object, config: Config, pcm: np.ndarray, step: float) -> list[Event]:
    """One clip through one session: frames at virtual real time, each decode `step` s long."""
    session = Session("replay", Start(), config, ModelInfo(model.name, model.is_multilingual))  # type: ignore[attr-defined]
    events: list[Event] = []
    fed, now = 0, 0.0
    while not session.ended:
        while fed + FRAME <= min(len(pcm), round(now * SAMPLE_RATE)):
            events += _events(session.on_audio(pcm[fed : fed + FRAME].tobytes()), now)
            fed += FRAME
        if fed + FRAME > len(pcm) and not session.stopping:
            events += _events(session.stop(), now)
        if session.wants_tick:
            request = session.make_tick_request()
            hypothesis = worker.decode(model, [request]).hypotheses[0]  # type: ignore[arg-type]
            now += step
            events += _events(session.apply_result(request, hypothesis), now)
        else:
            now += FRAME / SAMPLE_RATE
    return events


def compare(before: dict[str, list[dict[str, object]]], after: dict[str, list[dict[str, object]]]) -> list[str]:
    """The differences in stable and language messages (text, id, start, end, time sent) between two replays."""
    problems = []
    for clip in sorted(set(before) | set(after)):
        a = [e for e in before.get(clip, []) if e["kind"] != "partial"]
        b = [e for e in after.get(clip, []) if e["kind"] != "partial"]
        if a != b:
            problems.append(f"{clip}: {len(a)} stables before, {len(b)} after; first difference: {next((x, y) for x, y in zip(a + [{}], b + [{}]) if x != y)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default=DEFAULT_CLIPS, help="comma-separated clip ids of the shared manifest")
    parser.add_argument("--seconds", type=float, default=60.0, help="each clip is cut to this")
    parser.add_argument("--step", type=float, default=0.2, help="virtual seconds a decode takes")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--policy", help="stream.commit_policy (default: the config's)")
    parser.add_argument("--out", type=Path, help="JSON file of every clip's events")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two outputs and exit")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        problems = compare(before, after)
        print("\n".join(problems) if problems else "stable messages identical")
        print("partials identical too" if before == after else "partials differ (not checked)")
        return 1 if problems else 0
    stream = StreamConfig(commit_policy=args.policy) if args.policy else StreamConfig()  # type: ignore[call-arg,unused-ignore]
    config = Config(model=ModelConfig(model=args.model, threads=args.threads), stream=stream)
    worker = ModelWorker(config.model, config.stream)
    model = worker.load()
    by_id = {c.id: c for c in load_manifest()}
    results: dict[str, list[dict[str, object]]] = {}
    for clip_id in args.clips.split(","):
        audio = np.concatenate([load_audio(by_id[c].path) for c in clip_id.split("+")])[: int(args.seconds * SAMPLE_RATE)]
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        events = replay(worker, model, config, pcm, args.step)
        results[clip_id] = [e.__dict__ for e in events]
        stables = [e for e in events if e.kind == "stable"]
        print(f"{clip_id}: {len(stables)} stables, {len(events) - len(stables)} partials: {''.join(e.text for e in stables)[:120]!r}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
