"""`python -m clients.replay AUDIO --url ws://HOST:PORT/v1/stream [options]`: stream a file as if live.

The file is sent at real-time pace (`--speed N` for N times faster, `--speed 0` for as fast as
possible) in `--frame-ms` frames, captions are printed as they come, `stop` is sent at the end
and the client exits after `end`. `--events FILE` logs every server message with its timing
(see `clients.event_log`), which is what the streaming benchmark reads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .audio_file import AudioClip, read_audio
from .cli import add_connection_arguments, connect_options, run_client
from .connection import ConnectOptions, ResumingStream
from .display import CaptionDisplay, caption_handler, resume_notice
from .event_log import EventLog
from .pacing import PacingOptions, paced_frames
from .protocol import Received, StartOptions
from .writers import TranscriptFormat, TranscriptWriter


@dataclass(frozen=True)
class ReplayOptions:
    audio: Path
    connect: ConnectOptions
    pacing: PacingOptions
    language: str = "auto"
    task: str = "transcribe"
    events: Path | None = None
    output: Path | None = None
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.output is not None:
            TranscriptFormat.from_path(self.output)  # an unknown suffix fails before any audio is sent


async def replay(options: ReplayOptions, clip: AudioClip, display: CaptionDisplay) -> str:
    """Stream `clip` through one session; returns the transcript (stable text)."""
    start = StartOptions(sample_rate=clip.sample_rate, channels=clip.channels, language=options.language, task=options.task, languages=options.languages)
    writer = TranscriptWriter(options.output) if options.output is not None else None
    events = EventLog(options.events, clip.sample_rate) if options.events is not None else None
    show = caption_handler(display, writer)

    def on_message(received: Received) -> None:
        if events is not None:
            events.message(received.body)
        show(received)

    def on_sent(samples: int) -> None:
        if events is not None:
            events.audio_sent(samples)

    stream = ResumingStream(options.connect, start, on_message, on_resume=resume_notice(display), on_sent=on_sent)
    try:
        await stream.run(paced_frames(clip, options.pacing))
    finally:
        display.close()
        if events is not None:
            events.close()
        await stream.close()
    return stream.transcript()


def parse_args(argv: list[str] | None) -> ReplayOptions:
    parser = argparse.ArgumentParser(prog="python -m clients.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", type=Path, help="audio file: WAV, or anything ffmpeg reads")
    add_connection_arguments(parser)
    parser.add_argument("--speed", type=float, default=1.0, help="pace: 1 real time (default), N times faster, 0 unpaced")
    parser.add_argument("--frame-ms", type=int, default=40, help="audio frame length, 20..100 ms (default 40)")
    parser.add_argument("--events", type=Path, help="write one JSON line per server message here")
    parser.add_argument("--output", type=Path, help="transcript file, written as stable segments arrive: .srt .vtt .json .txt")
    args = parser.parse_args(argv)
    try:
        return ReplayOptions(args.audio, connect_options(args), PacingOptions(args.frame_ms, args.speed), args.language, args.task, args.events, args.output, args.languages)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this only tells type checkers so


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)

    async def run() -> int:
        await replay(options, read_audio(options.audio), CaptionDisplay(sys.stdout))
        return 0

    return run_client("replay", run())


if __name__ == "__main__":
    sys.exit(main())
