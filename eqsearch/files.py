"""Files eqsearch writes and reads: atomic writes, output checks, bounded reads, write locks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eqsearch.errors import InputError
from eqsearch.locks import exclusive_writer as exclusive_writer
from eqsearch.locks import hold_directory

MAX_JSON_BYTES = 256 << 20
"""Largest JSON file read (a Pareto front, predictor or config); bigger ones are refused."""

MAX_TEXT_BYTES = 4 << 30
"""Largest text file read whole (a samples file)."""

_SNIFF_BYTES = 4096
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")

KINDS = {
    "checkpoint": "an eqsearch checkpoint",
    "predictor": "a saved predictor",
    "samples": "a samples file",
    "pareto": "a Pareto front file",
    "space": "a space file",
    "onnx": "an ONNX model",
    "weights": "a packed-weights file",
    "image": "an image",
    "json": "a JSON file",
    "table": "a table",
    "report": "a report",
    "latency": "a latency table",
    "probe": "a runtime probe",
}
"""What :func:`sniff_kind` recognises, with the words error messages use for each."""

_FORMAT_KINDS = {
    "eqsearch-supernet": "checkpoint",
    "eqsearch-predictor": "predictor",
    "eqsearch-pareto": "pareto",
    "eqsearch-latency": "latency",
    "eqsearch-runtime-probe": "probe",
}


# -- atomic writes ---------------------------------------------------------------------------


def _umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer of ``target`` left beside it.

    Temporaries are named ``.<name>.<pid>.<random>.tmp``; those whose process no longer runs
    are removed. Returns the removed paths.
    """
    path = Path(target)
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["name"] != path.name or _pid_alive(int(match["pid"])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


@contextmanager
def atomic_writer(path: str | Path, *, binary: bool = True) -> Iterator[IO[Any]]:
    """A stream to a temporary file that replaces ``path`` when the block ends without error.

    The data is fsync'd before the rename and the directory after it, so that after a crash
    ``path`` holds either the old or the new content, never a part. On an error (a full disk,
    an interrupt) the temporary file is removed and ``path`` is left as it was. Files get the
    usual permissions (``0666`` less the umask), not ``mkstemp``'s ``0600``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=_TEMPORARY_SUFFIX, dir=target.parent
    )
    try:
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as stream:
        stream.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, binary=False) as stream:
        stream.write(text)
    return Path(path)


def atomic_save_figure(figure: Any, path: str | Path, **savefig_options: Any) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically (rendered in memory first)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_options)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (see :func:`atomic_writer`).

    A write that fails under torch (a full disk) raises an ``OSError``, the error torch
    wraps in a ``RuntimeError`` of its zip writer.
    """
    import torch

    with atomic_writer(path) as stream:
        try:
            torch.save(obj, stream)
        except RuntimeError as error:
            if isinstance(error.__context__, OSError):
                raise error.__context__ from None
            if "inline_container" not in str(error) and "StreamWriter" not in str(error):
                raise
            reason = str(error).strip().splitlines()[0][:160]
            raise OSError(f"cannot write {path} ({reason})") from None
    return Path(path)


# -- what a file is ----------------------------------------------------------------------------


def _sniff_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [name for name in names if name.endswith("data.pkl")]
            if pickles:
                with archive.open(pickles[0]) as member:
                    head = member.read(1 << 22)
                for marker, kind in _FORMAT_KINDS.items():
                    if marker.encode() in head:
                        return kind
                return "checkpoint"  # some other torch file: treat it as precious
            if names and all(name.endswith(".npy") for name in names):
                return "weights"
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None
    return None


def sniff_kind(path: str | Path) -> str | None:
    """Which kind of eqsearch file ``path`` holds (a key of :data:`KINDS`), or None.

    Reads at most a few KiB (and the pickle index of a zip archive); never unpickles.
    """
    location = Path(path)
    try:
        with location.open("rb") as stream:
            head = stream.read(_SNIFF_BYTES)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(location)
    if head.startswith(b"\x89PNG"):
        return "image"
    if location.suffix == ".onnx" and head[:1] == b"\x08":
        return "onnx"
    text = head.decode("utf-8", errors="replace").lstrip()
    if "\ufffd" in text[:-3]:  # bytes that are not UTF-8 text (the read may cut the last one)
        return None
    if text.startswith("index,config,"):
        return "samples"
    if text.startswith("{"):
        match = re.search(r'"format"\s*:\s*"([^"]+)"', text)
        if match and match[1] in _FORMAT_KINDS:
            return _FORMAT_KINDS[match[1]]
        if text.startswith('{"layers"'):
            return "space"
        return "json"
    return None


# -- checking where output goes ------------------------------------------------------------------


def _check_parent(directory: Path, flag: str, target: Path) -> None:
    """The nearest existing ancestor of ``directory`` must be a directory we may write in."""
    existing = directory
    while not existing.exists():
        if existing.is_symlink():
            raise InputError(
                f"{flag} {target}: {existing} is a symbolic link that leads nowhere "
                "(dangling or a loop)"
            )
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {target}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"{flag} {target}: cannot write in {existing} (permission denied or read-only)"
        )


