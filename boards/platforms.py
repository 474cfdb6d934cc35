"""Boards by name: the amaranth-boards platform, its programmer, and clocking.

Only boards with a UART on amaranth-boards and a YoWASP place-and-route flow (iCE40, ECP5) are
listed. ECP5 boards clock the design from an ``EHXPLLL`` PLL at ``clock_mhz`` (default: a clock
the design meets, ``boards.build.ECP5_DEFAULT_MHZ``); iCE40 boards run from the board clock.
"""

import importlib
import shutil
from dataclasses import dataclass


__all__ = ["Board", "BOARDS", "board_by_name", "EcpPLL", "ecp5_pll_params"]


@dataclass(frozen=True)
class Board:
    name: str
    module: str                  # amaranth_boards module
    platform: str                # platform class name
    family: str                  # "ice40" or "ecp5"
    programmer: str              # the program --program runs
    install_hint: str            # what to install when the programmer is missing
    bitstream_ext: str           # the file the programmer takes
    default_designs: tuple = ("eie", "bnn", "ram")

    def make_platform(self):
        try:
            mod = importlib.import_module(f"amaranth_boards.{self.module}")
        except ImportError as exc:
            from ..common.errors import EieError
            raise EieError("building bitstreams needs amaranth-boards: "
                           "pip install 'eie[boards]'") from exc
        return getattr(mod, self.platform)()

    def programmer_path(self) -> str | None:
        return shutil.which(self.programmer)


_OFL = "openFPGALoader (https://github.com/trabucayre/openFPGALoader; apt install openfpgaloader)"
_ICEPROG = "iceprog (from IceStorm; apt install fpga-icestorm), or openFPGALoader -b ice40_generic"

BOARDS: dict[str, Board] = {b.name: b for b in [
    Board("ulx3s-85f", "ulx3s", "ULX3S_85F_Platform", "ecp5", "openFPGALoader", _OFL, "bit"),
    Board("ulx3s-45f", "ulx3s", "ULX3S_45F_Platform", "ecp5", "openFPGALoader", _OFL, "bit"),
    Board("ulx3s-25f", "ulx3s", "ULX3S_25F_Platform", "ecp5", "openFPGALoader", _OFL, "bit"),
    Board("ulx3s-12f", "ulx3s", "ULX3S_12F_Platform", "ecp5", "openFPGALoader", _OFL, "bit"),
    Board("ecpix5-85", "ecpix5", "ECPIX585Platform", "ecp5", "openFPGALoader", _OFL, "bit"),
    Board("icebreaker", "icebreaker", "ICEBreakerPlatform", "ice40", "iceprog", _ICEPROG, "bin"),
    Board("icesugar", "icesugar", "ICESugarPlatform", "ice40", "icesprog",
          "icesprog (https://github.com/wuxx/icesugar)", "bin"),
    Board("ice40-hx8k-b-evn", "ice40_hx8k_b_evn", "ICE40HX8KBEVNPlatform", "ice40", "iceprog",
          _ICEPROG, "bin"),
]}


def board_by_name(name: str) -> Board:
    from ..common.errors import EieError
    try:
        return BOARDS[name]
    except KeyError:
        raise EieError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}") from None


def ecp5_pll_params(f_in: float, f_out: float) -> tuple[dict, float]:
    """EHXPLLL dividers for ``f_out`` from ``f_in`` (Hz), as ``ecppll`` chooses them:
    PFD 3.125..400 MHz, VCO 400..800 MHz, the closest output. Returns (params, achieved Hz)."""
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                vco = out * clkop
                if not 400e6 <= vco <= 800e6:
                    continue
                err = abs(out - f_out)
                if best is None or err < best[0]:
                    best = (err, dict(CLKI_DIV=clki, CLKFB_DIV=clkfb, CLKOP_DIV=clkop,
                                      CLKOP_CPHASE=max(clkop // 2 - 1, 0)), out)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best[1], best[2]


class EcpPLL:
    """Drives the ``sync`` domain from an ECP5 PLL on the board clock; reset until it locks."""

    def __init__(self, f_out: float):
        self.f_out = f_out

    def elaborate_pll(self, m, platform) -> float:
        from amaranth.hdl import ClockDomain, ClockSignal, Instance, ResetSignal, Signal
        from amaranth.lib import io

        f_in = platform.default_clk_frequency
        params, achieved = ecp5_pll_params(f_in, self.f_out)
        m.submodules.clk_in = clk_in = io.Buffer("i", platform.request(platform.default_clk, 0,
                                                                        dir="-"))
        clk_out = Signal()
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{achieved / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            **{f"p_{k}": v for k, v in params.items()},
            i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, o_CLKOP=clk_out, i_CLKFB=clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked,
        )
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(clk_out), ResetSignal("sync").eq(~locked)]
        platform.add_clock_constraint(clk_out, achieved)
        return achieved
