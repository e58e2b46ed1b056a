"""Text the ``hueyard`` commands print: what a terminal would act on is shown, not sent."""

from __future__ import annotations

import io
import sys

import pytest

from framework.textgrid import one_line, printable, printable_output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),  # an escape sequence: clear the screen
        ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),  # OSC 52: the clipboard
        ("\x9b31m", "\\x9b31m"),  # C1 control sequence introducer
        ("ok\rFAILED", "ok\\rFAILED"),  # a carriage return writing over the line
        ("a\x00b\x08c\x7f", "a\\x00b\\x08c\\x7f"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),  # right-to-left override
        ("\u2066x\u2069", "\\u2066x\\u2069"),
    ],
)
def test_what_a_terminal_acts_on_is_shown_as_an_escape(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_newlines_tabs_and_any_script_are_kept() -> None:
    text = "line 1\n\tline 2: Grüße, 你好, مرحبا, 🚀"
    assert printable(text) == text


def test_printable_output_filters_stdout_and_stderr_and_puts_them_back() -> None:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with printable_output():
            print("payload \x1b[31m")
            print("error \x07", file=sys.stderr)
        assert (sys.stdout, sys.stderr) == (out, err)
    finally:
        sys.stdout, sys.stderr = saved
    assert out.getvalue() == "payload \\x1b[31m\n"
    assert err.getvalue() == "error \\x07\n"


def test_one_line_also_shows_line_breaks_and_tabs() -> None:
    text = "boom\nERROR forged\r\x1b[2J\tend\u2028"
    assert one_line(text) == "boom\\nERROR forged\\r\\x1b[2J\\tend\\u2028"
