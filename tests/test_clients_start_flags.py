"""Every `start` field the daemon reads can be set from each command-line client: flags parsed
only (no audio, no network), the `start` frame the client would send read by the daemon's parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from clients import meeting, mic, replay
from clients.protocol import ClientProtocol
from streamer.protocol import SessionProtocol
from tests.test_wire import NON_DEFAULT
from wire import Framing, Start

FLAG_NAMES = {"events": "--subscribe"}  # replay's --events is its event log
# Not flags, each with where the client takes it from; a new field of `Start` is a flag unless listed here.
NOT_FLAGS = {
    "sample_rate": "the audio source",
    "channels": "the audio source",
    "encoding": "the audio source (16-bit PCM from every client)",
    "resume": "ResumingStream, on a reconnect (tests/test_wire.py sends it through the library)",
}
# Each client: its positional arguments, and the audio format it sets on its `start` (a 44.1 kHz
# stereo file for replay; mono at the device's rate for mic; a mono stream per file for meeting).
CLIENTS: dict[str, tuple[ModuleType, list[str], dict[str, Any]]] = {
    "replay": (replay, ["talk.wav"], {"sample_rate": 44100, "channels": 2}),
    "mic": (mic, [], {"sample_rate": 48000, "channels": 1}),
    "meeting": (meeting, ["alice.wav", "bob.wav"], {"sample_rate": 22050, "channels": 1}),
}


def flag(name: str, value: Any) -> list[str]:
    option = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    if isinstance(value, bool):
        return [option if value else "--no-" + option.removeprefix("--")]
    return [option, ",".join(value) if isinstance(value, tuple) else str(value)]


def parsed_start(client: str, argv: list[str]) -> Start:
    module, positional, _ = CLIENTS[client]
    parser: argparse.ArgumentParser = module.argument_parser()
    options_from: Callable[[argparse.Namespace], Any] = module.options_from
    return options_from(parser.parse_args(positional + argv)).start


def daemon_reads(start: Start, framing: Framing) -> Start:
    """The daemon's `Start` from the frame a client built on `start` sends."""
    message = SessionProtocol(max_frame_bytes=1 << 16).receive(ClientProtocol(start, framing).start())
    assert isinstance(message, Start)
    return message


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("framing", list(Framing))
def test_every_start_field_set_on_the_command_line_reaches_the_daemon(client: str, framing: Framing) -> None:
    """A field that is no flag fails here (an unknown argument), as does one the daemon does not read."""
    settings = {name: value for name, value in NON_DEFAULT.items() if name not in NOT_FLAGS}
    argv = [word for name, value in settings.items() for word in flag(name, value)]
    source = CLIENTS[client][2]
    asked = parsed_start(client, argv)
    assert asked == Start(**settings)
    # What the client sends once it knows its audio: the format from the source, the rest from the flags.
    assert daemon_reads(replace(asked, **source), framing) == Start(**settings, **source)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_without_flags_the_defaults_are_sent(client: str) -> None:
    assert parsed_start(client, []) == Start()


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_bad_setting_is_an_argument_error(client: str, capsys: pytest.CaptureFixture[str]) -> None:
    module, positional, _ = CLIENTS[client]
    for bad in (["--task", "summarise"], ["--endpoint-silence", "20"], ["--subscribe", "words"], ["--language", ""]):
        with pytest.raises(SystemExit) as exited:
            module.main(positional + bad)
        assert exited.value.code == 2, bad
        assert "error:" in capsys.readouterr().err
