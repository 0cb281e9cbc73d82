"""Terminal captions: the partial is rewritten in place on a terminal, only stable lines elsewhere."""

from __future__ import annotations

import io

from clients.display import CaptionDisplay

CLEAR = "\r\x1b[2K"


def test_terminal_rewrites_the_partial_and_keeps_stable_lines() -> None:
    out = io.StringIO()
    display = CaptionDisplay(out, interactive=True)
    display.partial(" Hello")
    display.partial(" Hello wor")
    display.stable(" Hello world.")
    display.partial(" Next", speaker="Bob")
    display.close()
    text = out.getvalue()
    # Every partial redraw starts by clearing the row; stable text ends with a newline and is kept.
    assert text.count(CLEAR) == 5
    assert "Hello world.\n" in text
    assert text.split("Hello world.\n")[1].startswith(CLEAR) and "Bob: Next" in text
    # What a terminal shows at the end: the stable line, and an empty row where the partial was.
    screen = [row.split(CLEAR)[-1] for row in text.split("\n")]
    assert screen == ["Hello world.", ""]


def test_pipe_gets_stable_lines_only() -> None:
    out = io.StringIO()
    display = CaptionDisplay(out, interactive=False)
    display.partial(" Hello")
    display.stable(" Hello world.", speaker="Ann")
    display.notice("language en (99%)")
    display.close()
    assert out.getvalue() == "Ann: Hello world.\n[language en (99%)]\n"
