"""The Optuna storage of the loss-weight tuning study: SQLite or PostgreSQL by URL, with the
installed driver named and the password kept out of messages."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import optuna

from eqsearch.errors import InputError

POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes that name a PostgreSQL server."""


def storage_url_with_driver(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed named in it.

    SQLAlchemy reads a bare ``postgresql://`` URL as psycopg2's; eqsearch's ``postgres`` extra
    installs psycopg 3, so where psycopg2 is missing the URL becomes ``postgresql+psycopg://``
    (a URL that names its driver, ``postgresql+...://``, is left as it is).

    Raises:
        ValueError: a PostgreSQL URL and neither driver installed.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in POSTGRES_SCHEMES:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql://{rest}"
    if importlib.util.find_spec("psycopg") is None:
        raise InputError(
            "a PostgreSQL storage needs the psycopg driver: pip install 'eqsearch[postgres]'"
        )
    return f"postgresql+psycopg://{rest}"


def _redacted(url: str) -> str:
    """``url`` with its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return url.partition("://")[0] + "://..."


def open_storage(url: str, *, attempts: int = 5) -> optuna.storages.BaseStorage:
    """The RDB storage at ``url``; a storage that cannot be opened is one ValueError line."""
    from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

    url = storage_url_with_driver(url)
    # Several worker processes share one SQLite file: wait for locks, and when two create the
    # schema at the same moment, the loser retries and finds the tables in place.
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
    if not url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}} if "psycopg" in url else {}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (ArgumentError, ImportError, ModuleNotFoundError) as error:
            raise InputError(f"cannot use the storage {_redacted(url)}: {error}") from None
        except SQLAlchemyError as error:
            # a lost race to create the schema (or a locked SQLite file) is worth a retry,
            # a server that refuses the connection is not
            retry = url.startswith("sqlite") or not isinstance(error, OperationalError)
            if retry and attempt < attempts - 1:
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()
            raise InputError(
                f"cannot open the study storage {_redacted(url)}: {reason[0] if reason else error}"
            ) from None
    raise AssertionError("unreachable")
