"""Every setting of `start` as a flag of the command-line clients, derived from the schema's `Start`.

A field added to `Start` is a flag of `clients.replay`, `clients.mic` and `clients.meeting` at
once, named and typed after it; only the fields a client takes from elsewhere are not flags.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import Field, fields
from typing import Any

from wire import ENDPOINT_SILENCE, EVENTS, TASKS, Start

# Not flags: the audio's format, which each client takes from its source, and `resume`, which
# `ResumingStream` sets when it reconnects.
NOT_FLAGS = frozenset({"sample_rate", "encoding", "channels", "resume"})
FLAG_NAMES = {"events": "--subscribe"}  # replay's --events is its event log
HELP = {
    "language": "language code, or 'auto' (default)",
    "task": f"{' or '.join(TASKS)} (to English); default transcribe",
    "word_timestamps": "word timings in partial and stable messages",
    "languages": "with --language auto, detect only among these: es,en",
    "events": f"extra events to receive, comma-separated: {','.join(EVENTS)}",
    "prompt": "initial context for the decoder: names and terms it should spell as given",
    "commit_policy": "when words become stable: local-agreement or alignatt (default: the daemon's)",
    "hold_sentence_end": "the full stop ending an utterance's stable text waits for what follows (default: on)",
    "endpoint_silence": f"seconds of silence that end an utterance, {ENDPOINT_SILENCE[0]:g}..{ENDPOINT_SILENCE[1]:g} (default: the daemon's)",
}


def flag_fields() -> list[Field[Any]]:
    """The fields of `Start` that are flags."""
    return [spec for spec in fields(Start) if spec.name not in NOT_FLAGS]


def add_start_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag per setting of `start`, each defaulting to the schema's default."""
    group = parser.add_argument_group("stream settings", "the `start` message (docs/protocol.md)")
    hints = typing.get_type_hints(Start)
    for spec in flag_fields():
        flag = FLAG_NAMES.get(spec.name, "--" + spec.name.replace("_", "-"))
        group.add_argument(flag, dest=_dest(spec.name), default=spec.default, help=HELP.get(spec.name), **_parsing(hints[spec.name]))


def start_from_args(args: argparse.Namespace) -> Start:
    """The `Start` the flags ask for (a bad setting raises `ProtocolError`, a ValueError); the
    client sets the audio's format on it once it knows its source."""
    return Start(**{spec.name: getattr(args, _dest(spec.name)) for spec in flag_fields()})


def comma_list(text: str) -> tuple[str, ...]:
    """A comma-separated list ("es, en")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parsing(hint: Any) -> dict[str, Any]:
    """How argparse reads a field of type `hint`; a type it cannot read fails every client at once."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint == tuple[str, ...]:
        return {"type": comma_list, "metavar": "A,B"}
    if hint == float | None:
        return {"type": float}
    if hint in (str, int, float):
        return {"type": hint}
    raise TypeError(f"no command-line flag reads a `start` field of type {hint}")


def _dest(name: str) -> str:
    return f"start_{name}"  # apart from each client's own arguments (replay's `events` is its log file)
