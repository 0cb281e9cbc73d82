"""Language benchmark: the real daemon with a multilingual model on the shared multilingual clips.

    python -m benchmarks.languages [--model base] [--speed 1] [--manifest FILE] [--clips ID,ID]
                                   [--json FILE] [-- DAEMON FLAGS...]

Starts `python -m streamer --model base` (port 0, loopback), replays each `multilingual` clip with
`python -m clients.replay` at `--speed` (1: real time, as the bars assume; up to 4 for a smoke
run) and reports per clip the `language` messages, the final one, when the first came (audio
seconds sent, and seconds since the first frame), and the streaming error of the stable text
(CER for zh/ja/ko, WER otherwise; `benchmarks.wer.error_rate`) beside the offline CLI's
(`model.transcribe`, long-form, language detected) on the same clip in the same run. Then:

- a stream of the es, de and fr clips in a row with 2 s pauses: each part's stable text must
  be in its own language (the `language` of its stable messages) and not empty;
- `--languages`: the es clip with `pt,it` (neither is spoken) and the de clip with `de,en`:
  no `language` or stable message may name a language outside the set.

Bars (exit 1 when one fails): every clip announces its reference language first and last;
mean streaming error <= offline + 5 points; the sequence and `--languages` checks pass.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.daemon import Daemon
from benchmarks.data import DATA_DIR, Clip, load_manifest
from benchmarks.wer import error_rate

ERROR_MARGIN_POINTS = 5.0
SEQUENCE = ("es", "de", "fr")
SEQUENCE_PAUSE = 2.0  # s of silence between the parts
RESTRICTED = (("es", ("pt", "it")), ("de", ("de", "en")))  # (clip language, languages given)


@dataclass(frozen=True)
class Event:
    t: float  # seconds since the first audio frame was sent
    sent: float  # seconds of audio sent by then
    msg: dict


@dataclass(frozen=True)
class ClipResult:
    clip: str
    language: str
    announced: tuple[str, ...]  # every `language` message, in order
    decided_audio: float  # audio seconds sent when the first `language` came (nan: none)
    decided_wall: float  # seconds since the first frame when it came
    streaming_error: float
    offline_error: float
    offline_language: str
    stable_text: str
    offline_text: str

    @property
    def final(self) -> str | None:
        return self.announced[-1] if self.announced else None


@dataclass(frozen=True)
class PartResult:
    language: str
    stable_languages: tuple[str, ...]
    error: float
    text: str


@dataclass(frozen=True)
class RestrictedResult:
    clip: str
    languages: tuple[str, ...]
    named: tuple[str, ...]  # languages of every `language` and stable message


@dataclass(frozen=True)
class Report:
    model: str
    clips: tuple[ClipResult, ...]
    streaming_error: float
    offline_error: float
    sequence: tuple[PartResult, ...]
    restricted: tuple[RestrictedResult, ...]
    passed: dict[str, bool]


def replay(url: str, path: Path, name: str, speed: float, workdir: Path, languages: tuple[str, ...] = ()) -> list[Event]:
    events_file = workdir / f"{name}.jsonl"
    command = [sys.executable, "-m", "clients.replay", str(path), "--url", url, "--speed", str(speed), "--events", str(events_file)]
    if languages:
        command += ["--languages", ",".join(languages)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"replay of {name} failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return [Event(float(e["t"]), float(e["sent"]), e["msg"]) for e in map(json.loads, events_file.read_text().splitlines())]


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.msg.get("type") == kind]


def offline(model_name: str, clips: list[Clip]) -> dict[str, tuple[str, str]]:
    """The offline CLI's long-form transcript and detected language of each clip."""
    import torch

    from model.audio import load_audio
    from model.transcribe import transcribe
    from model.weights import load_model

    torch.set_num_threads(2)
    model = load_model(model_name)
    results = {}
    for clip in clips:
        transcript = transcribe(model, load_audio(clip.path))
        results[clip.id] = (transcript.text, transcript.language)
    return results


def score_clip(clip: Clip, events: list[Event], offline_result: tuple[str, str]) -> ClipResult:
    languages = of_type(events, "language")
    stable_text = "".join(e.msg["text"] for e in of_type(events, "stable"))
    offline_text, offline_language = offline_result
    first = languages[0] if languages else None
    return ClipResult(
        clip=clip.id,
        language=clip.language,
        announced=tuple(e.msg["language"] for e in languages),
        decided_audio=first.sent if first else float("nan"),
        decided_wall=first.t if first else float("nan"),
        streaming_error=error_rate(clip.language, [clip.text], [stable_text]),
        offline_error=error_rate(clip.language, [clip.text], [offline_text]),
        offline_language=offline_language,
        stable_text=stable_text,
        offline_text=offline_text,
    )


def write_sequence(parts: list[Clip], path: Path) -> list[tuple[float, float]]:
    """The parts one after another with `SEQUENCE_PAUSE` s of silence between, as 16 kHz WAV;
    returns each part's (start, end) in it."""
    from model.audio import SAMPLE_RATE, load_audio

    pieces: list[np.ndarray] = []
    spans = []
    position = 0.0
    for i, part in enumerate(parts):
        if i:
            pieces.append(np.zeros(int(SEQUENCE_PAUSE * SAMPLE_RATE), np.float32))
            position += SEQUENCE_PAUSE
        audio = load_audio(part.path)
        spans.append((position, position + len(audio) / SAMPLE_RATE))
        pieces.append(audio)
        position += len(audio) / SAMPLE_RATE
    pcm = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return spans


