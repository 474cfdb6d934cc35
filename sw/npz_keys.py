"""Layer numbers in the array names of a model ``.npz`` (``W0``, ``b12``, ``gamma3``, ...).

A name's number is compared as its digits, never converted to an ``int``: an archive may hold a
key of thousands of digits (``int()`` refuses more than 4,300, and a range up to it would not
fit in memory). Shared by the EIE's model files (:mod:`eie.sw.model_io`) and the BNN's
(:mod:`eie.sw.bnn.float_model`, :mod:`eie.sw.bnn.params`).
"""

from __future__ import annotations

import re

__all__ = ["layer_key_pattern", "canonical_number", "by_number", "beyond", "shown_key"]

#: a name longer than this is shortened in messages (:func:`shown_key`)
_SHOWN_MAX = 24


def layer_key_pattern(*prefixes: str) -> re.Pattern[str]:
    """A pattern matching one prefix and its layer number's ASCII digits: group 1 the prefix,
    group 2 the digits (leading zeros included)."""
    return re.compile(rf"^({'|'.join(map(re.escape, prefixes))})([0-9]+)$", re.ASCII)


def canonical_number(digits: str) -> str:
    """A layer number's digits without leading zeros (``"007"`` -> ``"7"``, ``"00"`` -> ``"0"``);
    ``digits != canonical_number(digits)`` when they have a leading zero."""
    return digits.lstrip("0") or "0"


def by_number(text: str) -> tuple[int, str]:
    """Sort key in numeric order of layer numbers written without leading zeros (or of names
    with one prefix and such numbers): shorter first, then by characters; at any length."""
    return len(text), text


def beyond(key: str, prefix: str, n: int) -> bool:
    """Whether ``key`` is ``prefix`` and a layer number (ASCII digits, leading zeros allowed)
    ``>= n``."""
    digits = key[len(prefix):]
    if not (key.startswith(prefix) and digits.isascii() and digits.isdigit()):
        return False
    return by_number(canonical_number(digits)) >= by_number(str(n))


def shown_key(key: str) -> str:
    """An array's name (or a layer number) for a message: a very long one shortened to its
    first 12 characters and its length."""
    return key if len(key) <= _SHOWN_MAX else f"{key[:12]}... ({len(key)} characters)"
