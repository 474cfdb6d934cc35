"""Run an EIE image on the Amaranth simulator, through the host bus, with the shared host program.

``run_image_amaranth(config, image, x)`` is :func:`eie.sim.eie_run.run_eie` on the Amaranth
simulator for the design ``config``: it builds :class:`eie.hw.eie.top.EIETop`, loads the image
with :class:`eie.hw.eie.host_program.HostProgram` (the same bus sequence the cocotb testbenches
and the board driver use), runs every sample, and returns the outputs and the hardware counters.
Set ``vcd`` (a path), or the environment variable ``EIE_VCD`` to a path, to dump a waveform.
"""

from __future__ import annotations

import os

from .eie_run import RunResult

__all__ = ["RunResult", "run_image_amaranth"]


def run_image_amaranth(config, image, x_int16, *, vcd: str | os.PathLike | None = None) -> RunResult:
    from ..sw.golden import check_input
    from .eie_run import run_eie

    x = check_input(x_int16, image.n_in)          # EieError on a bad shape, dtype or range
    return run_eie(image, x, sim="amaranth", config=config, vcd=vcd)
