"""Helpers shared by the interface tests (they run in process and over RPC)."""

from __future__ import annotations

import datetime

from pgsched.api.client import RemoteException
from pgsched.model import TaskArguments, TaskType

UTC = datetime.UTC

# What a bad argument raises: ValueError/TypeError in process; over RPC the
# server answers 400 and the client raises RemoteException carrying the map.
BAD_INPUT = (ValueError, TypeError, RemoteException)

T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float = 0, days: float = 0) -> datetime.datetime:
    return T0 + datetime.timedelta(hours=hours, days=days)


def task_type(name: str = "load-git", **overrides) -> TaskType:
    values = dict(
        type=name,
        description="Update a git repository",
        backend_name="swh.loader.git.tasks.UpdateGitRepository",
        default_interval=datetime.timedelta(days=8),
        min_interval=datetime.timedelta(hours=12),
        max_interval=datetime.timedelta(days=32),
        backoff_factor=2.0,
        max_queue_length=1000,
        num_retries=2,
        retry_delay=datetime.timedelta(minutes=30),
    )
    values.update(overrides)
    return TaskType(**values)


def args(*a, **kw) -> TaskArguments:
    return TaskArguments(args=list(a), kwargs=kw)
