"""pgsched: a SQL-first scheduler for large archive crawlers.

``get_scheduler("postgresql", db=DSN)`` gives the in-process backend (the
functions of the ``scheduler`` schema behind a thin shim);
``get_scheduler("remote", url=URL)`` gives the RPC client of a pgsched (or
compatible) server.  Both implement ``pgsched.interface.SchedulerInterface``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_scheduler(cls: str, **kwargs: Any):
    """A scheduler backend: ``cls`` is "postgresql" (``db=``) or "remote" (``url=``)."""
    if cls in ("postgresql", "local"):
        from .backend import PostgresScheduler

        if "db" not in kwargs:
            raise ValueError("get_scheduler('postgresql'): the db= connection string is required")
        return PostgresScheduler(**kwargs)
    if cls == "remote":
        from .api.client import RemoteScheduler

        if "url" not in kwargs:
            raise ValueError("get_scheduler('remote'): the url= argument is required")
        return RemoteScheduler(**kwargs)
    raise ValueError(f"cls: unknown scheduler class {cls!r}; use 'postgresql' or 'remote'")


__all__ = ["get_scheduler", "__version__"]
