"""`python -m clients.mic [--device N|NAME] [--url …] [--output transcript.srt]`: live captions of a microphone.

Captures at the device's native rate (the server resamples), shows partials rewritten in place
and stable lines kept, and writes `--output` as stable segments arrive. Ctrl-C (or
`--duration S`) stops cleanly: pending text is finalised and written before the client exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from captions.writers import TranscriptFormat, TranscriptWriter
from wire import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, Start

from .audio_file import AudioInputError
from .cli import add_connection_arguments, connect_options, run_client
from .connection import ConnectOptions, ResumingStream
from .display import CaptionDisplay, caption_handler, resume_notice
from .pacing import MAX_FRAME_MS, MIN_FRAME_MS
from .start_flags import add_start_arguments, start_from_args


@dataclass(frozen=True)
class MicOptions:
    connect: ConnectOptions
    device: int | str | None = None
    start: Start = field(default_factory=Start)  # the stream's settings; the device gives its rate
    frame_ms: int = 40
    duration_s: float | None = None  # None: until Ctrl-C
    output: Path | None = None

    def __post_init__(self) -> None:
        if not MIN_FRAME_MS <= self.frame_ms <= MAX_FRAME_MS:
            raise ValueError(f"frame_ms must be {MIN_FRAME_MS}..{MAX_FRAME_MS}, got {self.frame_ms}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.output is not None:
            TranscriptFormat.from_path(self.output)


class AudioDeviceError(AudioInputError):
    """No PortAudio, or the capture device named cannot be opened."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the Python module is there but the PortAudio library is not
        raise AudioDeviceError(f"{exc} (Debian: apt-get install libportaudio2)") from exc
    return sounddevice


class MicFrames:
    """PortAudio's blocks as an async iterator of PCM frames.

    `callback` runs on PortAudio's thread: it copies the block and hands it to the event loop
    with `call_soon_threadsafe`, nothing else (no locks, no waiting), so capture never stalls.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, bytes_per_sample: int, max_samples: int | None = None) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._bytes_per_sample = bytes_per_sample
        self._remaining = max_samples
        self.overflows = 0

    def callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        block = bytes(indata)  # PortAudio reuses the buffer once the callback returns
        self._loop.call_soon_threadsafe(self._queue.put_nowait, block)
        if status and status.input_overflow:
            self._loop.call_soon_threadsafe(self._count_overflow)

    def _count_overflow(self) -> None:
        self.overflows += 1

    def stop(self) -> None:
        """End the frames (from the event loop's thread): Ctrl-C, or the duration reached."""
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (block := await self._queue.get()) is not None:
            if self._remaining is not None:
                block = block[: self._remaining * self._bytes_per_sample]
                self._remaining -= len(block) // self._bytes_per_sample
            if block:
                yield block
            if self._remaining == 0:
                return


def input_devices() -> list[tuple[int, str, int]]:
    """(index, name, native rate) of every capture device."""
    return [
        (i, d["name"], int(d["default_samplerate"]))
        for i, d in enumerate(_sounddevice().query_devices())
        if d["max_input_channels"] > 0
    ]


def _device_rate(device: int | str | None) -> int:
    sounddevice = _sounddevice()
    try:
        rate = int(sounddevice.query_devices(device, "input")["default_samplerate"])
    except (ValueError, sounddevice.PortAudioError) as exc:  # no such device, or no input on it
        raise AudioDeviceError(f"capture device {device!r}: {exc}") from exc
    # A device outside the protocol's range is opened at the nearest rate PortAudio can convert to.
    return min(max(rate, MIN_SAMPLE_RATE), MAX_SAMPLE_RATE)


async def capture(options: MicOptions, display: CaptionDisplay) -> str:
    """Caption the microphone until stopped; returns the transcript."""
    sounddevice = _sounddevice()
    rate = _device_rate(options.device)
    start = replace(options.start, sample_rate=rate, channels=1)
    writer = TranscriptWriter(options.output) if options.output is not None else None
    loop = asyncio.get_running_loop()
    frames = MicFrames(loop, start.bytes_per_frame, round(options.duration_s * rate) if options.duration_s else None)
    session = ResumingStream(options.connect, start, caption_handler(display, writer), on_resume=resume_notice(display))
    await session.open()  # a refused `start` fails before the device is opened
    try:
        try:
            stream = sounddevice.RawInputStream(
                samplerate=rate, blocksize=rate * options.frame_ms // 1000, device=options.device, channels=1, dtype="int16", callback=frames.callback
            )
        except sounddevice.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open capture device {options.device!r}: {exc}") from exc

        def interrupted() -> None:
            # The first Ctrl-C finishes cleanly (pending text is finalised); a second one aborts.
            frames.stop()
            loop.remove_signal_handler(signal.SIGINT)

        loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            with stream:
                display.notice(f"capturing from {sounddevice.query_devices(stream.device)['name']} at {rate} Hz")
                await session.run(aiter(frames))
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    finally:
        display.close()
        await session.close()
    if frames.overflows:
        print(f"mic: {frames.overflows} input overflows (audio was dropped by the device)", file=sys.stderr)
    return session.transcript()


def _device_argument(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients.mic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list-devices", action="store_true", help="list capture devices and exit")
    parser.add_argument("--device", type=_device_argument, help="capture device: index or (part of a) name")
    add_connection_arguments(parser)
    add_start_arguments(parser)
    parser.add_argument("--frame-ms", type=int, default=40, help="audio frame length, 20..100 ms (default 40)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--output", type=Path, help="transcript file, written as stable segments arrive: .srt .vtt .json .txt")
    return parser


def options_from(args: argparse.Namespace) -> MicOptions:
    """The options the arguments ask for; ValueError for a bad one."""
    return MicOptions(connect_options(args), args.device, start_from_args(args), args.frame_ms, args.duration, args.output)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.list_devices:
        for index, name, rate in input_devices():
            print(f"{index:3d}  {name}  ({rate} Hz)")
        return 0
    try:
        options = options_from(args)
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> int:
        await capture(options, CaptionDisplay(sys.stdout))
        return 0

    return run_client("mic", run())


if __name__ == "__main__":
    sys.exit(main())
