"""`python -m clients.meeting A.wav B.wav … [--names Alice,Bob] [--url …] [--output merged.srt] [--speed N]`.

One stream per participant (one file each, or one multi-channel file with a participant per
channel), all running at once and paced on one clock, merged into one transcript ordered by
time with speaker labels, written to `--output` as segments arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from captions.writers import TranscriptFormat, TranscriptWriter
from wire import Stable, Start, WordTiming

from .audio_file import AudioClip, read_audio
from .cli import add_connection_arguments, connect_options, run_client
from .connection import ConnectOptions, ResumingStream
from .display import CaptionDisplay, caption_handler, resume_notice
from .pacing import PacingOptions, paced_frames
from .protocol import Received
from .start_flags import add_start_arguments, start_from_args


@dataclass(frozen=True)
class Participant:
    name: str
    audio: AudioClip  # mono


@dataclass(frozen=True)
class SpeakerSegment:
    """A stable segment of one participant, on the meeting's common timeline."""

    speaker: str
    start: float
    end: float
    text: str
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class MeetingOptions:
    connect: ConnectOptions
    pacing: PacingOptions
    start: Start = field(default_factory=Start)  # every participant's stream's settings; each file gives its rate
    output: Path | None = None

    def __post_init__(self) -> None:
        if self.output is not None:
            TranscriptFormat.from_path(self.output)


def participants_from(paths: Sequence[Path], names: Sequence[str]) -> list[Participant]:
    """One participant per file, or per channel of a single multi-channel file."""
    clips = [read_audio(p) for p in paths]
    if len(clips) == 1 and clips[0].channels > 1:
        clips = [clips[0].channel(i) for i in range(clips[0].channels)]
    else:
        clips = [c if c.channels == 1 else c.channel(0) for c in clips]  # one voice per file: its first channel
    if names and len(names) != len(clips):
        raise ValueError(f"{len(names)} names for {len(clips)} participants")
    labels = list(names) or [f"Speaker {i + 1}" for i in range(len(clips))]
    return [Participant(name, clip) for name, clip in zip(labels, clips, strict=True)]


class MeetingTranscript:
    """Stable segments of all participants, kept in time order (and on disk, when writing)."""

    def __init__(self, writer: TranscriptWriter | None) -> None:
        self._writer = writer
        self._segments: list[SpeakerSegment] = []

    def add(self, speaker: str, stable: Stable) -> None:
        segment = SpeakerSegment(speaker, stable.start, stable.end, stable.text, stable.words)
        self._segments.append(segment)
        self._segments.sort(key=lambda s: s.start)
        if self._writer is not None:
            self._writer.add(segment)

    @property
    def segments(self) -> tuple[SpeakerSegment, ...]:
        return tuple(self._segments)


def _keeping(show: Callable[[Received], None], transcript: MeetingTranscript, speaker: str) -> Callable[[Received], None]:
    """Shows a participant's messages and adds their stable segments to the meeting's transcript."""

    def on_message(received: Received) -> None:
        show(received)
        if isinstance(received.message, Stable):
            transcript.add(speaker, received.message)

    return on_message


async def meeting(participants: Sequence[Participant], options: MeetingOptions, display: CaptionDisplay) -> MeetingTranscript:
    transcript = MeetingTranscript(TranscriptWriter(options.output) if options.output is not None else None)
    sessions: list[ResumingStream] = []
    try:
        for p in participants:
            start = replace(options.start, sample_rate=p.audio.sample_rate, channels=1)
            show = caption_handler(display, None, p.name)
            session = ResumingStream(options.connect, start, _keeping(show, transcript, p.name), on_resume=resume_notice(display, p.name))
            sessions.append(session)
            await session.open()
        began = time.monotonic()  # one clock for all, so the streams stay in step
        async with asyncio.TaskGroup() as group:
            for participant, session in zip(participants, sessions, strict=True):
                group.create_task(session.run(paced_frames(participant.audio, options.pacing, began)))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from failed
    finally:
        display.close()
        for session in sessions:
            await session.close()
    return transcript


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients.meeting", description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", type=Path, nargs="+", help="one file per participant, or one multi-channel file")
    parser.add_argument("--names", default="", help="comma-separated participant names, in file (or channel) order")
    add_connection_arguments(parser)
    add_start_arguments(parser)
    parser.add_argument("--speed", type=float, default=1.0, help="pace: 1 real time (default), N times faster, 0 unpaced")
    parser.add_argument("--frame-ms", type=int, default=40, help="audio frame length, 20..100 ms (default 40)")
    parser.add_argument("--output", type=Path, help="merged transcript, written as it goes: .srt .vtt .json .txt")
    return parser


def options_from(args: argparse.Namespace) -> MeetingOptions:
    """The options the arguments ask for (the files and names apart); ValueError for a bad one."""
    return MeetingOptions(connect_options(args), PacingOptions(args.frame_ms, args.speed), start_from_args(args), args.output)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    names = [n.strip() for n in args.names.split(",") if n.strip()]

    async def run() -> int:
        try:
            participants = participants_from(args.audio, names)
        except ValueError as exc:
            parser.error(str(exc))
        await meeting(participants, options, CaptionDisplay(sys.stdout))
        return 0

    return run_client("meeting", run())


if __name__ == "__main__":
    sys.exit(main())
