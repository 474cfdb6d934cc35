"""eie.common.progress: the one progress-bar rule (stderr, on a terminal only, never with
--no-progress, leave=False), and the places that use it."""

from __future__ import annotations

import io
import sys

import pytest

from eie.common.progress import progress_bar


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal and keeps what is written to it."""

    def isatty(self):
        return True


def test_nothing_is_drawn_into_a_file_or_pipe(capsys):
    assert not sys.stderr.isatty()              # pytest's capture
    bar = progress_bar(3, desc="not on a terminal", unit="step")
    assert bar.disable is True
    assert bar.leave is False
    for _ in range(3):
        bar.update(1)
    bar.close()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_drawn_on_a_terminal_on_stderr(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(3, desc="on a terminal", unit="step")
    assert not bar.disable                      # None: tqdm found a terminal
    assert bar.leave is False
    bar.update(3)
    bar.close()
    out = term.getvalue()
    assert "on a terminal" in out and "/3 " in out
    assert out.endswith(" \r")                   # leave=False: the line is cleared at the end


def test_never_drawn_when_not_enabled_even_on_a_terminal(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(3, desc="--no-progress", unit="step", enabled=False)
    assert bar.disable is True
    bar.update(3)
    bar.close()
    assert term.getvalue() == ""


def test_iterable_and_tqdm_options_pass_through(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(desc="bytes", unit="B", iterable=range(4), unit_scale=True)
    assert bar.unit == "B" and bar.unit_scale is True and bar.total == 4
    assert list(bar) == [0, 1, 2, 3]
    # a disabled bar still yields the items
    assert list(progress_bar(desc="off", unit="x", iterable="ab", enabled=False)) == ["a", "b"]
    # the rule's own settings cannot be overridden
    for kw in ({"file": sys.stdout}, {"disable": False}, {"leave": True}):
        with pytest.raises(TypeError):
            progress_bar(1, desc="x", unit="x", **kw)


def test_board_loading_bar_not_drawn_into_a_file_or_pipe(capsys, monkeypatch):
    """``eie board run``'s bar over the image bytes (host.run_eie/run_bnn with progress=True)
    drew into stderr whatever it was; it now follows the rule too."""
    from eie.app.host import _Bar

    bar = _Bar(1024, "loading image", True)
    bar(512)
    bar(512)
    bar.close()
    assert capsys.readouterr().err == ""

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = _Bar(1024, "loading image", True)
    bar(1024)
    bar.close()
    assert "loading image" in term.getvalue()
    term2 = _Terminal()
    monkeypatch.setattr(sys, "stderr", term2)
    bar = _Bar(1024, "loading image", False)
    bar(1024)
    bar.close()
    assert term2.getvalue() == ""
