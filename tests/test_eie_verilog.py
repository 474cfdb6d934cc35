"""The EIE's Verilog holds one PE module that the top instantiates ``n_pe`` times.

The same circuit as the Amaranth-simulated top (``EIETop(config)``, every PE a submodule): the
RTL tests (tests/test_eie_rtl.py, tests/test_backdoor.py) run this Verilog against the golden
model, the Amaranth tests the other form.
"""

from __future__ import annotations

import re

import pytest

from eie.hw.eie.config import EIEConfig
from eie.hw.eie.top import PE_MODULE, EIETop

SMALL = dict(fifo_depth=3, ptr_depth=64, spmat_depth=32, act_depth=16, acc_depth=8)


def _modules(text: str) -> list[str]:
    return re.findall(r"^module (\S+?)\s*\(", text, re.M)


def _generate(cli, tmp_path, n_pe: int, name: str = "eie_top") -> str:
    out = tmp_path / f"{name}_{n_pe}.v"
    r = cli(["generate", "--pes", n_pe, "--fifo-depth", 3, "--ptr-depth", 64, "--spmat-depth", 32,
             "--act-depth", 16, "--acc-depth", 8, "--name", name, "-o", out])
    assert r.code == 0, r.err
    return out.read_text()


@pytest.mark.parametrize("n_pe", [1, 3, 12])
def test_generate_defines_one_pe_module_instantiated_n_times(cli, tmp_path, n_pe):
    text = _generate(cli, tmp_path, n_pe)
    mods = _modules(text)
    assert mods.count("eie_top_pe") == 1
    # Verilator compiles the PE once for all instances instead of inlining N copies
    pe_body = text.split("module eie_top_pe(", 1)[1].split("endmodule", 1)[0]
    assert "/* verilator no_inline_module */" in pe_body
    assert len(mods) == len(set(mods))
    instances = re.findall(r"^\s*eie_top_pe (pe\d+) \(", text, re.M)
    assert sorted(instances) == sorted(f"pe{k}" for k in range(n_pe))
    # no per-PE module anywhere: the modules are the same set for every PE count
    assert not any(re.search(r"\.(pe|glue)\d+(\.|$)", mod) for mod in mods)


def test_pe_modules_do_not_grow_with_pes(cli, tmp_path):
    """The PE's module and its submodules are one set whatever ``n_pe``; what grows is the top
    (and the controller's LNZD tree, which has a leaf a PE)."""
    def pe_side(n):
        return {mod for mod in _modules(_generate(cli, tmp_path, n))
                if mod.lstrip("\\").startswith("eie_top_pe")}

    two = pe_side(2)
    assert "eie_top_pe" in two and len(two) > 1
    assert pe_side(16) == two


@pytest.mark.rtl
def test_verilog_grows_slower_than_the_pe_count(cli, tmp_path):
    """Four times the PEs, less than four times the Verilog that `eie generate` writes
    (docs/eie-hardware.md, "Verilog: one PE module"), and no module more than four times its
    size: what grows with ``n_pe`` (the top's instances, the LNZD's leaves and trees) grows at
    most linearly. (The LNZD's counting trees once restated each subtree at every reading, k
    times a level: 5.6 times its Verilog from 64 to 256 PEs.)"""
    def sizes(n_pe):
        text = _generate(cli, tmp_path, n_pe)
        chunks = re.split(r"^(?=module )", text, flags=re.M)[1:]
        return len(text), {_modules(chunk)[0]: len(chunk) for chunk in chunks}

    total64, mods64 = sizes(64)
    total256, mods256 = sizes(256)
    assert total256 < 4 * total64, (total64, total256)
    assert set(mods64) <= set(mods256)
    grown = {mod: (mods64[mod], mods256[mod]) for mod in mods64
             if mods256[mod] > 4 * mods64[mod]}
    assert not grown, grown


def test_pe_module_is_named_after_the_top(cli, tmp_path):
    text = _generate(cli, tmp_path, 2, name="accel")
    mods = _modules(text)
    assert "accel" in mods and "accel_pe" in mods
    assert not any(mod.startswith("eie_top") for mod in mods)


def test_instance_ports_are_the_pe_signature():
    """Every port of the PE definition is connected on every instance (clock, reset, and each
    signature member by its flattened name), and nothing else."""
    from amaranth.back import verilog

    cfg = EIEConfig(n_pe=3, **SMALL)
    top = EIETop(cfg, pe_module=PE_MODULE)
    pe_text = verilog.convert(top.pe_definition(), name=PE_MODULE, emit_src=False)
    header = pe_text.split(f"module {PE_MODULE}(", 1)[1].split(");", 1)[0]
    ports = {p.strip() for p in header.split(",")}
    top_text = verilog.convert(top, name="eie_top", emit_src=False)
    for k in range(cfg.n_pe):
        body = top_text.split(f"{PE_MODULE} pe{k} (", 1)[1].split(");", 1)[0]
        assert set(re.findall(r"\.(\w+)\(", body)) == ports


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_pe_module_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="identifier"):
        EIETop(EIEConfig(n_pe=2, **SMALL), pe_module="not a name")


def test_pe_ports_are_the_groups_flattened():
    """The PE's ports are the groups of ``eie.hw.eie.signatures`` and ``idle``; its Verilog
    ports are their members' paths joined with ``__`` (the names ``EIETop._pe_instance``
    connects), every one a plain Verilog identifier. The CCU's groups carry the same members,
    with one lane per PE where the PEs answer (``bcast.fill``, ``act.data``, ``act.nz``,
    ``act.held``)."""
    from amaranth.back import verilog
    from amaranth.hdl import Fragment, Shape

    from eie.hw.eie.ccu import CCU
    from eie.hw.eie.pe import PE, pe_signature

    cfg = EIEConfig(n_pe=3, **SMALL)
    sig = pe_signature(cfg)
    assert list(sig.members) == ["bcast", "layer", "act", "host", "idle_next"]
    names = {"__".join(map(str, path)) for path, member in sig.members.flatten()
             if member.is_port}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names)
    text = verilog.convert(PE(cfg, 0), name="pe", emit_src=False)
    header = text.split("module pe(", 1)[1].split(");", 1)[0]
    assert {p.strip() for p in header.split(",")} == names | {"clk", "rst"}

    ccu_block = CCU(cfg)
    Fragment.get(ccu_block, None)          # elaborates (and so uses) it
    ccu = ccu_block.signature.members
    for group in ("bcast", "layer", "act"):
        pe_side = {p: m for p, m in sig.members[group].signature.members.flatten() if m.is_port}
        ccu_side = {p: m for p, m in ccu[group].signature.members.flatten() if m.is_port}
        # the LNZD's next address and scanned slot are the top's (it registers them once a
        # group of PEs and shows the PEs ``addr`` and ``scan``)
        assert pe_side.keys() == ccu_side.keys() - (
            {("addr_next",), ("scan_next",)} if group == "act" else set())
        for path, m in pe_side.items():
            assert m.flow != ccu_side[path].flow          # the PE takes what the CCU drives
            if path not in {("fill",), ("data",), ("nz",), ("held",)}:   # a lane per PE
                assert ccu_side[path].shape == m.shape
    assert ccu["bcast"].signature.members["fill"].shape.length == cfg.n_pe
    assert ccu["act"].signature.members["data"].shape.length == cfg.n_pe
    assert ccu["act"].signature.members["held"].shape.length == cfg.n_pe
    assert Shape.cast(ccu["act"].signature.members["nz"].shape).width == cfg.n_pe
