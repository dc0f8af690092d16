"""Where measurements of this machine are kept between runs (``$EQSEARCH_CACHE``)."""

from __future__ import annotations

import os
from pathlib import Path

from eqsearch.errors import InputError
from eqsearch.latency.fingerprint import cpu_name, runtime_version
from eqsearch.latency.kernels import KernelTable

CACHE_VARIABLE = "EQSEARCH_CACHE"


def cache_directory() -> Path:
    """``$EQSEARCH_CACHE``, else ``~/.cache/eqsearch``."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "eqsearch"


def probe_path(table: KernelTable) -> Path:
    """Where a probe of this machine is kept: one file per runtime, version and threads."""
    key = table.key
    return cache_directory() / f"probe-{key.runtime}-{key.version}-{key.threads}t-{key.digest}.json"


def find_probe(runtime: str) -> KernelTable | None:
    """The newest stored probe of ``runtime`` taken on this CPU with the installed version."""
    from eqsearch.files import read_json

    version = runtime_version(runtime)
    cpu = cpu_name()
    found: list[tuple[float, KernelTable]] = []
    for path in cache_directory().glob(f"probe-{runtime}-*.json"):
        try:
            table = KernelTable.from_dict(read_json(path, what="probe"), source=str(path))
        except InputError:
            continue
        if table.key.cpu == cpu and table.key.version == version:
            found.append((path.stat().st_mtime, table))
    return max(found, key=lambda item: item[0])[1] if found else None
