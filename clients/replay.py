"""`python -m clients.replay AUDIO --url ws://HOST:PORT/v1/stream [options]`: stream a file as if live.

The file is sent at real-time pace (`--speed N` for N times faster, `--speed 0` for as fast as
possible) in `--frame-ms` frames, captions are printed as they come, `stop` is sent at the end
and the client exits after `end`. `--events FILE` logs every server message with its timing
(see `clients.event_log`), which is what the streaming benchmark reads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from captions.writers import TranscriptFormat, TranscriptWriter
from wire import Start

from .audio_file import AudioClip, read_audio
from .cli import add_connection_arguments, connect_options, run_client
from .connection import ConnectOptions, ResumingStream
from .display import CaptionDisplay, caption_handler, resume_notice
from .event_log import EventLog
from .pacing import PacingOptions, paced_frames
from .protocol import Received
from .start_flags import add_start_arguments, start_from_args


@dataclass(frozen=True)
class ReplayOptions:
    audio: Path
    connect: ConnectOptions
    pacing: PacingOptions
    start: Start = field(default_factory=Start)  # the stream's settings; the clip gives its rate and channels
    events: Path | None = None
    output: Path | None = None

    def __post_init__(self) -> None:
        if self.output is not None:
            TranscriptFormat.from_path(self.output)  # an unknown suffix fails before any audio is sent


async def replay(options: ReplayOptions, clip: AudioClip, display: CaptionDisplay) -> str:
    """Stream `clip` through one session; returns the transcript (stable text)."""
    start = replace(options.start, sample_rate=clip.sample_rate, channels=clip.channels)
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


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", type=Path, help="audio file: WAV, or anything ffmpeg reads")
    add_connection_arguments(parser)
    add_start_arguments(parser)
    parser.add_argument("--speed", type=float, default=1.0, help="pace: 1 real time (default), N times faster, 0 unpaced")
    parser.add_argument("--frame-ms", type=int, default=40, help="audio frame length, 20..100 ms (default 40)")
    parser.add_argument("--events", type=Path, help="write one JSON line per server message here")
    parser.add_argument("--output", type=Path, help="transcript file, written as stable segments arrive: .srt .vtt .json .txt")
    return parser


def options_from(args: argparse.Namespace) -> ReplayOptions:
    """The options the arguments ask for; ValueError for a bad one."""
    return ReplayOptions(args.audio, connect_options(args), PacingOptions(args.frame_ms, args.speed), start_from_args(args), args.events, args.output)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> int:
        await replay(options, read_audio(options.audio), CaptionDisplay(sys.stdout))
        return 0

    return run_client("replay", run())


if __name__ == "__main__":
    sys.exit(main())
