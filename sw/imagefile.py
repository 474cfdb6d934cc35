"""What both image formats are made of on disk: one ``manifest.json`` and ``$readmemh`` hex files.

The EIE image (:mod:`eie.sw.image`) and the BNN image (:mod:`eie.sw.bnn.image`) are directories of
a JSON manifest and hex files of one word a line. Both readers and writers go through this module,
so the two formats are read with the same rules and fail the same way: every problem is one
:class:`~eie.common.errors.EieError` line naming the file, the key or the line, what was expected
and what to do.

* :func:`hex_text` / :func:`write_hex` -- words of ``bits`` bits as lowercase hex of fixed width
  (``ceil(bits / 4)`` digits, at least 1), one a line; signed words as two's complement.
* :class:`ImageDir` -- an image directory being read:

  - :meth:`ImageDir.file`: a file name from the manifest, confined to the directory (no absolute
    path, no ``..``, no symlink leading outside, a regular file);
  - :meth:`ImageDir.manifest`: ``manifest.json`` as strict UTF-8 JSON (one object, no key twice,
    no nesting so deep that the parser gives up), read through :class:`Fields`;
  - :meth:`ImageDir.read_hex`: a hex file of exactly ``count`` words of at most ``bits`` bits
    (blank lines and ``//`` comments ignored), with the line of a non-UTF-8 byte, a bad digit or
    a word too wide, and the count on too few or too many words.
* :class:`Fields` -- typed access to a manifest object: ``fields.integer("n_pe", lo=1)`` returns
  an ``int`` or raises naming ``'n_pe'``, the range and what the manifest holds instead (a number
  written as a string, a float, ``true``, a list ...).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.errors import EieError

__all__ = ["MANIFEST", "MAX_LAYER_WEIGHTS", "hex_digits", "hex_text", "write_hex",
           "parse_hex", "ImageDir", "Fields", "describe", "plural", "manifest_format"]

MANIFEST = "manifest.json"

#: The largest layer (``n_out * n_in`` weights; for the BNN with its folding's padding) an image
#: reader accepts: ten times VGG-16's fc6. Beyond it a manifest is taken to be damaged rather than
#: decoded into a dense matrix of that size.
MAX_LAYER_WEIGHTS = 1 << 30

_REQUIRED = object()
_HEX_WORD = re.compile(r"[0-9a-fA-F]+")


# ----------------------------------------------------------------------------- messages

def describe(value: Any) -> str:
    """What a JSON value is, for a message: ``the string '4'``, ``a list of 3 items``, ``1.5``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 24 else f"an integer of {len(text)} digits"
    if isinstance(value, float):
        if value.is_integer():
            return f"the number {value!r} (written with a decimal point)"
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return f"a list of {plural(len(value), 'item')}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- hex words

