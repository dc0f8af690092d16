"""Named registries: the one way the core keeps things that are looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from eqsearch.errors import InputError

T = TypeVar("T")

UNKNOWN_REGISTERED = "unknown {field} {name}; registered: {names}"
"""An ``unknown`` template for :class:`Registry` naming the registered items."""


class Registry(Mapping[str, T]):
    """Items of one kind by name, in registration order.

    A registry is a read-only mapping that grows by :meth:`add` or the :meth:`register`
    decorator; :meth:`lookup` finds a name and refuses an unknown one with an
    :class:`~eqsearch.errors.InputError` listing the registered names.

    Args:
        kind: what the items are, for error messages (``"objective"``, ``"solver"``).
        unknown: the error :meth:`lookup` gives for an unknown name, as a template of
            ``{field}``, ``{name}`` (its repr) and ``{names}`` (the choices, comma-separated);
            by default ``"{field} must be one of {names}; got {name}"``.
    """

    def __init__(
        self, kind: str, *, unknown: str = "{field} must be one of {names}; got {name}"
    ) -> None:
        self.kind = kind
        self.unknown = unknown
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` as ``name`` and return it.

        Raises:
            InputError: ``name`` is empty or taken.
        """
        if not isinstance(name, str) or not name:
            raise InputError(f"a {self.kind} needs a non-empty name; got {name!r}")
        if name in self._items:
            raise InputError(f"the {self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator registering what it decorates as ``name`` (and returning it unchanged)."""

        def decorate(item: T) -> T:
            return self.add(name, item)

        return decorate

    def lookup(
        self, name: object, field: str | None = None, where: Callable[[T], bool] | None = None
    ) -> T:
        """The item called ``name`` (among those passing ``where``); an InputError naming
        ``field`` (the kind by default) and the names to choose from when there is none."""
        if isinstance(name, str) and name in self._items:
            item = self._items[name]
            if where is None or where(item):
                return item
        raise InputError(
            self.unknown.format(
                field=field or self.kind, names=", ".join(self.names(where)), name=repr(name)
            )
        )

    def names(self, where: Callable[[T], bool] | None = None) -> tuple[str, ...]:
        """Registered names in registration order (those whose item passes ``where``)."""
        return tuple(name for name, item in self._items.items() if where is None or where(item))

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"


__all__ = ["UNKNOWN_REGISTERED", "Registry"]
