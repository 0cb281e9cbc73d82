"""Live captions in a terminal: stable lines are printed and kept, the partial is rewritten in place.

Off a terminal (a pipe, a file) only stable lines are printed: partials would be noise there.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from captions.writers import TranscriptWriter, line_text
from wire import ErrorMessage, LanguageDetected, Partial, Stable

from .connection import Resumed
from .protocol import Received

_CLEAR_LINE = "\r\x1b[2K"
_DIM_ITALIC, _RESET = "\x1b[2;3m", "\x1b[0m"


class CaptionDisplay:
    def __init__(self, out: TextIO = sys.stdout, interactive: bool | None = None) -> None:
        self._out = out
        self._interactive = out.isatty() if interactive is None else interactive
        self._partial = ""

    def partial(self, text: str, speaker: str | None = None) -> None:
        self._partial = _labelled(text.strip(), speaker) if text.strip() else ""
        if self._interactive:
            self._draw_partial()

    def stable(self, text: str, speaker: str | None = None) -> None:
        text = line_text(text)
        if not text:
            return
        if self._interactive:
            self._out.write(_CLEAR_LINE)
        self._out.write(_labelled(text, speaker) + "\n")
        self._partial = ""
        self._out.flush()

    def notice(self, text: str) -> None:
        """A status line (language, warnings) kept above the partial."""
        if self._interactive:
            self._out.write(_CLEAR_LINE)
        self._out.write(f"[{text}]\n")
        if self._interactive:
            self._draw_partial()
        self._out.flush()

    def close(self) -> None:
        if self._interactive and self._partial:
            self._out.write(_CLEAR_LINE)
        self._out.flush()

    def _draw_partial(self) -> None:
        # One terminal row only, so `\r` can rewrite it: show the newest words that fit.
        width = max(10, shutil.get_terminal_size().columns - 1)
        shown = self._partial if len(self._partial) <= width else "…" + self._partial[-(width - 1) :]
        self._out.write(_CLEAR_LINE + (f"{_DIM_ITALIC}{shown}{_RESET}" if shown else ""))
        self._out.flush()


def _labelled(text: str, speaker: str | None) -> str:
    return f"{speaker}: {text}" if speaker else text


def caption_handler(display: CaptionDisplay, writer: TranscriptWriter | None, speaker: str | None = None) -> Callable[[Received], None]:
    """What every live client does with a server message: show it, and keep stable segments."""

    def handle(received: Received) -> None:
        message = received.message
        if isinstance(message, Partial):
            display.partial(message.text, speaker)
        elif isinstance(message, Stable):
            display.stable(message.text, speaker)
            if writer is not None:
                writer.add(message)
        elif isinstance(message, LanguageDetected):
            display.notice(f"{speaker + ': ' if speaker else ''}language {message.language} ({message.probability:.0%})")
        elif isinstance(message, ErrorMessage) and not message.fatal:
            display.notice(f"warning {message.code}: {message.message}")

    return handle


def resume_notice(display: CaptionDisplay, speaker: str | None = None) -> Callable[[Resumed], None]:
    """Tells the user that the stream moved to a new connection (and how long text was held up)."""

    def notice(resumed: Resumed) -> None:
        who = f"{speaker}: " if speaker else ""
        display.notice(f"{who}connection lost (code {resumed.close_code}); resumed after {resumed.seconds:.1f} s, {resumed.replayed_seconds:.1f} s of audio sent again")

    return notice