def check_output_file(
    path: str | Path, *, kind: str, force: bool = False, flag: str = "--out"
) -> Path:
    """Check, before any work, that ``path`` may receive a new file of ``kind``.

    The rule of every command: an existing file is replaced only with ``force`` (``--force``),
    and never when it holds another kind of eqsearch file (a checkpoint is never replaced by
    a table, whatever the flags). Missing parent directories are fine when they can be
    created.

    Raises:
        InputError: ``path`` is a directory or another non-regular file, holds another kind of
            eqsearch file, exists without ``force``, or lies where nothing can be written.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{flag} {target} is a directory; give the path of a file")
    if target.exists() or target.is_symlink():
        if not target.is_file():
            raise InputError(f"{flag} {target} exists and is not a regular file")
        found = sniff_kind(target)
        if found is not None and found != kind and found not in ("json", "table"):
            raise InputError(
                f"{flag} {target} holds {KINDS[found]}; not replacing it with {KINDS[kind]} "
                "(choose another path)"
            )
        if not force:
            raise InputError(f"{flag} {target} exists; pass --force to replace it")
        if not os.access(target, os.W_OK) or not os.access(target.parent, os.W_OK):
            raise InputError(f"{flag} {target}: cannot replace it (permission denied or read-only)")
    _check_parent(target.parent, flag, target)
    return target


def check_output_directory(path: str | Path, *, flag: str = "--out") -> Path:
    """Check that ``path`` is (or can be created as) a directory we may write in.

    Raises:
        InputError: ``path`` or an ancestor is a file, or nothing can be written there.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{flag} {target} exists and is not a directory")
    _check_parent(target, flag, target)
    return target


OWNER_NAME = ".eqsearch-owner.json"
"""The file by which a command marks a directory as its own (``demo``, ``study tune-loss``)."""


def directory_owner(directory: str | Path) -> str | None:
    """The command that marked ``directory`` as its own (see :func:`owned_directory`), or
    None: no mark, or a file at the mark's name that eqsearch did not write."""
    try:
        data = read_json(Path(directory) / OWNER_NAME, limit=1 << 16, what="directory mark")
    except InputError:
        return None
    if not isinstance(data, dict) or data.get("format") != "eqsearch-directory":
        return None
    owner = data.get("command")
    return owner if isinstance(owner, str) else None


def check_outputs(
    directory: str | Path,
    outputs: dict[str, str],
    *,
    force: bool,
    owner: str | None = None,
    flag: str = "--out",
) -> Path:
    """Check, before any work, that a command may write its files ``outputs`` (name → kind,
    see :data:`KINDS`) into ``directory``.

    The output rule of every command: an existing file at an output's name is replaced only
    with ``force``, and never when it holds another kind of eqsearch file. In a directory
    that ``owner`` marked as its own (:func:`owned_directory`), a rerun continues it, and its
    files are replaced without ``force`` (still never one of another kind).

    Raises:
        InputError: see :func:`check_output_directory` and :func:`check_output_file`.
    """
    target = check_output_directory(directory, flag=flag)
    own = owner is not None and directory_owner(target) == owner
    if owner is not None:
        outputs = {OWNER_NAME: "json", **outputs}
    for name, kind in outputs.items():
        check_output_file(target / name, kind=kind, force=force or own, flag=flag)
    return target


