"""Every output path of a command, checked before anything is read, computed or written.

A command starts a :class:`Plan` (:func:`plan`), names its inputs (:meth:`Plan.input`) and its
outputs (:meth:`Plan.file`, :meth:`Plan.directory`, :meth:`Plan.cache`); each call checks the
path at once and raises :class:`~eie.common.errors.EieError` (the CLI's one-line ``eie: error:``,
exit 2) before the command creates or changes anything. The rules:

* **Files** (``-o Y.npy``, ``--stats``, ``--json``, ``--memory-map``, ...): not an existing
  directory, not a device or pipe, not a symbolic link (refused, not followed: replacing the
  output would replace the link; give the path it points to), in an existing directory that is
  writable (tried with a temporary file, so it holds for root and read-only file systems too).
* **Array files** (``-o Y.npy`` of ``eie golden``, ``eie run``, ``eie bnn golden|run``, ``eie
  board run``: :meth:`Plan.array`): as files, and the name must end in ``.npy`` (the file is
  written under the name given, never renamed).
* **Directories** replaced as a whole (``eie compress -o IMAGE_DIR``, ``eie bnn compile -o``,
  ``eie build --out``, ``eie demo --out``): as files, and an existing directory is replaced only
  when it is empty or is this tool's own output of the same kind -- an *owner* check (e.g.
  :func:`manifest_owner`) reads its manifest, which must parse and name the format, and every
  file in the directory must be one the manifest accounts for. Anything else is left alone.
  The library writers of both images apply the same rule (:func:`check_replaceable`).
* **Caches** (``--build-dir``): directories written into, never replaced: not a file; created
  when missing (after every check of the command has passed).
* **No overlaps**: an output must not be the same path (after resolving links) as another
  output or an input, lie inside a directory output, replace a file of an input directory
  (``-o IMAGE_DIR/manifest.json``), put a directory or cache inside an input directory, nor
  contain an input (a directory output would delete it).

Paths given by default (not on the command line) may have missing parents (``create_parents``):
the nearest existing one must then be a writable directory.

The current plan (:func:`current`) lets an interrupted command say what each output holds
(:meth:`Plan.interrupt_report`), with :func:`eie.common.atomic.journal`.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .atomic import COMPLETE, journal
from .errors import EieError
from .signals import deferred

__all__ = ["Plan", "plan", "current", "reset", "Owner", "manifest_owner", "read_manifest",
           "safe_name", "check_replaceable", "MAX_MANIFEST_BYTES"]

#: An owner check: the files (relative POSIX paths) that the directory's own manifest accounts
#: for, the manifest included; None when the directory is not this tool's output of that kind.
Owner = Callable[[Path], "set[str] | None"]

#: A manifest larger than this is not one of ours (the reader would not read it either).
MAX_MANIFEST_BYTES = 64 << 20


def read_manifest(path: Path) -> dict | None:
    """``path`` parsed as a JSON object, or None if it is missing, too large, not UTF-8, not
    JSON, nested too deeply or not an object."""
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def safe_name(name) -> bool:
    """A file name a manifest may list: a plain name inside its directory."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def manifest_owner(manifest: str, files: Callable[[dict], Iterable[str] | None]) -> Owner:
    """An owner check for directories described by one JSON manifest: ``files(manifest)`` gives
    the other files it accounts for (names relative to the directory), or None when the
    manifest is not of this kind. Any error while looking counts as "not ours"."""
    def owner(d: Path) -> set[str] | None:
        data = read_manifest(d / manifest)
        if data is None:
            return None
        try:
            listed = files(data)
            if listed is None:
                return None
            out = {manifest}
            for name in listed:
                # a relative path of plain names; a trailing "/" lists an empty directory (as
                # the directory listing writes it)
                if not isinstance(name, str) or not all(
                        safe_name(p) for p in name.removesuffix("/").split("/")):
                    return None
                out.add(name)
            return out
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError):
            return None
    return owner


