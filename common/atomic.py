"""Atomic output: write to a temporary path beside the target, then rename.

Nothing half-written is ever left at the target path, and nothing temporary is left beside it:

* on any exception -- including Ctrl-C (SIGINT) and SIGTERM, which raises
  :class:`~eie.common.signals.Terminated` while a writer runs -- the temporary file or directory
  is removed and the target is untouched (an existing target is replaced only on success);
* the steps that must happen together (create the temporary, rename it onto the target, move
  an old directory aside and delete it, remove the temporary) run with SIGINT and SIGTERM held
  (:func:`eie.common.signals.deferred`), so a signal lands before them (old output kept) or
  after them (new output complete), never between them;
* every write is recorded (:func:`journal`), so an interrupted command can say which outputs
  are complete and which kept their old content; :func:`abandon_all` removes the temporaries of
  writers an exception left suspended.

A target that is a symbolic link is refused (:class:`~eie.common.errors.EieError`): replacing
it would replace the link, not the file it points to. File-system errors of the writer's own
steps, and a full disk while writing, become an ``EieError`` naming the path (old output kept).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .errors import EieError
from .signals import deferred, sigterm_raises

__all__ = ["atomic_file", "atomic_dir", "journal", "reset_journal", "abandon_all", "Write",
           "COMPLETE", "KEPT", "ABSENT", "WRITING"]

#: :attr:`Write.state` values
WRITING, COMPLETE, KEPT, ABSENT = "writing", "complete", "kept", "absent"

#: errors while writing the content that are about the disk, not the program
_DISK_ERRORS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO")
                if hasattr(errno, name)}
#: the journal keeps this many writes at most (a long-running library caller)
_JOURNAL_MAX = 4096


@dataclass
class Write:
    """One atomic write: its target, whether something was there before, and its state:
    ``writing``, ``complete`` (the new output is in place), ``kept`` (abandoned; the old output
    is in place) or ``absent`` (abandoned; there was nothing before and there is nothing now)."""

    target: Path
    existed: bool
    state: str = WRITING


_journal: list[Write] = []
_live: dict[int, Callable[[], None]] = {}


def journal() -> list[Write]:
    """Every write since :func:`reset_journal`, oldest first."""
    return list(_journal)


def reset_journal() -> None:
    _journal.clear()


def _record(rec: Write, cleanup: Callable[[], None]) -> None:
    if len(_journal) >= _JOURNAL_MAX:
        del _journal[:len(_journal) // 2]
    _journal.append(rec)
    _live[id(rec)] = cleanup


def abandon_all() -> None:
    """Finish the cleanup of every write still under way (a writer suspended by an exception
    that has not unwound it yet): remove its temporaries, keep the old output."""
    for cleanup in list(_live.values()):
        cleanup()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700; give the result the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise EieError(f"{path} is a symbolic link; give the path it points to "
                       f"({os.path.realpath(path)}) or another name (the link is left alone)")


def _os_error(path: Path, exc: OSError, existed: bool) -> EieError:
    kept = "the old output is kept" if existed else "nothing was written"
    return EieError(f"cannot write {path}: {exc.strerror or exc} ({kept})")


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` and its missing ancestors; return the ones created, deepest first."""
    made, p = [], parent
    while not os.path.lexists(p) and p != p.parent:
        made.append(p)
        p = p.parent
    parent.mkdir(parents=True, exist_ok=True)
    return made


def _remove_parents(made: list[Path]) -> None:
    for d in made:                      # deepest first; stop at the first one not empty
        try:
            os.rmdir(d)
        except OSError:
            break


def _remove(p: Path | None, is_dir: bool) -> None:
    if p is None:
        return
    if is_dir:
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