def hex_digits(bits: int) -> int:
    """Hex digits of a word of ``bits`` bits (at least 1)."""
    return max(1, -(-bits // 4))


def hex_text(values: Sequence[int] | np.ndarray, bits: int, *, signed: bool = False,
             name: str = "a hex file") -> str:
    """``values`` as ``$readmemh`` text: one word a line, lowercase hex, ``hex_digits(bits)``
    digits. ``signed`` words (in ``[-2**(bits-1), 2**(bits-1))``) are written as two's complement.
    A value that does not fit raises :class:`EieError` naming ``name``."""
    if isinstance(values, np.ndarray):
        vals = values.tolist()
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    else:
        vals = [int(v) for v in values]
        lo, hi = (min(vals), max(vals)) if vals else (0, 0)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise EieError(f"cannot write {name}: the value {bad} does not fit "
                       f"{'a signed' if signed else 'an unsigned'} {bits}-bit word "
                       f"[{low}, {high}]")
    if signed and lo < 0:
        mask = (1 << bits) - 1
        vals = [v & mask for v in vals]
    fmt = f"{{:0{hex_digits(bits)}x}}\n"
    return "".join(map(fmt.format, vals))


def write_hex(path: str | os.PathLike, values: Sequence[int] | np.ndarray, bits: int, *,
              signed: bool = False) -> None:
    """Write ``values`` to ``path`` as :func:`hex_text`."""
    path = Path(path)
    path.write_text(hex_text(values, bits, signed=signed, name=path.name))


def _utf8(data: bytes, where: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EieError(f"{where} line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text "
                       f"({what})") from None


def parse_hex(text: str, count: int, bits: int, *, where: str, needs: str,
              signed: bool = False) -> list[int]:
    """The ``count`` words of ``$readmemh`` text ``text`` (one word of at most ``bits`` bits and
    ``hex_digits(bits)`` digits a line; blank lines and ``//`` comments ignored). ``where`` names
    the file in messages, ``needs`` says why ``count`` words are expected."""
    digits = hex_digits(bits)
    values = _parse_clean(text, digits, bits)
    if values is not None and len(values) == count:
        return _to_signed(values, bits) if signed else values
    # Something is off (or there are comments): the line-by-line pass names the line.
    values = []
    extra_line = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if not _HEX_WORD.fullmatch(line) or len(line) > digits:
            if line.startswith("@"):
                raise EieError(f"{where} line {lineno}: {_short(line)} is an address line; this "
                               f"format has none (one word a line, from address 0)")
            raise EieError(f"{where} line {lineno}: {_short(raw.strip())} is not a hex word of at "
                           f"most {digits} digit{'s' if digits > 1 else ''}")
        v = int(line, 16)
        if v >> bits:
            raise EieError(f"{where} line {lineno}: {line} is wider than {bits} bits")
        if len(values) == count and not extra_line:
            extra_line = lineno
        values.append(v)
    if len(values) != count:
        why = (f"line {extra_line} holds value {count + 1}, one too many" if extra_line
               else "the file ends early")
        raise EieError(f"{where} has {len(values)} values but {needs} {count} ({why})")
    return _to_signed(values, bits) if signed else values


_HEX_RUN = re.compile(r"[0-9a-fA-F]*")


def _parse_clean(text: str, digits: int, bits: int) -> list[int] | None:
    """The words of ``text`` when every line is a valid word or blank and there is no comment
    (what the writers produce), fast; None otherwise."""
    if "/" in text:
        return None
    words = [w for w in (line.strip() for line in text.split("\n")) if w]
    if words and (max(map(len, words)) > digits or not _HEX_RUN.fullmatch("".join(words))):
        return None
    values = [int(w, 16) for w in words]
    if values and max(values) >> bits:
        return None
    return values


def _to_signed(values: list[int], bits: int) -> list[int]:
    half, full = 1 << (bits - 1), 1 << bits
    return [v - full if v >= half else v for v in values]


# ----------------------------------------------------------------------------- the manifest

class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _load_json(data: bytes, where: str) -> Any:
    text = _utf8(data, where, "a manifest is UTF-8 JSON")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise EieError(f"{where} is not a valid manifest: the key {_short(str(exc.args[0]))} "
                       f"appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise EieError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                       f"{exc.colno}") from None
    except RecursionError:
        raise EieError(f"{where} is not a valid manifest: its lists and objects nest too deeply "
                       f"for the JSON parser") from None
    except ValueError as exc:                      # e.g. an integer of more than 4300 digits
        raise EieError(f"{where} is not valid JSON: {str(exc).split(';')[0].strip()}") from None


class Fields:
    """Typed access to one JSON object of a manifest. ``where`` is its path in the manifest
    (``""`` for the top level, ``"layers[0]"`` ...); every accessor raises :class:`EieError`
    naming the manifest, the key's path, what was expected and what it holds."""

    def __init__(self, obj: dict, where: str, image: "ImageDir"):
        self.obj = obj
        self.where = where
        self.image = image

    def path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.where}[{key}]"
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str, *, hint: str | None = None) -> EieError:
        """An error about ``key``: ``<manifest>: '<path>' <message>; <hint>``."""
        return self.image.error(f"{self.image.manifest_path}: '{self.path(key)}' {message}",
                                hint=hint)

    def __contains__(self, key: str) -> bool:
        return key in self.obj

    def _missing(self, key: str, default: Any, expected: str) -> Any:
        if default is _REQUIRED:
            raise self.error(key, f"is missing (expected {expected})")
        return default

    def _wrong(self, key: str, expected: str, value: Any, detail: str = "") -> EieError:
        return self.error(key, f"must be {expected}, got {describe(value)}{detail}")

    def raw(self, key: str, default: Any = _REQUIRED) -> Any:
        """The value as the JSON holds it."""
        return self.obj[key] if key in self.obj else self._missing(key, default, "a value")

    def integer(self, key: str, lo: int | None = None, hi: int | None = None,
                default: Any = _REQUIRED) -> int:
        expected = "an integer" + _range(lo, hi)
        if key not in self.obj:
            return self._missing(key, default, expected)
        v = self.obj[key]
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self._wrong(key, expected, v)
        return v

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        if key not in self.obj:
            return self._missing(key, default, "true or false")
        v = self.obj[key]
        if not isinstance(v, bool):
            raise self._wrong(key, "true or false", v)
        return v

    def string(self, key: str, default: Any = _REQUIRED) -> str:
        if key not in self.obj:
            return self._missing(key, default, "a string")
        v = self.obj[key]
        if not isinstance(v, str):
            raise self._wrong(key, "a string", v)
        return v

    def mapping(self, key: str, default: Any = _REQUIRED) -> dict:
        """A JSON object as a plain ``dict`` (free-form content such as statistics)."""
        if key not in self.obj:
            return self._missing(key, default, "an object")
        v = self.obj[key]
        if not isinstance(v, dict):
            raise self._wrong(key, "an object", v)
        return v

    def integers(self, key: str, *, length: int | None = None, min_length: int = 0,
                 lo: int | None = None, hi: int | None = None,
                 default: Any = _REQUIRED) -> list[int]:
        """A list of integers (``length`` of them when given, else at least ``min_length``)."""
        expected = f"a list of {'' if length is None else f'{length} '}integers{_range(lo, hi)}"
        if length is None and min_length:
            expected += f" (at least {min_length})"
        if key not in self.obj:
            return self._missing(key, default, expected)
        v = self.obj[key]
        if not isinstance(v, list) or (length is not None and len(v) != length) \
                or len(v) < min_length:
            raise self._wrong(key, expected, v)
        for i, item in enumerate(v):
            if not _is_int(item) or (lo is not None and item < lo) \
                    or (hi is not None and item > hi):
                raise self._wrong(key, expected, v, f" whose item {i} is {describe(item)}")
        return v

    def strings(self, key: str, default: Any = _REQUIRED) -> list[str]:
        if key not in self.obj:
            return self._missing(key, default, "a list of strings")
        v = self.obj[key]
        if not isinstance(v, list):
            raise self._wrong(key, "a list of strings", v)
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise self._wrong(key, "a list of strings", v,
                                  f" whose item {i} is {describe(item)}")
        return v

    def objects(self, key: str, default: Any = _REQUIRED) -> list["Fields"]:
        """A list of JSON objects, each as :class:`Fields` (path ``key[i]``)."""
        if key not in self.obj:
            return self._missing(key, default, "a list of objects")
        v = self.obj[key]
        if not isinstance(v, list):
            raise self._wrong(key, "a list of objects", v)
        out = []
        for i, item in enumerate(v):
            sub = Fields(item, f"{self.path(key)}[{i}]", self.image)
            if not isinstance(item, dict):
                raise self.image.error(f"{self.image.manifest_path}: '{sub.where}' must be an "
                                       f"object, got {describe(item)}")
            out.append(sub)
        return out

    def check_equal(self, key: str, want: int, because: str) -> None:
        """When ``key`` is present, it must be the integer ``want``: ``'<key>' is <got> but
        <because> <want>`` (``because`` is e.g. ``"the layers need"``)."""
        if key in self.obj:
            got = self.integer(key)
            if got != want:
                raise self.error(key, f"is {got} but {because} {want}")


# ----------------------------------------------------------------------------- the directory

class ImageDir:
    """An image directory being read.

    ``kind`` names the format for messages (``"an EIE image"``), ``make`` the command that writes
    one (``"eie compress"``); ``hint`` is appended to every message about a damaged file (what to
    do). Construction checks that the directory exists and holds a ``manifest.json``.
    """

    def __init__(self, path: str | os.PathLike, *, kind: str, make: str, hint: str):
        self.path = Path(path)
        self.kind, self.make, self.hint = kind, make, hint
        if not self.path.is_dir():
            state = "it is not a directory" if self.path.exists() else "it does not exist"
            raise EieError(f"{self.path} is not {kind} directory: {state}; create one with "
                           f"`{make}`")
        self.root = self.path.resolve()
        self.manifest_path = self.path / MANIFEST
        if not os.path.lexists(self.manifest_path):
            raise EieError(f"{self.path} is not {kind} directory: {MANIFEST} is missing; create "
                           f"one with `{make}`")

    def error(self, message: str, *, hint: str | None = None) -> EieError:
        """``message`` with the directory's hint (or ``hint``) appended, as an :class:`EieError`."""
        return EieError(f"{message}; {hint or self.hint}")

    def file(self, name: Any, role: str, key: str | None = None) -> Path:
        """The resolved path of the regular file ``name`` inside the directory. ``role`` says
        what the file holds (for "missing"), ``key`` the manifest key that names it, if any.
        Refuses a name that is not a relative path inside the directory, and a symlink that
        leads outside it."""
        def bad(why: str) -> EieError:
            return self.error(f"{self.manifest_path}: '{key}' is {_short(name, 200)}: {why}")

        if key is not None:
            if not isinstance(name, str) or not name.strip():
                raise self.error(f"{self.manifest_path}: '{key}' must be a file name, got "
                                 f"{describe(name)}")
            if "\x00" in name or "\\" in name:
                raise bad("not a file name")
            if os.path.isabs(name):
                raise bad("an absolute path; an image names its files relative to its own "
                          "directory")
            if ".." in Path(name).parts:
                raise bad("it leads out of the image directory through '..'")
            if not Path(name).parts:
                raise bad("it names the image directory itself, not a file")
        shown = self.path / name
        try:
            real = shown.resolve()
        except (OSError, RuntimeError) as exc:          # a symlink loop
            raise self.error(f"{shown} cannot be resolved ({exc})") from None
        if real == self.root:
            raise self.error(f"{shown} is the image directory itself, not a file (it should hold "
                             f"{role})")
        if not real.is_relative_to(self.root):
            raise self.error(f"{shown} leads outside the image directory through a symlink (to "
                             f"{real}); an image's files must lie inside it")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise self.error(f"{shown} is missing from the image directory (it should hold "
                             f"{role})") from None
        except OSError as exc:
            raise self.error(f"{shown} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise self.error(f"{shown} is not a regular file (it should hold {role})")
        return real

    def read_bytes(self, name: Any, role: str, key: str | None = None) -> tuple[bytes, Path]:
        """The content of :meth:`file` ``name`` and the path to show in messages."""
        real = self.file(name, role, key)
        try:
            return real.read_bytes(), self.path / name
        except OSError as exc:
            raise self.error(f"{self.path / name} cannot be read: {exc.strerror}") from None

    def manifest(self) -> Fields:
        """``manifest.json`` as :class:`Fields` of its top-level object."""
        data, shown = self.read_bytes(MANIFEST, "the image's layer table")
        try:
            obj = _load_json(data, str(shown))
        except EieError as exc:
            raise self.error(str(exc)) from None
        if not isinstance(obj, dict):
            raise self.error(f"{shown} must hold a JSON object at the top level, got "
                             f"{describe(obj)}")
        return Fields(obj, "", self)

    def read_hex(self, name: Any, count: int, bits: int, *, role: str, needs: str,
                 key: str | None = None, signed: bool = False) -> list[int]:
        """The ``count`` words of the hex file ``name`` (see :func:`parse_hex` and :meth:`file`);
        ``needs`` says why ``count`` words (``"the manifest's layers need"``)."""
        data, shown = self.read_bytes(name, role, key)
        try:
            text = _utf8(data, str(shown), "a hex file holds hex digits, one word a line")
            return parse_hex(text, count, bits, where=str(shown), needs=needs, signed=signed)
        except EieError as exc:
            raise self.error(str(exc)) from None


def manifest_format(path: str | os.PathLike) -> str | None:
    """The ``format`` of the image directory ``path`` (``"eie-image"``, ``"eie-bnn-image"``,
    None when the manifest has none), read with the same strict rules as the images."""
    d = ImageDir(path, kind="an image", make="eie compress` or `eie bnn compile",
                 hint="write the image again")
    return d.manifest().string("format", default=None)