def _entries(d: Path) -> set[str]:
    """Every file, link and empty directory under ``d`` (relative POSIX paths; links are not
    followed)."""
    out = set()
    for root, dirs, files in os.walk(d, followlinks=False):
        rel = Path(root).relative_to(d)
        for name in list(dirs):
            p = Path(root) / name
            if p.is_symlink():
                out.add((rel / name).as_posix())
                dirs.remove(name)
        for name in files:
            out.add((rel / name).as_posix())
        if not dirs and not files and Path(root) != d:
            out.add(rel.as_posix() + "/")
    return out


@dataclass
class _Path:
    given: Path
    real: Path
    what: str
    role: str            # "input", "file", "directory", "cache"
    is_dir: bool
    existed: bool

    @property
    def inode(self) -> tuple[int, int] | None:
        """(device, inode) of an existing path: the same file under two names (a hard link)."""
        try:
            st = os.stat(self.given)
        except OSError:
            return None
        return st.st_dev, st.st_ino


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _inside(a: Path, b: Path) -> bool:
    """``a`` lies strictly inside ``b``."""
    return a != b and b in a.parents


def _probe(directory: Path, what: str, path: Path) -> None:
    """Create and remove a temporary file in ``directory``: the only sure test of writability."""
    try:
        with deferred():
            fd, name = tempfile.mkstemp(prefix=".eie-probe.", dir=directory)
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise EieError(f"cannot write {what} {path}: the directory {directory} is not writable "
                       f"({exc.strerror or exc})") from None


class Plan:
    """The inputs and outputs of one command; see the module doc for the rules."""

    def __init__(self) -> None:
        self.paths: list[_Path] = []

    # -------------------------------------------------------------- inputs

    def input(self, path, what: str, *, kind: str | None = None) -> Path:
        """Record an input (for the overlap checks). ``kind="npz"``/``"npy"``: an existing file
        of the other NumPy format is refused (:func:`_check_magic`). A missing or unreadable
        input is left to the command, which says what it expected."""
        path = Path(path)
        is_dir = path.is_dir()
        if kind is not None and path.is_file():
            _check_magic(path, what, kind)
        self._add(_Path(path, _real(path), what, "input", is_dir, path.exists()))
        return path

    # -------------------------------------------------------------- outputs

    def file(self, path, what: str, *, create_parents: bool = False,
             owner: Callable[[dict], bool] | None = None, kind: str = "",
             rename: str = "") -> Path:
        """A file output (replaced atomically when it exists). With ``owner`` (for a file the
        user did not name, written beside one they did): an existing file is replaced only when
        it is a JSON object that ``owner`` recognises as this tool's ``kind``; otherwise the
        command stops before its work, saying so and ``rename`` (what to do instead)."""
        path = Path(path)
        _not_link(path, what)
        if path.is_dir():
            raise EieError(f"{what} {path} is a directory; give a file name")
        if os.path.lexists(path):
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                raise EieError(f"{what} {path} is not a regular file (a device, pipe or socket); "
                               "give a file name")
            if owner is not None:
                data = read_manifest(path)
                try:
                    ours = data is not None and bool(owner(data))
                except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                    ours = False
                if not ours:
                    raise EieError(f"{what} {path} exists and is not {kind}: it is not replaced "
                                   f"(eie only replaces files it wrote); {rename}")
        self._parent(path, what, create_parents)
        self._add(_Path(path, _real(path), what, "file", False, path.exists()))
        return path

    def array(self, path, what: str) -> Path:
        """A file output that holds one NumPy array in ``.npy`` format (``eie golden``, ``eie
        run``, ``eie bnn golden|run``, ``eie board run``): as :meth:`file`, and its name must end
        in ``.npy``. It is written under exactly that name (``numpy.save`` given a name without
        ``.npy`` would add it, so the file would not be where the command said); a name that
        says another format would misname it, above all ``.npz``, which this tool's own
        ``--input`` then refuses as an array named like an archive."""
        path = self.file(path, what)     # first: what is wrong with the path itself
        suffix = path.suffix.lower()
        if suffix != ".npy":
            fix = path.with_suffix(".npy") if suffix else path.with_name(path.name + ".npy")
            if suffix == ".npz":
                why = ("names a .npz archive, but the output is one array in .npy format (eie's "
                       "--input refuses such a file; a .npz name promises an archive)")
            elif suffix:
                why = f"must end in .npy: the output is one array in .npy format, not {suffix}"
            else:
                why = "must end in .npy: the output is one array in .npy format"
            raise EieError(f"{what} {path} {why}; give {what} {fix}")
        return path

    def directory(self, path, what: str, *, owner: Owner, kind: str,
                  create_parents: bool = False) -> Path:
        """A directory output, replaced as a whole: allowed when absent, empty or ``owner``
        recognises it as this tool's ``kind`` (e.g. "an EIE image") with nothing else in it
        (:func:`check_replaceable`)."""
        path = Path(path)
        existed = check_replaceable(path, what, owner=owner, kind=kind)
        self._parent(path, what, create_parents)
        self._add(_Path(path, _real(path), what, "directory", True, existed))
        return path

    def cache(self, path, what: str) -> Path:
        """A directory the command writes into and never replaces (a build cache). It may be a
        link to a directory; missing parents are created when the command writes."""
        path = Path(path)
        if os.path.lexists(path) and not path.is_dir():
            raise EieError(f"{what} {path} exists and is not a directory; give a directory")
        if path.is_dir():
            _probe(path, what, path)
        else:
            self._parent(path, what, create_parents=True)
        self._add(_Path(path, _real(path), what, "cache", True, path.exists()))
        return path

    # -------------------------------------------------------------- the report

    def outputs(self) -> list[_Path]:
        return [p for p in self.paths if p.role in ("file", "directory")]

    def interrupt_report(self) -> str:
        """What each output holds after an interrupt: ``new output complete``, ``old output
        kept`` or ``not written``."""
        done = {_real(w.target) for w in journal() if w.state == COMPLETE}
        parts = []
        for p in self.outputs():
            if p.real in done:
                parts.append(f"{p.given}: new output complete")
            elif p.existed and os.path.lexists(p.given):
                parts.append(f"{p.given}: old output kept")
            else:
                parts.append(f"{p.given}: not written")
        return "; ".join(parts) if parts else "nothing written"

    # -------------------------------------------------------------- checks

    @staticmethod
    def _parent(path: Path, what: str, create_parents: bool) -> None:
        parent = Path(os.path.abspath(path)).parent
        if parent.is_dir():
            _probe(parent, what, path)
            return
        if os.path.lexists(parent):
            raise EieError(f"cannot write {what} {path}: {path.parent} is not a directory")
        if not create_parents:
            raise EieError(f"cannot write {what} {path}: the directory {path.parent} does not "
                           "exist (create it first)")
        up = parent
        while not os.path.lexists(up):
            up = up.parent
        if not up.is_dir():
            raise EieError(f"cannot write {what} {path}: {up} is not a directory")
        _probe(up, what, path)

    def _add(self, new: _Path) -> None:
        for old in self.paths:
            msg = _overlap(new, old)
            if msg:
                raise EieError(msg)
        self.paths.append(new)