class _Pending:
    """One write under way: its journal record, its temporary and the parents it created.
    :meth:`cleanup` (on failure, a signal, or :func:`abandon_all`) removes what it made and
    keeps the old output; :meth:`finish` marks it committed. Each runs with signals held."""

    def __init__(self, rec: Write, is_dir: bool):
        self.rec, self.is_dir = rec, is_dir
        self.tmp: Path | None = None
        self.made: list[Path] = []
        self.done = False
        _record(rec, self.cleanup)

    def finish(self) -> None:
        self.done = True
        _live.pop(id(self.rec), None)

    def cleanup(self) -> None:
        if self.done:
            return
        with deferred():
            self.done = True
            _remove(self.tmp, is_dir=self.is_dir)
            _remove_parents(self.made)
            if self.rec.state == WRITING:
                self.rec.state = KEPT if self.rec.existed else ABSENT
            _live.pop(id(self.rec), None)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    The parent directory is created when missing (the ``eie`` commands check their outputs
    first, :mod:`eie.common.outputs`)."""
    path = Path(path)
    _refuse_link(path)
    if path.is_dir():
        raise EieError(f"{path} is a directory; give a file name")
    rec = Write(path, os.path.lexists(path))

    with sigterm_raises():
        pending = None
        try:
            with deferred():
                pending = _Pending(rec, is_dir=False)
                try:
                    pending.made = _make_parents(path.parent)
                    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                               dir=path.parent)
                    pending.tmp = Path(tmp)
                except OSError as exc:
                    raise _os_error(path, exc, rec.existed) from None
            try:
                with os.fdopen(fd, mode) as f:
                    yield f
            except OSError as exc:
                if exc.errno in _DISK_ERRORS:
                    raise _os_error(path, exc, rec.existed) from None
                raise
            with deferred():
                try:
                    _usual_mode(Path(tmp), is_dir=False)
                    os.replace(tmp, path)
                except OSError as exc:
                    raise _os_error(path, exc, rec.existed) from None
                rec.state = COMPLETE
                pending.finish()
        finally:
            if pending is not None:
                pending.cleanup()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path``.

    An existing directory at ``path`` is moved aside and deleted only after the new one is in
    place, all with SIGINT and SIGTERM held, so a failure or a signal at any point leaves the
    old content or the new one, and no ``.tmp``/``.old`` directory beside it. Whether ``path``
    may be replaced at all is the caller's decision (:mod:`eie.common.outputs`)."""
    path = Path(path)
    _refuse_link(path)
    if os.path.lexists(path) and not path.is_dir():
        raise EieError(f"{path} exists and is not a directory; choose another output path")
    rec = Write(path, os.path.lexists(path))

    with sigterm_raises():
        pending = None
        try:
            with deferred():
                pending = _Pending(rec, is_dir=True)
                try:
                    pending.made = _make_parents(path.parent)
                    tmp = pending.tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.",
                                                              suffix=".tmp", dir=path.parent))
                except OSError as exc:
                    raise _os_error(path, exc, rec.existed) from None
            try:
                yield tmp
            except OSError as exc:
                if exc.errno in _DISK_ERRORS:
                    raise _os_error(path, exc, rec.existed) from None
                raise
            with deferred():
                _commit_dir(tmp, path, rec)
                pending.finish()
        finally:
            if pending is not None:
                pending.cleanup()


def _commit_dir(tmp: Path, path: Path, rec: Write) -> None:
    """Put ``tmp`` at ``path`` (signals held by the caller)."""
    try:
        _usual_mode(tmp, is_dir=True)
        _refuse_link(path)
        old = None
        if os.path.lexists(path):
            if not path.is_dir():
                raise EieError(f"{path} exists and is not a directory; choose another output "
                               "path")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
    except OSError as exc:
        raise _os_error(path, exc, rec.existed) from None
    rec.state = COMPLETE
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_npz(file, arrays: dict, *, compressed: bool = False) -> None:
    """``numpy.savez`` (or ``savez_compressed``) of ``arrays`` to ``file`` (a path or an open
    binary file, usually an :func:`atomic_file` or a file in an :func:`atomic_dir`) with SIGINT
    and SIGTERM held while the archive is written, and delivered when it is complete.

    A signal landing inside NumPy's zip writer can leave a member's write handle open; the
    ``ZipFile``'s finaliser then prints an ignored ``ValueError`` traceback on the way out,
    though the atomic writer around it keeps the old output as it should. Held, the signal's
    exception is raised here once the archive is whole, and the atomic writer discards it."""
    import numpy as np

    with deferred():
        (np.savez_compressed if compressed else np.savez)(file, **arrays)
