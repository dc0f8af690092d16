"""Progress bars of a training run: rich bars on the main process, nothing elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Progress:
    """Rich progress bars where ``enabled`` (the main process), nothing elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    @contextmanager
    def running(self) -> Iterator[Progress]:
        """Show the bars while the context runs (tasks added outside it show nothing)."""
        if not self.enabled:
            yield self
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ) as progress:
            self._progress = progress
            yield self
            self._progress = None

    def add(self, description: str, total: int) -> Any:
        """A new bar of ``total`` steps; its task handle (None without bars)."""
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total, status="")

    def update(self, task: Any, **kwargs: Any) -> None:
        """Advance or relabel a bar (``advance``, ``completed``, ``status``)."""
        if self._progress is not None and task is not None:
            self._progress.update(task, **kwargs)

    def remove(self, task: Any) -> None:
        """Take a finished bar away."""
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)

    def note(self, text: str) -> None:
        """Print a line above the bars (nothing without them)."""
        if self._progress is not None:
            self._progress.console.print(text)