def _not_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise EieError(f"{what} {path} is a symbolic link; give the path it points to "
                       f"({os.path.realpath(path)}) or another name (links are not replaced "
                       "or followed)")


def check_replaceable(path, what: str, *, owner: Owner, kind: str) -> bool:
    """The rule for a directory that a writer replaces as a whole, for the commands
    (:meth:`Plan.directory`) and the library writers alike (``eie.sw.image.write_image``,
    ``eie.sw.bnn.image.write_image``): not a symbolic link, nor the current, parent or root
    directory, nor an existing file; an existing directory only when it is empty or ``owner``
    recognises it as this tool's ``kind`` (e.g. "an EIE image") with nothing else in it.
    :class:`EieError` otherwise, naming ``what`` (e.g. ``-o``); returns whether it exists."""
    path = Path(path)
    _not_link(path, what)
    if path.name in ("", ".", "..") or _real(path) == _real(Path.cwd()) \
            or _real(path) == Path(_real(path).anchor):
        raise EieError(f"{what} {path} would replace the current, parent or root directory; "
                       "give a new directory name")
    if os.path.lexists(path) and not path.is_dir():
        raise EieError(f"{what} {path} exists and is not a directory; choose another path "
                       "(it is left alone)")
    if not path.is_dir():
        return False
    try:
        entries = _entries(path)
    except OSError as exc:
        raise EieError(f"{what} {path} cannot be read ({exc.strerror or exc}); it is left "
                       "alone") from None
    if not entries:
        return True
    listed = owner(path)
    if listed is None:
        some = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise EieError(f"{what} {path} is not empty and is not {kind} written by eie "
                       f"(it holds {some}); it is left alone: give a new directory name, or "
                       "empty or remove it yourself")
    extra = sorted(entries - listed)
    if extra:
        some = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
        raise EieError(f"{what} {path} is {kind} but also holds files it does not list "
                       f"({some}); it is left alone: move them out, or give a new directory "
                       "name")
    return True


