"""The project's one rule for a progress bar (every command that draws one uses
:func:`progress_bar`).

The rule: a tqdm bar on **stderr**, drawn **only when stderr is a terminal** (tqdm's
``disable=None``: nothing at all goes into a file or a pipe, so ``eie ... 2>log`` holds no
carriage-return redraws), **never when the user asked for none** (``--no-progress``, i.e.
``enabled=False``: tqdm's ``disable=True``), and cleared when done (``leave=False``).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

__all__ = ["progress_bar"]


def progress_bar(total: int | None = None, *, desc: str, unit: str, enabled: bool = True,
                 iterable: Iterable | None = None, **tqdm_kwargs: Any):
    """A :class:`tqdm.tqdm` bar that follows the rule of this module: on ``sys.stderr`` (as it
    is at the call), drawn on a terminal only, never with ``enabled=False`` (``--no-progress``),
    ``leave=False``.

    ``total``, ``desc``, ``unit`` and ``iterable`` are tqdm's; ``tqdm_kwargs`` are passed on
    (``unit_scale``, ``bar_format``, ...), except ``file``, ``disable`` and ``leave``, which the
    rule fixes (passing one is a :class:`TypeError`). A disabled bar draws nothing, and its
    ``update``, ``write`` and ``close`` still work (its iteration yields ``iterable``'s items).
    """
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=None if enabled else True, **tqdm_kwargs)
