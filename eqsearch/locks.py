"""One writer per run directory: the kernel's locks on the directories and files commands write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eqsearch.errors import InputError

try:
    import fcntl

    _FLOCK = True
except ImportError:  # pragma: no cover - not a POSIX platform: writers run unlocked
    _FLOCK = False

_HELD: dict[tuple[int, int], list[int]] = {}
"""Directories this process holds: (device, inode) → [descriptor, holders]."""


def _refused(what: str, where: Path) -> InputError:
    return InputError(
        f"another process is writing {what} {where}; wait for it to finish or choose another --out"
    )


def _missing_directories(directory: Path) -> list[Path]:
    """``directory`` and the ancestors of it that do not exist yet, deepest first."""
    missing: list[Path] = []
    current = directory
    while not current.exists() and not current.is_symlink() and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing


def _remove_if_empty(directories: list[Path]) -> None:
    """Remove the directories this call created, deepest first, while they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def _lock(descriptor: int, *, shared: bool, wait: bool) -> bool:
    """Take the lock on ``descriptor``; False when another process holds a conflicting one."""
    if not _FLOCK:  # pragma: no cover
        return True
    operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(descriptor, operation if wait else operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _only_holder(descriptor: int) -> bool:
    """Whether no other process holds the lock of ``descriptor`` (that this one holds shared)."""
    if not _FLOCK:  # pragma: no cover
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def hold_directory(
    directory: str | Path,
    *,
    what: str = "the run directory",
    shared: bool = False,
) -> Iterator[Path]:
    """Hold the write lock of ``directory`` for the ``with`` block; create it if missing.

    Every command that writes into a directory holds its lock while it runs: exclusively
    where it owns the directory (``train``, ``demo``, ``nsga``, ``strategy``, the studies), shared
    where several cooperating processes write there at once (the workers of one tuning study,
    the shards of one sampling). A second process asking for a conflicting lock is refused at
    once, before any work. The lock is the kernel's (``flock`` on the directory itself, so no
    lock file is left behind); it dies with its process, even after ``kill -9``. Calls nested
    in this process on a directory it already holds pass through.

    Directories this call creates are removed again when the block raises while they are
    still empty (a refusal leaves nothing behind).

    Raises:
        InputError: ``directory`` is not a directory, or another process holds a conflicting
            lock on it.
    """
    location = Path(directory)
    missing = _missing_directories(location)
    try:
        location.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(location, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileExistsError, NotADirectoryError):
        _remove_if_empty(missing)
        raise InputError(f"{location} is not a directory") from None
    info = os.fstat(descriptor)
    key = (info.st_dev, info.st_ino)
    if key in _HELD:
        os.close(descriptor)
        _HELD[key][1] += 1
        try:
            yield location
        finally:
            _HELD[key][1] -= 1
        return
    try:
        if not _lock(descriptor, shared=shared, wait=False):
            raise _refused(what, location)
    except BaseException:
        os.close(descriptor)
        raise
    _HELD[key] = [descriptor, 1]
    try:
        yield location
    except BaseException:
        if missing and (not shared or _only_holder(descriptor)):
            _remove_if_empty(missing)
        raise
    finally:
        del _HELD[key]
        os.close(descriptor)  # closing the last descriptor releases the lock


@contextmanager
def exclusive_writer(path: str | Path, *, what: str = "file", wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` for the ``with`` block.

    For a file that is written in place (the rows of a samples file, appended one by one): a
    second process that asks for the same file is refused at once (or, with ``wait``, waits
    for it), so two runs never append to one file. The directory holding it is held shared
    for the block (see :func:`hold_directory`): a process that owns the directory, such as a
    ``train --resume`` rewriting its checkpoint, refuses it too. A file that the call creates
    is removed again when the block raises while it is still empty.

    Raises:
        InputError: another process is writing the file or owns its directory.
    """
    location = Path(path)
    directory = f"the directory of {what} {location.name}:"
    with hold_directory(location.parent, what=directory, shared=True):
        try:
            descriptor = os.open(location, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            made = True
        except FileExistsError:
            descriptor = os.open(location, os.O_RDWR)
            made = False
        try:
            if not _lock(descriptor, shared=False, wait=wait):
                raise _refused(what, location)
            try:
                yield
            except BaseException:
                if made and os.fstat(descriptor).st_size == 0:
                    location.unlink(missing_ok=True)
                raise
        finally:
            os.close(descriptor)
