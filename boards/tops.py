"""Board tops: a core behind the UART bridge, as a component with UART pins (what simulation
drives) and as a platform top (what amaranth-boards builds).

:class:`BridgedCore` per cycle: the bridge (:class:`eie.boards.bridge.UARTBridge`) turns UART
frames into bus cycles on the core's host bus; nothing else sits between them.
:class:`BoardTop` places a :class:`BridgedCore` on a platform: it requests the UART, drives the
user LEDs (0: a frame is being handled; 1: the bridge has rejected a frame since reset, toggling
per rejection), and optionally clocks the design from a PLL (:mod:`eie.boards.platforms`).
"""


from amaranth.hdl import Elaboratable, Module
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .bridge import UARTBridge
from .protocol import Design

__all__ = ["BridgedCore", "BoardTop"]


def _bus_addr_width(core) -> int:
    try:
        return core.bus.signature.addr_width
    except AttributeError as exc:
        raise TypeError(f"the core {core!r} has no host bus (a 'bus' port of BusSignature)") from exc


class BridgedCore(wiring.Component):
    """A core whose ``bus`` is mastered by a UART bridge; ports ``rx``, ``tx``, ``activity``,
    ``errors`` (the bridge's)."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    activity: Out(1)
    errors: Out(16)

    def __init__(self, core, *, divisor: int, clk_freq: int, design: Design,
                 max_burst: int = 256, timeout: int | None = None):
        self.core = core
        self.bridge = UARTBridge(addr_width=_bus_addr_width(core), divisor=divisor,
                                 max_burst=max_burst, timeout=timeout, clk_freq=clk_freq,
                                 design=design)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.core = self.core
        wiring.connect(m, bridge.bus, self.core.bus)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
                     self.activity.eq(bridge.activity), self.errors.eq(bridge.errors)]
        return m


class BoardTop(Elaboratable):
    """Platform top: ``make_core()`` builds the core, ``baud`` sets the UART, ``pll`` (an object
    with ``elaborate_pll(m, platform) -> clk_freq``) optionally replaces the board clock."""

    def __init__(self, make_core, *, design: Design, baud: int, pll=None, max_burst: int = 256):
        self._make_core = make_core
        self._design = design
        self._baud = baud
        self._pll = pll
        self._max_burst = max_burst

    def elaborate(self, platform):
        from .uart import divisor_for

        m = Module()
        if self._pll is not None:
            clk_freq = self._pll.elaborate_pll(m, platform)
        else:
            clk_freq = platform.default_clk_frequency
        divisor = divisor_for(clk_freq, self._baud)
        m.submodules.top = top = BridgedCore(self._make_core(), divisor=divisor,
                                             clk_freq=int(clk_freq), design=self._design,
                                             max_burst=self._max_burst)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]
        if any(r.name == "uart_tx_enable" for r in platform.resources.values()):
            # ULX3S: the FPGA's TX line to the FTDI chip passes a buffer enabled by this pin
            m.submodules.uart_tx_en = en_buf = io.Buffer("o", platform.request("uart_tx_enable",
                                                                              0, dir="-"))
            m.d.comb += en_buf.o.eq(1)
        leds = []
        for i in range(2):
            try:
                leds.append(platform.request("led", i, dir="-"))
            except ResourceError:
                break
        for i, (led, value) in enumerate(zip(leds, (top.activity, top.errors[0]))):
            m.submodules[f"led{i}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(value)
        return m
