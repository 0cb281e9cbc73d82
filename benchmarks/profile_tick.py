"""Where a tick's time goes, for N streams: the real sessions and the worker's decode step, in
virtual time, on this machine's CPU (or GPU).

    python -m benchmarks.profile_tick [--streams 1,2,4,8] [--seconds 40] [--model tiny.en] [--max-batch 8]

N sessions each get one long clip (the shared ones in turn, each stream starting 1.7 s after the
last), fed 0.1 s at a time. A virtual clock advances by 0.1 s while no stream is due, and by the
measured seconds of each worker step otherwise, so each tick covers as much new audio as it
would in the daemon, where audio keeps arriving while the worker decodes. Every due stream
(up to --max-batch, the decodes stable text waits on first, as the scheduler orders them) goes into the step. Printed per N: steps, mean rows a step,
seconds a step and a row, the split by stage (mel, encoder, language, decoder, alignment, and
the rest: Python outside them: building prompts and forced tokens, turning results into
hypotheses), decoder passes per window, and the mean window length. No sockets, no scheduler:
this is the engine's cost, which `benchmarks.capacity` then measures through the daemon.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from benchmarks.data import clips_of
from model.audio import SAMPLE_RATE, load_audio
from model.profile import STAGES
from streamer.config import Config, ModelConfig
from streamer.engine.worker import BatchResult, ModelWorker
from streamer.stream.session import ModelInfo, Session
from wire import Start

FRAME = SAMPLE_RATE // 10
STAGGER = 1.7


@dataclass(frozen=True)
class Profile:
    streams: int
    steps: int
    rows: int
    seconds: float
    stages: dict[str, float]
    passes: int
    window_seconds: float


def feed(sessions: list[Session], pcm: list[np.ndarray], fed: list[int], now: float) -> None:
    """Gives each session its audio up to virtual time `now` (stream i starts i × STAGGER s late)."""
    for i, session in enumerate(sessions):
        until = min(len(pcm[i]), int(max(0.0, now - i * STAGGER) * SAMPLE_RATE))
        while fed[i] + FRAME <= until:
            session.on_audio(pcm[i][fed[i] : fed[i] + FRAME].tobytes())
            fed[i] += FRAME


def profile(worker: ModelWorker, model, config: Config, audio: list[np.ndarray], streams: int, seconds: float, max_batch: int) -> Profile:
    info = ModelInfo(model.name, model.is_multilingual)
    sessions = [Session(f"s{i}", Start(), config, info) for i in range(streams)]
    pcm = [(np.clip(audio[i % len(audio)][: int(seconds * SAMPLE_RATE)], -1, 1) * 32767).astype("<i2") for i in range(streams)]
    fed = [0] * streams
    now, steps, rows, total, passes, window = 0.0, 0, 0, 0.0, 0, 0.0
    stages: dict[str, float] = defaultdict(float)
    while now < seconds + (streams - 1) * STAGGER:
        feed(sessions, pcm, fed, now)
        due = sorted((s for s in sessions if s.wants_tick), key=lambda s: not (s.due_tick is not None and s.due_tick.urgent))[:max_batch]
        if not due:
            now += 0.1
            continue
        requests = [s.make_tick_request() for s in due]
        result: BatchResult = worker.decode(model, requests)
        for session, request, hypothesis in zip(due, requests, result.hypotheses):
            session.apply_result(request, hypothesis)
        now += result.seconds
        steps, rows, total = steps + 1, rows + len(due), total + result.seconds
        assert result.profile is not None
        passes += result.profile.decoder_passes
        window += result.profile.audio_seconds
        for stage, t in result.profile.stages.items():
            stages[stage] += t
    return Profile(streams, steps, rows, total, dict(stages), passes, window / max(rows, 1))


def print_profile(p: Profile) -> None:
    rest = p.seconds - sum(p.stages.values())
    split = "  ".join(f"{stage} {p.stages.get(stage, 0.0) / p.seconds:4.0%}" for stage in STAGES)
    print(
        f"N={p.streams:<2} steps {p.steps:4d}  rows/step {p.rows / max(p.steps, 1):4.1f}  s/step {p.seconds / max(p.steps, 1):.3f}  "
        f"s/row {p.seconds / max(p.rows, 1):.3f}  | {split}  rest {rest / p.seconds:4.0%} | passes/window {p.passes / max(p.rows, 1):4.1f}  "
        f"window {p.window_seconds:4.1f} s",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=40.0, help="seconds of each stream's clip")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args(argv)
    config = Config(model=ModelConfig(model=args.model, dtype=args.dtype, threads=args.threads))
    worker = ModelWorker(config.model, config.stream)
    model = worker.load()
    audio = [load_audio(c.path) for c in clips_of("long")]
    began = time.perf_counter()
    profile(worker, model, config, audio, 1, 10.0, 1)  # warm-up
    print(f"model {model.name} ({str(model.dtype).removeprefix('torch.')}) on {model.device}; warm-up {time.perf_counter() - began:.1f} s", flush=True)
    for streams in (int(n) for n in args.streams.split(",")):
        print_profile(profile(worker, model, config, audio, streams, args.seconds, args.max_batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
