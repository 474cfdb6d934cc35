"""Inputs of both cores, one set of rules: arrays handed to the libraries and ``.npy`` files
given on the command line.

An input is a batch of samples ``(batch, n_in)`` (a vector ``(n_in,)`` is a batch of one), in a
plain numeric dtype:

* EIE activations (:func:`check_activations`): integers within int16 ``[-32768, 32767]``,
  fixed point with the image's ``act_frac`` fraction bits;
* EIE real-valued inputs (:func:`check_real`, quantised by :func:`eie_input`): floats, every one
  finite; values beyond int16 after scaling saturate (legal, lossy: a warning);
* BNN bits (:func:`check_bits`): integers or booleans 0 or 1 (1 means +1, 0 means -1).

Files (:func:`read_npy`, and :func:`load_eie_input`, :func:`load_bnn_input`,
:func:`load_calibration` for the commands): one ``.npy`` array, read with
``allow_pickle=False``. Its header is checked before any data is read: not a ``.npz`` archive,
no Python objects (a pickle can run code when loaded), a numeric dtype, the shape the command
needs, at least one sample, the file's size equal to what its header describes (not truncated,
not several arrays in one file), and at most :data:`MAX_INPUT_BYTES` of samples read (a command
that uses only the first samples, such as ``--calibrate``, reads only those).

Every problem is one :class:`~eie.common.errors.EieError` line naming the input (the file), the
offending value or shape and its position, the limit, and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.errors import EieError
from .fixedpoint import INT16_MAX, INT16_MIN, quantize

__all__ = ["MAX_INPUT_BYTES", "IMAGE_LAYER", "check_activations", "check_bits", "check_real",
           "eie_input", "read_npy", "load_eie_input", "load_bnn_input", "load_calibration"]

#: The most bytes of samples a command reads from one input file (a larger batch: split it).
MAX_INPUT_BYTES = 1 << 32

#: What a first layer is called in messages about images (both cores).
IMAGE_LAYER = "the image's first layer"
#: Hint: how int16 activations are made (the command line's convention: :func:`raw_flag_hint`).
QUANTISE_HINT = "quantise real values with eie.sw.fixedpoint.quantize and act_frac first"

_NUMERIC = "biufc"


def raw_flag_hint(act_frac: int) -> str:
    """What to give instead of integers without ``--raw``, and what ``--raw`` means (its
    values are fixed point already, not pixels: 255 would read as 255 / 2**act_frac)."""
    return (f": give floats scaled as the model was trained (e.g. pixels 0..255 as x / 255), "
            f"which are quantised with act_frac {act_frac}; --raw is only for int16 values that "
            f"are fixed point already, with {act_frac} fraction bits (1.0 = {1 << act_frac})")


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _where(pos, vector: bool) -> str:
    """An element's index as the user wrote the array: ``[c]`` of a vector, ``[r, c]``."""
    pos = tuple(int(i) for i in pos)
    return f"[{pos[-1]}]" if vector else f"[{pos[0]}, {pos[1]}]"


def _layout(shape: tuple, dtype: np.dtype, n_in: int, *, what: str, consumer: str, rows: str,
            unit: str, allow_empty: bool) -> None:
    """The rules every input shares, on a shape and a dtype (an array's, or a file header's)."""
    if dtype.hasobject:
        raise EieError(f"{what} holds Python objects (dtype {dtype}), which are never loaded (a "
                       f"pickle can run code); save a numeric ({rows}, {n_in}) array with "
                       "numpy.save")
    if dtype.kind not in _NUMERIC or dtype.fields is not None or dtype.subdtype is not None:
        raise EieError(f"{what} has dtype {dtype}, not numbers; expected a numeric ({rows}, "
                       f"{n_in}) array")
    if len(shape) not in (1, 2) or shape[-1] != n_in:
        raise EieError(f"{what} has shape {tuple(shape)} but {consumer} takes {n_in} inputs "
                       f"(expected ({rows}, {n_in}){unit})")
    if not allow_empty and len(shape) == 2 and shape[0] == 0:
        raise EieError(f"{what} holds no samples (shape {tuple(shape)}); give at least one "
                       f"({rows}, {n_in}) row")


def _batch(x, n_in: int, *, what: str, consumer: str, rows: str = "batch", unit: str = "",
           allow_empty: bool) -> tuple[np.ndarray, bool]:
    """``x`` as a 2-D ``(batch, n_in)`` array after :func:`_layout`; True if it was a vector."""
    a = np.asarray(x)
    _layout(a.shape, a.dtype, n_in, what=what, consumer=consumer, rows=rows, unit=unit,
            allow_empty=allow_empty)
    return (a[None, :], True) if a.ndim == 1 else (a, False)


