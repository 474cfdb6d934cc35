"""The one exception type the CLI turns into a one-line message and exit code 2.

Raise :class:`EieError` for anything a user can fix (a bad value, a missing file, an image over
capacity). The message names the value, the limit and what to do, e.g.
``"layer 0 needs 70112 sparse-matrix entries in PE 3 but the SRAM holds 65536 (raise --spmat-depth or add PEs)"``.
"""

__all__ = ["EieError"]


class EieError(Exception):
    """A user error: the CLI prints ``eie: error: <message>`` and exits with code 2."""