def _overlap(a: _Path, b: _Path) -> str | None:
    """Why ``a`` and ``b`` cannot be paths of the same command, or None."""
    if a.role == "input" and b.role == "input":
        return None
    # name the output first
    out, other = (a, b) if a.role != "input" else (b, a)
    if out.real == other.real or (out.inode is not None and out.inode == other.inode):
        if other.role == "input":
            return (f"{out.what} {out.given} is also the input {other.what} {other.given}; "
                    "writing it would destroy the input (give another name)")
        return (f"{out.what} {out.given} and {other.what} {other.given} are the same path; give "
                "each output its own name")
    if _inside(other.real, out.real) and out.role == "directory":
        return (f"{out.what} {out.given} would be replaced as a whole but holds "
                f"{other.what} {other.given}; put them in different places")
    if _inside(out.real, other.real) and other.role == "directory":
        return (f"{out.what} {out.given} lies inside the output directory {other.what} "
                f"{other.given}, which is replaced as a whole; write it elsewhere")
    if _inside(out.real, other.real) and other.role == "input" and other.is_dir \
            and (out.existed or out.role != "file"):
        # a new file beside an input's files harms nothing; replacing one of them would
        return (f"{out.what} {out.given} is part of the input {other.what} {other.given}; "
                "writing it would change the input (write it elsewhere)")
    return None


def _check_magic(path: Path, what: str, kind: str) -> None:
    """Refuse the one confusion NumPy's loaders do not report: a ``.npy`` array where a ``.npz``
    archive is expected (``np.load`` returns an array, not an archive) and the reverse; and a
    file of the expected format under the other format's name (a ``.npz`` archive named
    ``x.npy``, a ``.npy`` array named ``x.npz``), which every other tool would misread. Other
    damage is left to the command's reader, which says what it expected."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return
    suffix = path.suffix.lower()
    if kind == "npz" and head.startswith(b"\x93NUMPY"):
        raise EieError(f"{what} {path} is a .npy array, not a .npz archive of named arrays (save "
                       "it with numpy.savez)")
    if kind == "npy" and head.startswith(b"PK\x03\x04"):
        raise EieError(f"{what} {path} is a .npz archive, not a .npy array (save it with "
                       "numpy.save)")
    if kind == "npz" and suffix == ".npy" and head.startswith(b"PK\x03\x04"):
        raise EieError(f"{what} {path} is a .npz archive named .npy; rename it to "
                       f"{path.with_suffix('.npz').name}")
    if kind == "npy" and suffix == ".npz" and head.startswith(b"\x93NUMPY"):
        raise EieError(f"{what} {path} is a .npy array named .npz; rename it to "
                       f"{path.with_suffix('.npy').name}")


_current: Plan | None = None


def plan() -> Plan:
    """Start the plan of a command (the previous one is forgotten)."""
    global _current
    _current = Plan()
    return _current


def current() -> Plan | None:
    return _current


def reset() -> None:
    global _current
    _current = None


def env_waveform(default_name: str) -> str | None:
    """The waveform file the environment variable ``EIE_VCD`` asks for: None when unset or
    empty, ``default_name`` (in the working directory) for ``EIE_VCD=1``, else its value; an
    :class:`EieError` when the file's directory does not exist (said before the simulation
    starts, not as the simulator's traceback at its end)."""
    value = os.environ.get("EIE_VCD")
    if not value:
        return None
    path = default_name if value == "1" else value
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise EieError(f"EIE_VCD={value}: the directory {parent} does not exist; set EIE_VCD to "
                       "a file in an existing directory, to 1 (a file in the working "
                       "directory), or unset it")
    return path