def check_activations(x, n_in: int, *, what: str = "input", consumer: str = "the first layer",
                      expects: str = "the EIE takes", hint: str = QUANTISE_HINT,
                      allow_empty: bool = True) -> np.ndarray:
    """EIE activations: integers within int16, shape ``(n_in,)`` or ``(batch, n_in)``. Returns
    int64 ``(batch, n_in)``; raises :class:`EieError` otherwise (``expects`` and ``hint`` word
    the dtype and range messages, e.g. ``"--raw expects"``)."""
    a, vector = _batch(x, n_in, what=what, consumer=consumer, allow_empty=allow_empty)
    if a.dtype.kind not in "iu":
        raise EieError(f"{what} has dtype {a.dtype} but {expects} int16 fixed point ({hint})")
    if a.size and (int(a.min()) < INT16_MIN or int(a.max()) > INT16_MAX):
        bad = (a < INT16_MIN) | (a > INT16_MAX)
        pos = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise EieError(f"{what}{_where(pos, vector)} is {int(a[pos])}, outside int16 "
                       f"[{INT16_MIN}, {INT16_MAX}] ({expects} int16 fixed point; {hint})")
    return a.astype(np.int64)


def check_real(x, n_in: int, *, what: str = "input", consumer: str = "the first layer",
               rows: str = "batch", hint: str = "", allow_empty: bool = True) -> np.ndarray:
    """Real-valued EIE inputs: floats, every one finite, ``(batch, n_in)`` (dtype kept)."""
    a, vector = _batch(x, n_in, what=what, consumer=consumer, rows=rows, allow_empty=allow_empty)
    if a.dtype.kind != "f":
        raise EieError(f"{what} has dtype {a.dtype} but real-valued float input is expected"
                       f"{hint}")
    finite = np.isfinite(a)
    bad = int(a.size - np.count_nonzero(finite))
    if bad:
        pos = np.unravel_index(int(np.argmin(finite)), a.shape)
        raise EieError(f"{what} has {bad} NaN or infinite values (the first, {_where(pos, vector)}"
                       f", is {a[pos]}); every input must be finite")
    return a


def check_bits(x, n_in: int, what: str = "input", *, consumer: str = "the first layer",
               allow_empty: bool = True) -> np.ndarray:
    """BNN inputs: integers or booleans 0 or 1, ``(batch, n_in)``; returned as uint8."""
    a, vector = _batch(x, n_in, what=what, consumer=consumer, unit=" bits",
                       allow_empty=allow_empty)
    if a.dtype.kind not in "biu":
        raise EieError(f"{what} has dtype {a.dtype} but bits are integers 0 or 1 (uint8 or bool; "
                       "1 means +1, 0 means -1)")
    bad = (a != 0) & (a != 1)
    if np.any(bad):
        pos = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise EieError(f"{what}{_where(pos, vector)} is {a[pos]}; bits must be 0 or 1 (1 means "
                       "+1, 0 means -1)")
    return a.astype(np.uint8)


def eie_input(x, n_in: int, act_frac: int, *, raw: bool, what: str = "input",
              consumer: str = IMAGE_LAYER, warn: Callable[[str], None] | None = None,
              allow_empty: bool = False) -> np.ndarray:
    """The command line's EIE input convention: real values quantised with ``act_frac`` (round
    half to even, saturating; ``warn`` gets one message when some saturate), or with ``raw``
    int16 fixed point already. int16 ``(batch, n_in)`` out."""
    if raw:
        a = check_activations(x, n_in, what=what, consumer=consumer, expects="--raw expects",
                              hint=f"drop --raw to quantise real values with act_frac {act_frac}",
                              allow_empty=allow_empty)
        return a.astype(np.int16)
    a = check_real(x, n_in, what=what, consumer=consumer, hint=raw_flag_hint(act_frac),
                   allow_empty=allow_empty)
    limit = INT16_MAX / (1 << act_frac)
    sat = int(np.count_nonzero(np.abs(a) > limit))
    if sat and warn is not None:
        warn(f"{sat} inputs beyond +-{limit:g} saturated to int16 with act_frac {act_frac}")
    return np.asarray(quantize(a, act_frac), dtype=np.int16)


# ----------------------------------------------------------------------------- files

