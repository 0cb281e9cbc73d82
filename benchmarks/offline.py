"""Offline transcription benchmark (`make bench`): our CLI against faster-whisper, same run.

Over the `short` and `long` English clips of ../shared/data with tiny.en, greedy,
`--language en`, on N CPU threads, it measures for each engine one whole process (start to
exit): wall time per audio second, word error rate (Whisper's English normaliser), peak
RSS; it checks the `nonspeech` clips give no text and that long-form segments are ordered,
non-overlapping and inside the audio. Speed is reported as a ratio to faster-whisper int8
measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.data import Clip, clips_of, long_clip_reference
from benchmarks.wer import word_error_rate

# faster-whisper in a child process, so its wall time includes its own start-up as ours does.
_FASTER_WHISPER = r"""
import json, sys
from pathlib import Path
from faster_whisper import WhisperModel
model_dir, threads, out_dir, *paths = sys.argv[1:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=int(threads))
for path in paths:
    segments, info = model.transcribe(path, language="en", beam_size=1, best_of=1, temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    segments = [{"start": s.start, "end": s.end, "text": s.text} for s in segments]
    text = "".join(s["text"] for s in segments)
    (Path(out_dir) / (Path(path).stem + ".json")).write_text(json.dumps({"text": text, "segments": segments}))
"""


@dataclass(frozen=True)
class Run:
    engine: str
    wall_s: float
    peak_rss_mb: float
    outputs: dict[str, dict]  # clip path stem → {"text", "segments"}


def run_process(engine: str, cmd: list[str], out_dir: Path, threads: int) -> Run:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives this child's own peak RSS (not the maximum over all children).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{engine} failed ({' '.join(cmd[:4])} …):\n{stderr[-3000:]}")
    outputs = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
    return Run(engine, wall, usage.ru_maxrss / 1024, outputs)


def ours_cmd(paths: list[Path], out_dir: Path, threads: int, dtype: str, model: str) -> list[str]:
    return [sys.executable, "-m", "model.transcribe", *map(str, paths), "--model", model, "--language", "en",
            "--output-format", "json", "--output-dir", str(out_dir), "--threads", str(threads), "--dtype", dtype]  # fmt: skip


def faster_whisper_cmd(paths: list[Path], out_dir: Path, threads: int, model_dir: Path) -> list[str]:
    return [sys.executable, "-c", _FASTER_WHISPER, str(model_dir), str(threads), str(out_dir), *map(str, paths)]


def score(run: Run, clips: list[Clip]) -> float:
    refs = [long_clip_reference(c) if c.kind == "long" else c.text for c in clips]
    hyps = [run.outputs[c.path.stem]["text"] for c in clips]
    return word_error_rate(refs, hyps)


def long_form_problems(run: Run, clips: list[Clip]) -> list[str]:
    problems = []
    for clip in clips:
        segments = run.outputs[clip.path.stem]["segments"]
        for a, b in itertools.pairwise(segments):
            if b["start"] < a["end"] - 1e-6 or b["start"] < a["start"]:
                problems.append(f"{clip.id}: segments overlap or go back at {b['start']:.2f}s")
        for s in segments:
            if not (0 <= s["start"] <= s["end"] <= clip.duration_s + 0.02):
                problems.append(f"{clip.id}: segment {s['start']:.2f}-{s['end']:.2f}s outside 0-{clip.duration_s:.2f}s")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.offline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each engine, alternating; medians reported")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--skip-int8", action="store_true", help="skip our --dtype int8 run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from model.weights import resolve

    english = clips_of("short", "en") + clips_of("long", "en")
    nonspeech = clips_of("nonspeech")
    paths = [c.path for c in english + nonspeech]
    audio_s = sum(c.duration_s for c in english + nonspeech)
    model_dir = resolve(args.model)[0]

    engines = {
        "ours float32": lambda out: ours_cmd(paths, out, args.threads, "float32", args.model),
        "faster-whisper int8": lambda out: faster_whisper_cmd(paths, out, args.threads, model_dir),
    }
    if not args.skip_int8:
        engines["ours int8"] = lambda out: ours_cmd(paths, out, args.threads, "int8", args.model)

    runs: dict[str, list[Run]] = {name: [] for name in engines}
    for repeat in range(args.repeats):
        for name, make_cmd in engines.items():
            with tempfile.TemporaryDirectory() as tmp:
                print(f"[{repeat + 1}/{args.repeats}] {name} over {len(paths)} clips, {audio_s:.0f} s of audio …", file=sys.stderr, flush=True)
                runs[name].append(run_process(name, make_cmd(Path(tmp)), Path(tmp), args.threads))

    baseline = statistics.median(r.wall_s for r in runs["faster-whisper int8"])
    short_ids = {c.id: c for c in clips_of("short", "en")}
    long_clips = clips_of("long", "en")
    rows: list[dict[str, Any]] = []  # one JSON object per engine, as --json writes them
    for name, engine_runs in runs.items():
        wall = statistics.median(r.wall_s for r in engine_runs)
        run = engine_runs[0]
        silent = [c.id for c in nonspeech if run.outputs[c.path.stem]["text"].strip()]
        long_wer = score(run, long_clips)
        # The same utterances decoded one clip at a time, for the long-form comparison.
        short_of_long = [short_ids[u.id] for c in long_clips for u in c.segments]
        rows.append({
            "engine": name,
            "wall_s": round(wall, 2),
            "rtf": round(wall / audio_s, 4),
            "ratio_to_faster_whisper": round(wall / baseline, 3),
            "wer_percent": round(100 * score(run, english), 2),
            "long_form_wer_percent": round(100 * long_wer, 2),
            "short_form_wer_of_long_utterances_percent": round(100 * score(run, short_of_long), 2),
            "nonspeech_clips_with_text": silent,
            "long_form_problems": long_form_problems(run, long_clips),
            "peak_rss_mb": round(max(r.peak_rss_mb for r in engine_runs), 1),
        })  # fmt: skip

    print(f"\n{len(english)} English clips + {len(nonspeech)} non-speech clips, {audio_s:.1f} s of audio, "
          f"{args.threads} threads, model {args.model}, greedy, --language en, {args.repeats} run(s) each\n")  # fmt: skip
    header = f"{'engine':<22}{'wall s':>8}{'RTF':>8}{'x fw-int8':>11}{'WER %':>8}{'long WER':>10}{'short WER':>11}{'RSS MB':>8}  non-speech text"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['engine']:<22}{r['wall_s']:>8.2f}{r['rtf']:>8.4f}{r['ratio_to_faster_whisper']:>11.3f}{r['wer_percent']:>8.2f}"
              f"{r['long_form_wer_percent']:>10.2f}{r['short_form_wer_of_long_utterances_percent']:>11.2f}{r['peak_rss_mb']:>8.0f}  "
              f"{len(r['nonspeech_clips_with_text'])}/{len(nonspeech)} {' '.join(r['nonspeech_clips_with_text'])}")  # fmt: skip
        for problem in r["long_form_problems"]:
            print(f"  long-form problem: {problem}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
