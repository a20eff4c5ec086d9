"""Concurrent claims through one live RPC server: every item handed out once.

One pgsched RPC server (Werkzeug's threaded server, a pool of 8 database
connections) in front of the test database; CLIENTS threads, each with its
own RemoteScheduler (its own HTTP connections), start together and claim
until the pool is empty.  Loops are bounded in rounds and in time.
tests/test_concurrency.py holds the same races in process.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

import pgsched
from pgsched.api.client import RemoteScheduler
from pgsched.api.server import background_server, make_app
from pgsched.model import ListedOrigin, Task
from utils import args, at, task_type

CLIENTS = 6
N_TASKS = 20_000
N_ORIGINS = 20_000
DEADLINE = 240  # seconds, for one race


@pytest.fixture
def server_url(dsn):
    app = make_app({"db": dsn, "pool_max_size": 8})
    try:
        with background_server(app) as url:
            yield url
    finally:
        app.close()


def race(url, claim):
    """claim(client) in CLIENTS threads started together; their results."""
    clients = [RemoteScheduler(url, timeout=120) for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS)
    deadline = time.monotonic() + DEADLINE

    def run(client):
        barrier.wait(timeout=60)
        return claim(client, deadline)

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            return list(pool.map(run, clients, timeout=DEADLINE + 60))
    finally:
        for c in clients:
            c.close()


def check_once(results, expected: set) -> Counter:
    claimed = Counter(x for r in results for x in r)
    duplicates = sum(n - 1 for n in claimed.values())
    assert duplicates == 0, [x for x, n in claimed.items() if n > 1][:10]
    assert set(claimed) == expected
    assert sum(1 for r in results if r) > 1, "only one client got work"
    return claimed


@pytest.mark.slow
@pytest.mark.parametrize("priority", [False, True], ids=["normal", "priority"])
def test_tasks_claimed_exactly_once_through_the_server(dsn, server_url, priority):
    with pgsched.get_scheduler("postgresql", db=dsn) as s:
        s.create_task_type(task_type())
        priorities = ["high", "normal", "low"] if priority else [None]
        created = []
        for start in range(0, N_TASKS, 5000):
            created += s.create_tasks(
                [
                    Task(
                        type="load-git",
                        arguments=args(i),
                        next_run=at(),
                        priority=priorities[i % len(priorities)],
                    )
                    for i in range(start, start + 5000)
                ]
            )
    assert len(created) == N_TASKS

    def claim(client, deadline):
        grab = client.grab_ready_priority_tasks if priority else client.grab_ready_tasks
        got = []
        for _ in range(N_TASKS):  # bounded
            assert time.monotonic() < deadline, "claims took too long"
            batch = grab("load-git", timestamp=at(1), num_tasks=97)
            if not batch:
                return got
            got += [t.id for t in batch]
        return got

    start = time.monotonic()
    results = race(server_url, claim)
    elapsed = time.monotonic() - start
    claimed = check_once(results, {t.id for t in created})
    with psycopg.connect(dsn, autocommit=True) as conn:
        statuses = dict(
            conn.execute("SELECT status::text, count(*) FROM scheduler.task GROUP BY 1")
        )
    assert statuses == {"next_run_scheduled": N_TASKS}
    print(
        f"\nRPC task claims ({'priority' if priority else 'normal'}): {CLIENTS} clients, "
        f"{sum(claimed.values())} tasks claimed, 0 duplicates, {elapsed:.1f} s, "
        f"per client {sorted(len(r) for r in results)}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy",
    ["oldest_scheduled_first", "never_visited_oldest_update_first", "first_visits_after_listing"],
)
def test_visits_claimed_once_through_the_server(dsn, server_url, policy):
    with pgsched.get_scheduler("postgresql", db=dsn) as s:
        lister = s.get_or_create_lister("forge")
        lister = s.update_lister(lister.evolve(last_listing_finished_at=at(1)))
        urls = [f"https://forge.example/{i}" for i in range(N_ORIGINS)]
        for start in range(0, N_ORIGINS, 5000):
            s.record_listed_origins(
                [
                    ListedOrigin(
                        lister_id=lister.id,
                        url=urls[i],
                        visit_type="git",
                        last_update=at(-5) + datetime.timedelta(seconds=i),
                    )
                    for i in range(start, start + 5000)
                ]
            )

    def claim(client, deadline):
        got = []
        for _ in range(N_ORIGINS):  # bounded
            assert time.monotonic() < deadline, "claims took too long"
            batch = client.grab_next_visits(
                "git", 250, policy, lister_uuid=lister.id, timestamp=at(2)
            )
            if not batch:
                return got
            got += [o.url for o in batch]
        return got

    start = time.monotonic()
    results = race(server_url, claim)
    elapsed = time.monotonic() - start
    claimed = check_once(results, set(urls))
    with psycopg.connect(dsn, autocommit=True) as conn:
        scheduled = conn.execute(
            "SELECT count(*) FROM scheduler.origin_visit_stats WHERE last_scheduled = %s",
            (at(2),),
        ).fetchone()[0]
    assert scheduled == N_ORIGINS
    print(
        f"\nRPC visit claims ({policy}): {CLIENTS} clients, {sum(claimed.values())} origins "
        f"claimed, 0 duplicates, {elapsed:.1f} s, per client {sorted(len(r) for r in results)}"
    )