def _header(f, what: str) -> tuple[tuple, bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` file ``f``, read without its data."""
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"PK\x03\x04"):
        raise EieError(f"{what} is a .npz archive, not a .npy array (save it with numpy.save)")
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EieError(f"{what} is not a readable .npy array ({detail}); save it with "
                       "numpy.save") from None
    raise EieError(f"{what} is a .npy file of version {version[0]}.{version[1]}, which holds "
                   "named fields, not numbers; save a numeric array with numpy.save")


def read_npy(path: str | os.PathLike, what: str | None = None, *, n_in: int,
             consumer: str = IMAGE_LAYER, rows: str = "batch", unit: str = "",
             max_samples: int | None = None) -> np.ndarray:
    """The array of the ``.npy`` file ``path``, checked as the module doc says (shape
    ``(batch, n_in)`` or ``(n_in,)``, any numeric dtype; the caller checks the values for its
    core). With ``max_samples`` only the first ``max_samples`` samples are read."""
    path = Path(path)
    what = what or f"input {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EieError(f"{what} does not exist") from None
    except OSError as exc:
        raise EieError(f"{what} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise EieError(f"{what} is {kind}; give a .npy file")
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _header(f, what)
            offset = f.tell()
    except OSError as exc:
        raise EieError(f"{what} cannot be read ({exc.strerror or exc})") from None
    _layout(shape, dtype, n_in, what=what, consumer=consumer, rows=rows, unit=unit,
            allow_empty=False)
    count = int(np.prod(shape, dtype=object))
    expected = offset + count * dtype.itemsize
    if st.st_size < expected:
        raise EieError(f"{what} is not a readable .npy array (the file ends early: "
                       f"{st.st_size} bytes, its header describes {expected}); save it again")
    if st.st_size > expected:
        raise EieError(f"{what} holds {st.st_size - expected} bytes after its {tuple(shape)} "
                       "array (several arrays saved into one file?); save one array a file with "
                       "numpy.save")
    batch = 1 if len(shape) == 1 else shape[0]
    take = batch if max_samples is None else min(batch, max_samples)
    nbytes = take * n_in * dtype.itemsize
    if nbytes > MAX_INPUT_BYTES:
        raise EieError(f"{what} holds {_bytes(nbytes)} of samples ({take} x {n_in} {dtype}), "
                       f"more than the {_bytes(MAX_INPUT_BYTES)} an input may have; split the "
                       f"batch into files of at most {MAX_INPUT_BYTES // (n_in * dtype.itemsize)} "
                       "samples")
    try:
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except OSError:             # a file system without mmap: read it whole (size checked)
            mapped = np.load(path, allow_pickle=False)
        x = np.array(mapped if take == batch else mapped[:take])
        del mapped
    except (OSError, ValueError, EOFError) as exc:
        raise EieError(f"{what} is not a readable .npy array ({exc})") from None
    return x


def load_eie_input(path: str | os.PathLike, image, *, raw: bool,
                   warn: Callable[[str], None] | None = None,
                   what: str | None = None) -> np.ndarray:
    """X of ``eie golden``, ``eie run`` and ``eie board run``: float ``(batch, n_in)`` quantised
    with the image's ``act_frac``, or int16 with ``raw``. int16 out."""
    what = what or f"input {path}"
    x = read_npy(path, what, n_in=image.n_in)
    return eie_input(x, image.n_in, image.act_frac, raw=raw, what=what, warn=warn)


def load_bnn_input(path: str | os.PathLike, n_in: int, *, what: str | None = None,
                   binarize: float | None = None) -> np.ndarray:
    """X of ``eie bnn golden|run`` and ``eie board run`` with a BNN image: bits ``(batch,
    n_in)``, uint8 out. With ``binarize`` (``--binarize THRESH``) X holds real numbers and the
    bit is ``x >= THRESH``."""
    what = what or f"input {path}"
    if binarize is None:
        x = read_npy(path, what, n_in=n_in, unit=" bits")
        return check_bits(x, n_in, what, consumer=IMAGE_LAYER, allow_empty=False)
    x = read_npy(path, what, n_in=n_in, consumer=IMAGE_LAYER)
    if x.dtype.kind in "biu":                       # e.g. uint8 pixels: exact in float64
        x = x.astype(np.float64)
    x = check_real(x, n_in, what=what, consumer=IMAGE_LAYER, allow_empty=False,
                   hint=" (--binarize takes integers or real numbers)")
    return (x >= binarize).astype(np.uint8)


def load_calibration(path: str | os.PathLike, n_in: int, *, max_samples: int,
                     what: str | None = None) -> np.ndarray:
    """``eie compress --calibrate``: float inputs ``(samples, n_in)`` of the model, finite; only
    the first ``max_samples`` are read (and checked)."""
    what = what or f"--calibrate {path}"
    consumer = "the model's first layer"
    x = read_npy(path, what, n_in=n_in, consumer=consumer, rows="samples",
                 max_samples=max_samples)
    return check_real(x, n_in, what=what, consumer=consumer, rows="samples",
                      hint=" (the samples `eie golden` takes, before quantisation)",
                      allow_empty=False)
