"""What a Verilator model makes visible through the VPI: the top's ports and the memories (what
the cocotb testbench and the backdoor load reach), not every signal of every instance; and the
PE's logic in the model once, not once a PE.

cocotb's Verilator runner builds with ``--public-flat-rw``; the runner (eie.sim.runner) drops it
and builds the text of :func:`eie.sim.verilog.verilator_source`, which marks only those
declarations public (and the shared PE module's ports, so that its code is the same in every
instance). Before, the 64-PE model was 71 MB of C++ (a 31 MB symbol table, the PE's logic 64
times) and took ~25 min to build; now 3.6 MB and under 4 min (docs/eie-hardware.md)."""

import re

import pytest

from eie.sim.backdoor import memory_paths
from eie.sim.verilog import VERILATOR_PUBLIC, verilator_source

_TEXT = b"""\
module top(clk, rst, \\o$1 , q);
  reg [3:0] hidden;
  reg [7:0] mem [15:0];
  input clk;
  wire clk;
  input rst;
  output \\o$1 ;
  output [7:0] q;
  wire [7:0] q;
  wire [7:0] inner;
endmodule
module \\top.sub (clk, a);
  input clk;
  input [3:0] a;
  reg [63:0] \\store$2  [3:0];
  reg [63:0] flat;
endmodule
"""


def _public(text: bytes) -> list[bytes]:
    return [line.strip() for line in text.splitlines() if VERILATOR_PUBLIC in line]


def test_only_the_top_ports_and_the_memories_are_marked():
    out = verilator_source(_TEXT, "top")
    assert _public(out) == [
        b"reg [7:0] mem [15:0] " + VERILATOR_PUBLIC + b";",
        b"input clk " + VERILATOR_PUBLIC + b";",
        b"input rst " + VERILATOR_PUBLIC + b";",
        b"output \\o$1 " + VERILATOR_PUBLIC + b" ;",
        b"output [7:0] q " + VERILATOR_PUBLIC + b";",
        b"reg [63:0] \\store$2  [3:0] " + VERILATOR_PUBLIC + b";",
    ]
    # nothing else changes: the marks are the only difference
    assert out.replace(b" " + VERILATOR_PUBLIC, b"") == _TEXT
    # another top: its ports, not these
    assert b"input [3:0] a " + VERILATOR_PUBLIC in verilator_source(_TEXT, "top.sub")
    assert b"input rst " + VERILATOR_PUBLIC not in verilator_source(_TEXT, "top.sub")


_SCOPE = re.compile(r'(\w+) = new VerilatedScope\{this, "([^"]+)"')
_VAR = re.compile(r'(\w+)->varInsert\("([^"]+)"')


def symbol_table(bdir) -> set[str]:
    """Hierarchical names of every variable in a Verilator model's VPI symbol table (what
    ``vpi_handle_by_name`` can find), read from the model's C++."""
    text = "".join(p.read_text(errors="replace") for p in bdir.glob("Vtop__Syms*.cpp"))
    scopes = dict(_SCOPE.findall(text))
    return {f"{scopes[s]}.{name}" for s, name in _VAR.findall(text)}


def _ports(text: bytes, module: str) -> set[str]:
    head = re.search(rb"^module " + re.escape(module.encode()) + rb"\((.*?)\);", text, re.M | re.S)
    return {p.strip().decode() for p in head.group(1).split(b",")}


@pytest.mark.rtl
def test_model_makes_public_the_ports_and_the_backdoor_memories_only(rtl_designs):
    """The EIE model of the RTL tests (3 PEs, built once for them all): the backdoor memories
    of every PE and the top's ports are in the VPI symbol table, and nothing else is but the
    PE's ports (read-only: public so that Verilator compiles the PE once for all instances):
    no wire, no register of any instance (as with ``--public-flat-rw``). And the PE's logic is
    in the model once, not once a PE."""
    from eie.hw.eie.top import PE_MODULE
    from eie.sim.eie_run import TOPLEVEL, build_simulator, verilog_for_config

    config = rtl_designs.config(3, 8)
    verilog, _ = verilog_for_config(config)
    bdir, _ = build_simulator("verilator", verilog)
    names = symbol_table(bdir)

    text = verilog.read_bytes()
    ports = _ports(text, TOPLEVEL)
    assert {"bus__addr", "bus__w_data", "bus__r_data", "busy", "clk", "rst"} <= ports
    for scope in ("TOP", TOPLEVEL):
        assert {f"{scope}.{p}" for p in ports} <= names
    for k in range(config.n_pe):
        for path in memory_paths(k).values():
            assert f"{TOPLEVEL}.{path}" in names, f"backdoor memory {path} is not public"

    memories = {m.decode().strip("\\ ") for m in
                re.findall(rb"^\s*reg\s+(?:\[[^\]]+\]\s*)?(\S+)\s*\[\d+:\d+\];", text, re.M)}
    pe_ports = _ports(text, PE_MODULE)
    pe_scopes = {f"{TOPLEVEL}.pe{k}" for k in range(config.n_pe)}
    stray = []
    for n in sorted(names):
        scope, leaf = n.rsplit(".", 1)
        if scope in ("TOP", TOPLEVEL) and leaf in ports or leaf in memories:
            continue
        if scope in pe_scopes and leaf in pe_ports:
            continue
        stray.append(n)
    assert not stray, f"{len(stray)} signals other than ports and memories are public: {stray[:5]}"

    # the PE's logic once: Verilator names a function of the PE's class after the instance it
    # made it for, and keeps the first's name (pe0) when all instances share it
    pe_code = "".join(p.read_text(errors="replace") for p in bdir.glob(f"Vtop_{PE_MODULE}__*.cpp"))
    funcs = set(re.findall(r"^void (\w+)\(", pe_code, re.M))
    assert any("__DOT__pe0__" in f for f in funcs), sorted(funcs)[:4]
    per_instance = sorted(f for f in funcs if re.search(r"__DOT__pe[1-9]\d*__", f))
    # ... and at most once more, for the last group of PEs when it is smaller than the others
    # (here 3 PEs: groups of 2 and 1, the second starting at PE 2)
    from eie.hw.eie.top import pe_group_size, pe_groups

    last = pe_group_size(config.n_pe) * (pe_groups(config.n_pe) - 1)
    assert config.n_pe - last < pe_group_size(config.n_pe) and last == 2
    others = [f for f in per_instance if f"__DOT__pe{last}__" not in f]
    assert not others, f"the PE's logic is in the model once a PE: {others[:4]}"
    assert len(per_instance) <= 3, per_instance