def score_sequence(parts: list[Clip], spans: list[tuple[float, float]], events: list[Event]) -> list[PartResult]:
    """Each part's stable messages: those whose words start inside its span (or the pause after it)."""
    stables = of_type(events, "stable")
    results = []
    for k, (part, (start, _)) in enumerate(zip(parts, spans, strict=True)):
        until = spans[k + 1][0] if k + 1 < len(spans) else float("inf")
        mine = [e.msg for e in stables if start - 0.5 <= e.msg["start"] < until - 0.3]
        text = "".join(m["text"] for m in mine)
        results.append(PartResult(part.language, tuple(m["language"] for m in mine), error_rate(part.language, [part.text], [text]), text))
    return results


def restricted_named(events: list[Event]) -> tuple[str, ...]:
    return tuple(e.msg["language"] for e in events if e.msg.get("type") in ("language", "stable"))


def run(model: str, speed: float, clips: list[Clip], daemon_args: list[str], workdir: Path) -> Report:
    by_language = {c.language: c for c in clips}
    offline_results = offline(model, clips)
    daemon = Daemon("--config", "config.toml", *daemon_args, model=model)
    try:
        results = [score_clip(c, replay(daemon.url, c.path, c.id, speed, workdir), offline_results[c.id]) for c in clips]
        parts = [by_language[code] for code in SEQUENCE if code in by_language]
        sequence: list[PartResult] = []
        if len(parts) > 1:
            joined = workdir / "sequence_es_de_fr.wav"
            spans = write_sequence(parts, joined)
            sequence = score_sequence(parts, spans, replay(daemon.url, joined, "sequence", speed, workdir))
        restricted = [
            RestrictedResult(by_language[code].id, given, restricted_named(replay(daemon.url, by_language[code].path, f"restricted_{code}", speed, workdir, given)))
            for code, given in RESTRICTED
            if code in by_language
        ]
    finally:
        daemon.stop()
    return summarize(model, results, sequence, restricted)


def summarize(model: str, results: list[ClipResult], sequence: list[PartResult], restricted: list[RestrictedResult]) -> Report:
    streaming = float(np.mean([r.streaming_error for r in results]))
    offline_mean = float(np.mean([r.offline_error for r in results]))
    passed = {
        "announced_reference_language": all(r.announced[:1] == (r.language,) for r in results),
        "final_language_right": all(r.final == r.language for r in results),
        "error_within_margin": streaming * 100 <= offline_mean * 100 + ERROR_MARGIN_POINTS,
    }
    # Checks that need the es, de or fr clip are left out when `--clips` has none of them.
    if sequence:
        passed["sequence_parts_in_own_language"] = all(bool(p.text.strip()) and set(p.stable_languages) == {p.language} for p in sequence)
    if restricted:
        passed["languages_set_respected"] = all(bool(r.named) and set(r.named) <= set(r.languages) for r in restricted)
    return Report(model, tuple(results), streaming, offline_mean, tuple(sequence), tuple(restricted), passed)


def print_report(report: Report) -> None:
    print(f"model {report.model}")
    print(f"{'clip':<16} {'ref':>3} {'announced':<12} {'final':>5} {'decided (audio s / wall s)':>26} {'stream':>7} {'offline':>7} (CER zh/ja/ko, else WER)")
    for r in report.clips:
        announced = ",".join(r.announced) or "-"
        print(f"{r.clip:<16} {r.language:>3} {announced:<12} {r.final or '-':>5} {r.decided_audio:>13.2f} / {r.decided_wall:>6.2f} {r.streaming_error:>7.1%} {r.offline_error:>7.1%}")
        print(f"{'':<16} stream:  {r.stable_text.strip()}")
        print(f"{'':<16} offline: {r.offline_text.strip()} [{r.offline_language}]")
    print(f"mean error: streaming {report.streaming_error:.1%}, offline {report.offline_error:.1%} (bar: within {ERROR_MARGIN_POINTS:.0f} points)")
    for p in report.sequence:
        print(f"sequence part {p.language}: stable languages {sorted(set(p.stable_languages))}, error {p.error:.1%}: {p.text.strip()}")
    for given in report.restricted:
        print(f"languages {','.join(given.languages)} on {given.clip}: named {sorted(set(given.named))}")
    for name, ok in report.passed.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}")


def select_clips(manifest: Path | None, ids: str | None) -> list[Clip]:
    clips = [c for c in load_manifest(manifest.parent if manifest is not None else DATA_DIR) if c.kind == "multilingual"]
    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        unknown = set(wanted) - {c.id for c in clips}
        if unknown:
            raise SystemExit(f"unknown multilingual clip(s): {', '.join(sorted(unknown))}")
        clips = [c for c in clips if c.id in wanted]
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", help="a multilingual model (default base)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay pace: 1 real time (the bars), up to 4 for a smoke run")
    parser.add_argument("--manifest", type=Path, default=None, help="manifest.jsonl of the clips (default ../shared/data)")
    parser.add_argument("--clips", default=None, help="comma-separated clip ids (default: every multilingual clip)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the replays' event files in this folder")
    parser.add_argument("daemon_args", nargs="*", help="extra daemon flags, after --")
    args = parser.parse_args(argv)
    clips = select_clips(args.manifest, args.clips)
    with tempfile.TemporaryDirectory(prefix="bench-lang-") as tmp:
        workdir = args.keep if args.keep is not None else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run(args.model, args.speed, clips, args.daemon_args, workdir)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0 if all(report.passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
