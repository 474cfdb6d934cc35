"""The one exception type the CLI turns into a one-line message and exit code 2.

Raise :class:`EieError` for anything a user can fix (a bad value, a missing file, an image over
capacity). The message names the value, the limit and what to do, e.g.
``"layer 0 needs 70112 sparse-matrix entries in PE 3 but the SRAM holds 65536 (raise --spmat-depth or add PEs)"``.
:func:`warn` is the one-line ``warning:`` of an input that is legal but lossy.
"""

import sys

__all__ = ["EieError", "warn"]


class EieError(Exception):
    """A user error: the CLI prints ``eie: error: <message>`` and exits with code 2."""


def warn(message: str) -> None:
    """A legal but lossy input (saturated values ...): one ``warning: <message>`` line on
    stderr; the command goes on (exit 0)."""
    print(f"warning: {message}", file=sys.stderr)
