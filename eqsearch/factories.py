"""User code named as ``module:function``: imported only when the user named it, never a file."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from eqsearch.errors import InputError

_TRUSTED: set[str] = set()
"""References the user named in this process (a flag, a Python call, ``trust_factories``)."""

FILE_MODULE_PREFIX = "eqsearch_user_code_"
"""Modules loaded from a file path are registered in ``sys.modules`` under this prefix."""


@dataclass(frozen=True)
class FactoryReference:
    """A parsed ``module:function`` reference: a dotted module name or a ``.py`` file path,
    and the function's name in it."""

    text: str
    module: str
    function: str

    @property
    def is_file(self) -> bool:
        """Whether the module part is a path to a ``.py`` file (``./nets.py:make_net``)."""
        return self.module.endswith(".py") or "/" in self.module or os.sep in self.module


def is_reference(name: str) -> bool:
    """Whether ``name`` is written as a ``module:function`` reference (not a registered name)."""
    return ":" in name


def parse_reference(text: str, *, what: str = "factory") -> FactoryReference:
    """Split ``package.module:function`` or ``path/to/file.py:function``.

    Raises:
        InputError: no module part, or a function part that is not an identifier.
    """
    module, _, function = str(text).rpartition(":")
    if not module or not function.isidentifier():
        raise InputError(
            f"a {what} is written package.module:function or path/to/file.py:function; got {text!r}"
        )
    if not (module.endswith(".py") or "/" in module or os.sep in module) and not all(
        part.isidentifier() for part in module.split(".")
    ):
        raise InputError(f"{text!r}: {module!r} is neither a module name nor a .py file path")
    return FactoryReference(str(text), module, function)


def trust_factories(references: Iterable[str]) -> None:
    """Allow files (checkpoints, config files) to name these ``module:function`` references
    in this process; the way to reload a checkpoint of one's own model in a fresh process."""
    for reference in references:
        _TRUSTED.add(parse_reference(reference).text)


@contextmanager
def trust_scope() -> Iterator[None]:
    """Forget, when the block ends, what was trusted inside it (one command of many run in
    one process, as in tests)."""
    before = set(_TRUSTED)
    try:
        yield
    finally:
        _TRUSTED.clear()
        _TRUSTED.update(before)


def is_trusted(reference: str) -> bool:
    """Whether the user named ``reference`` in this process."""
    return reference in _TRUSTED


def check_named_by_file(reference: str, *, source: str, what: str = "model") -> None:
    """Refuse a ``module:function`` reference that a file names unless the user trusted it.

    Raises:
        InputError: one line naming the file, the reference and how to allow it.
    """
    if is_reference(reference) and not is_trusted(reference):
        raise InputError(
            f"{source} names the {what} factory {reference!r}: eqsearch runs code named in a "
            f"file only when you name it too; pass --trust-{what} {reference} (Python: "
            f"eqsearch.factories.trust_factories([{reference!r}])) if you trust that code"
        )


def locate_module(reference: FactoryReference) -> None:
    """Check that the module of ``reference`` can be found, without running it (beyond the
    parent packages' ``__init__``): the cheap check before the heavy imports.

    Raises:
        InputError: no such file or module.
    """
    if reference.is_file:
        if not Path(reference.module).is_file():
            raise InputError(f"{reference.text!r}: no such file {reference.module}")
        return
    if _find_spec(reference.module) is None:
        _add_working_directory()
        if _find_spec(reference.module) is None:
            raise InputError(
                f"{reference.text!r}: cannot import {reference.module}: no such module on "
                "the Python path or in the working directory (a file works too: "
                "path/to/file.py:function)"
            )


def load_factory(text: str, *, what: str = "factory") -> Callable[..., Any]:
    """Import the module of a ``module:function`` reference the user named and return the
    function; the reference counts as trusted from then on.

    A module that is not on the Python path is looked for in the working directory; a
    ``.py`` path is loaded from that file.

    Raises:
        InputError: a malformed reference, a module that does not import, or no such function.
    """
    reference = parse_reference(text, what=what)
    module = _import(reference)
    factory = getattr(module, reference.function, None)
    if not callable(factory):
        raise InputError(f"{text!r}: {reference.module} has no function {reference.function!r}")
    _TRUSTED.add(reference.text)
    return factory  # type: ignore[no-any-return]


def _import(reference: FactoryReference) -> ModuleType:
    try:
        if reference.is_file:
            return _import_file(Path(reference.module))
        try:
            return importlib.import_module(reference.module)
        except ModuleNotFoundError as error:
            if error.name is None or not reference.module.startswith(error.name):
                raise
            if not _add_working_directory():
                raise
            return importlib.import_module(reference.module)
    except ImportError as error:
        raise InputError(
            f"{reference.text!r}: cannot import {reference.module} ({error})"
        ) from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ImportError(f"no such file {path}")
    resolved = path.resolve()
    name = FILE_MODULE_PREFIX + "".join(
        character if character.isalnum() else "_" for character in str(resolved)
    )
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # forked workers and pickles find it by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _add_working_directory() -> bool:
    """Put the working directory last on ``sys.path`` (last: it never shadows an installed
    module), where it is not yet; returns whether it was added."""
    directory = os.getcwd()
    if directory in sys.path or "" in sys.path:
        return False
    sys.path.append(directory)
    importlib.invalidate_caches()
    return True