@contextmanager
def owned_directory(
    directory: str | Path, owner: str, *, what: str, shared: bool = False
) -> Iterator[Path]:
    """Hold ``directory`` (see :func:`eqsearch.locks.hold_directory`) and mark it as
    ``owner``'s, so that a rerun of ``owner`` recognises it (:func:`directory_owner`).

    A mark this call writes is removed again when the block raises before anything else was
    written there; with the directories the lock created, nothing is left behind.
    """
    with hold_directory(directory, what=what, shared=shared) as location:
        mark = location / OWNER_NAME
        written = directory_owner(location) != owner
        if written:
            payload = {"format": "eqsearch-directory", "command": owner, "version": 1}
            atomic_write_text(mark, json.dumps(payload) + "\n")
        try:
            yield location
        except BaseException:
            if written and [entry.name for entry in location.iterdir()] == [OWNER_NAME]:
                mark.unlink(missing_ok=True)
            raise


# -- bounded reads -------------------------------------------------------------------------------


def read_bytes(path: str | Path, *, limit: int = MAX_TEXT_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises:
        InputError: the file is missing, not a regular file (a device, a FIFO, a directory),
            larger than ``limit``, or unreadable; the message names ``what`` and the path.
    """
    location = Path(path)
    try:
        info = location.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {location}") from None
    except OSError as error:
        raise InputError(f"cannot read {what} {location}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {location} is not a regular file")
    if info.st_size > limit:
        raise InputError(
            f"{what} {location} is {info.st_size:,} bytes; the limit is {limit:,} bytes"
        )
    try:
        with location.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise InputError(f"cannot read {what} {location}: {error.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {location} grew past the limit of {limit:,} bytes while read")
    return data


def read_text(path: str | Path, *, limit: int = MAX_TEXT_BYTES, what: str = "file") -> str:
    """UTF-8 text of a regular file of at most ``limit`` bytes (see :func:`read_bytes`)."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{what} {path} is not UTF-8 text ({error.reason})") from None


def parse_json(text: str | bytes, *, what: str = "JSON") -> Any:
    """``json.loads`` with one-line errors for malformed or absurdly nested documents; numbers
    and keys are read by ``eqsearch.numbers.loads_json`` (finite, bounded, no repeated key)."""
    from eqsearch.numbers import loads_json

    try:
        return loads_json(text)
    except InputError as error:
        raise InputError(f"{what}: {error}") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{what} is not JSON: {error}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be an eqsearch file") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{what} is not UTF-8 text ({error.reason})") from None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes in hex, read in blocks (a checkpoint's or predictor's identity)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path, *, limit: int = MAX_JSON_BYTES, what: str = "file") -> Any:
    """The JSON document in a regular file of at most ``limit`` bytes.

    Raises:
        InputError: see :func:`read_bytes`, or the file is not JSON or nested too deeply.
    """
    data = read_bytes(path, limit=limit, what=what)
    return parse_json(data, what=f"{what} {path}")


@dataclass(frozen=True)
class FileFormat:
    """A JSON file format eqsearch reads: its ``format`` marker and the versions it reads.

    Args:
        name: the value of the file's ``format`` key.
        versions: the ``version`` values this eqsearch reads.
        what: the file's description after "is not" (``"an eqsearch Pareto front file"``).
        kind: the file's kind before "format version" (``"Pareto front"``).
    """

    name: str
    versions: tuple[int, ...]
    what: str
    kind: str

    def check(self, data: Any, source: object) -> dict[str, Any]:
        """``data`` read from ``source``, when it is a JSON object of this format at a
        version this eqsearch reads (an InputError saying which it is not otherwise)."""
        if not isinstance(data, dict) or data.get("format") != self.name:
            raise InputError(f"{source} is not {self.what}")
        if data.get("version") not in self.versions:
            readable = ", ".join(map(str, self.versions))
            raise InputError(
                f"{source} has {self.kind} format version {data.get('version')!r}; this "
                f"eqsearch reads version {readable}"
            )
        return data
