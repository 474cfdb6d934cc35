"""Verilog export for simulators and synthesis.

Amaranth 0.5 has no ``python -m amaranth generate``; :func:`export_verilog` wraps
``amaranth.back.verilog.convert`` and prepends a ``timescale`` (cocotb needs one; Amaranth's
output has none) and a header naming the generator. The file is written atomically.
:func:`icarus_source` and :func:`verilator_source` adapt the text each simulator builds (the
exported file stays as it is).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..common.atomic import atomic_file

__all__ = ["export_verilog", "verilog_text", "compact_zero_init", "icarus_source",
           "verilator_source", "verilator_flags", "VERILATOR_PUBLIC", "VERILATOR_NO_INLINE",
           "VERILATOR_SHARED_FLAGS", "TIMESCALE"]

TIMESCALE = "`timescale 1ns/1ps"

# An `initial` block that sets words 0..n-1 of one memory, one line a word (Yosys' form).
_INIT_BLOCK = re.compile(r"^( *)initial begin\n((?:\1  [^\n]*\[\d+\] = [^\n]*;\n)+)\1end\n",
                         re.MULTILINE)
_INIT_LINE = re.compile(r"^ *(\S+|\\\S+ )\[(\d+)\] = (\d+)'([hdb])([0-9a-fA-F_]+);$")


def compact_zero_init(text: str) -> str:
    """Replace each all-zero memory initialisation (one line a word) by a ``for`` loop.

    Amaranth's Verilog initialises every memory word on its own line; for the EIE's large
    pointer and sparse-matrix memories that is millions of lines (80 MB of Verilog at 64 PEs),
    which simulators then compile. The loop sets the same words to the same zero, so simulation
    and synthesis semantics are unchanged. Blocks with any nonzero word are left as they are.
    """
    counter = 0

    def repl(m: re.Match) -> str:
        nonlocal counter
        indent, body = m.group(1), m.group(2)
        lines = body.splitlines()
        if len(lines) < 16:
            return m.group(0)
        names, width = set(), None
        for i, line in enumerate(lines):
            lm = _INIT_LINE.match(line)
            if lm is None or int(lm.group(2)) != i or int(lm.group(5).replace("_", ""), 16) != 0:
                return m.group(0)
            names.add(lm.group(1))
            width = lm.group(3)
        if len(names) != 1:
            return m.group(0)
        (name,) = names
        counter += 1
        var = f"eie_zero_init_{counter}"
        return (f"{indent}integer {var};\n"
                f"{indent}initial begin\n"
                f"{indent}  for ({var} = 0; {var} < {len(lines)}; {var} = {var} + 1)\n"
                f"{indent}    {name}[{var}] = {width}'h0;\n"
                f"{indent}end\n")

    return _INIT_BLOCK.sub(repl, text)


_DUMMY = re.compile(rb"^\s*reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;\s*$")


def icarus_source(text: bytes) -> bytes:
    """The Verilog for Icarus, with every combinational block evaluated once after time 0.

    Yosys's ``write_verilog`` (Amaranth's backend) writes combinational logic as ``always @*``
    blocks, each made sensitive to a dummy ``reg \\$auto$verilog_backend...$N = 0`` so that
    they run once at time 0. Icarus applies declaration initialisers without an event, so a
    block whose inputs never change afterwards (a layer-table field the host writes with its
    initial value 0, say) never runs and its output stays X for the whole run. This adds an
    ``initial #1`` that sets each dummy to 1 (it is read by nothing but those sensitivity
    lists), which runs every block once, 1 ns into reset. Verilator evaluates all logic and
    needs no change.
    """
    out = []
    for line in text.split(b"\n"):
        out.append(line)
        m = _DUMMY.match(line)
        if m:
            out.append(b"  initial #1 " + m.group(1) + b" = 1'h1;")
    return b"\n".join(out)


#: Verilator's metacomment that makes one declaration visible (readable and writable) through
#: the VPI, in every instance of its module.
VERILATOR_PUBLIC = b"/*verilator public_flat_rw*/"
#: The metacomment that keeps a module (the EIE's one PE) out of Verilator's inlining, so that
#: Verilator compiles its logic once for all its instances (:func:`verilog_text` writes it).
VERILATOR_NO_INLINE = "/* verilator no_inline_module */"
#: Verilator flags for a text with such a shared module (:func:`verilator_flags`).
VERILATOR_SHARED_FLAGS = ("-fno-dfg",)
_PORT_READ = b"/*verilator public_flat_rd*/"

_MODULE_SPAN = re.compile(rb"^module\s+(\\\S+|[A-Za-z_][\w$]*)\s*\(.*?^endmodule\b", re.M | re.S)
# A port declaration (``input [3:0] a;``, ``output \b$1 ;``) and a memory (``reg [8:0] m [73:0];``),
# one a line as Yosys's write_verilog (Amaranth's backend) writes them.
_PORT_DECL = re.compile(rb"^(\s*(?:input|output|inout)\b[^;\n]*?)(\s*);$", re.M)
_MEMORY_DECL = re.compile(rb"^(\s*reg\s+(?:\[[^\]\n]+\]\s*)?(?:\\\S+|[A-Za-z_][\w$]*)\s*"
                          rb"\[\s*\d+\s*:\s*\d+\s*\])(\s*);$", re.M)


def verilator_source(text: bytes, toplevel: str) -> bytes:
    """The Verilog for Verilator, with only what a cocotb testbench reaches through the VPI
    made public: the ports of module ``toplevel`` (the ``dut`` handle's signals) and every memory
    of every module (what a backdoor load writes by hierarchical name,
    :func:`eie.sim.backdoor.memory_paths`), each marked with :data:`VERILATOR_PUBLIC`; and the
    ports of every shared module (:data:`VERILATOR_NO_INLINE`), marked ``public_flat_rd``.

    cocotb's Verilator runner passes ``--public-flat-rw``, which makes every signal of every
    instance public; the model's symbol table (``Vtop__Syms__ctor__*__Slow.cpp``) then lists
    them all (177k entries, 31 MB of C++ at 64 PEs), and Verilator may not optimise them away.
    :func:`eie.sim.runner.build_simulator` drops that flag and builds this text instead; a memory
    is one symbol-table entry an instance, whatever its depth.

    A shared module's ports: unless they are public, Verilator replaces an instance's input
    port by the parent's signal that drives it (``pe7``'s logic then reads the top's
    ``pe7__host__w_en``), which makes the logic of every instance different and Verilator emits
    it once an instance (at 64 PEs, 36 MB of C++ for the PEs alone); public ports keep the logic
    the same in every instance, and with :data:`VERILATOR_SHARED_FLAGS` (DFG names its
    temporaries per instance) Verilator emits it once. DFG off costs the model about a quarter
    more CPU a cycle (16 PEs); a build argument ``-fdfg`` turns it back on. Other text is
    unchanged.
    """
    out, pos = [], 0
    for m in _MODULE_SPAN.finditer(text):
        body = m.group(0)
        if m.group(1).decode().strip("\\") == toplevel:
            body = _PORT_DECL.sub(rb"\1 " + VERILATOR_PUBLIC + rb"\2;", body)
        elif VERILATOR_NO_INLINE.encode() in body:
            body = _PORT_DECL.sub(rb"\1 " + _PORT_READ + rb"\2;", body)
        body = _MEMORY_DECL.sub(rb"\1 " + VERILATOR_PUBLIC + rb"\2;", body)
        out += [text[pos:m.start()], body]
        pos = m.end()
    out.append(text[pos:])
    return b"".join(out)


def verilator_flags(text: bytes) -> list[str]:
    """Verilator flags the text needs: :data:`VERILATOR_SHARED_FLAGS` when it has a shared
    module (:data:`VERILATOR_NO_INLINE`), else none."""
    return list(VERILATOR_SHARED_FLAGS) if VERILATOR_NO_INLINE.encode() in text else []


def verilog_text(component, *, name: str = "top", header: str = "", definitions=()) -> str:
    """Return the Verilog text of ``component`` (a ``wiring.Component``), ports from its signature.

    ``definitions``: ``(component, module name)`` pairs converted after it, one module each, for
    the ``Instance`` objects the top makes of them (e.g. the EIE's one PE module, instantiated
    ``n_pe`` times: :meth:`eie.hw.eie.top.EIETop.pe_definition`). Each such module carries
    Verilator's ``no_inline_module`` metacomment, so that Verilator compiles it once for all its
    instances instead of inlining a copy into each (a 16-PE EIE model built in 76 s instead of
    106 s inlined and 135 s with one module a PE, measured with ``-O3 -j 2``); other tools read
    it as a comment."""
    from amaranth.back import verilog

    text = compact_zero_init(verilog.convert(component, name=name, emit_src=False))
    for sub, sub_name in definitions:
        sub_text = compact_zero_init(verilog.convert(sub, name=sub_name, emit_src=False))
        head = re.compile(rf"^(module {re.escape(sub_name)}\(.*?\);\n)", re.M | re.S)
        sub_text, found = head.subn(lambda m: f"{m.group(1)}  {VERILATOR_NO_INLINE}\n",
                                    sub_text, count=1)
        if not found:
            raise ValueError(f"no module {sub_name} in the converted definition")
        text += sub_text
    lines = [f"// Generated by eie with Amaranth; do not edit."]
    lines += [f"// {line}" for line in header.splitlines()]
    lines.append(TIMESCALE)
    return "\n".join(lines) + "\n" + text


def export_verilog(component, path: str | os.PathLike, *, name: str = "top", header: str = "",
                   definitions=()) -> Path:
    """Write ``component`` (and ``definitions``, see :func:`verilog_text`) as one Verilog file at
    ``path`` (atomically) and return the path."""
    path = Path(path)
    text = verilog_text(component, name=name, header=header, definitions=definitions)
    with atomic_file(path) as f:
        f.write(text)
    return path
