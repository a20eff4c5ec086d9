"""Concurrent claimers never receive the same task or origin.

Each claimer is a thread with its own scheduler (its own connection), all
racing on one database.  Loops are bounded: they stop when the pool is empty
or after a fixed number of rounds.
"""

from __future__ import annotations

import datetime
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import pgsched
from pgsched.exc import StaleData
from pgsched.model import ListedOrigin, Task
from utils import args, at, task_type

CLAIMERS = 8


def _id(task):
    return task.id


def _url(origin):
    return origin.url


N_TASKS = 20_000
N_ORIGINS = 20_000


def _claimers(dsn, n=CLAIMERS):
    return [pgsched.get_scheduler("postgresql", db=dsn, max_size=1) for _ in range(n)]


def _drain(grab, key, bound):
    """Call grab() until it returns nothing (at most bound times); the keys of all it gave."""
    got = []
    for _ in range(bound):
        batch = grab()
        if not batch:
            break
        got += [key(item) for item in batch]
    return got


def _race(dsn, work, n=CLAIMERS):
    """Run work(scheduler) in n threads started together; return their results."""
    schedulers = _claimers(dsn, n)
    barrier = threading.Barrier(n)

    def run(s):
        barrier.wait(timeout=60)
        return work(s)

    try:
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(run, schedulers, timeout=600))
    finally:
        for s in schedulers:
            s.close()


@pytest.mark.slow
@pytest.mark.parametrize("priority", [None, "high"])
def test_tasks_claimed_exactly_once(dsn, priority):
    s = pgsched.get_scheduler("postgresql", db=dsn)
    s.create_task_type(task_type())
    for start in range(0, N_TASKS, 5000):
        s.create_tasks(
            [
                Task(type="load-git", arguments=args(i), next_run=at(), priority=priority)
                for i in range(start, start + 5000)
            ]
        )
    grab = s.grab_ready_priority_tasks if priority else s.grab_ready_tasks

    def claim(c):
        fn = getattr(c, grab.__name__)
        return _drain(lambda: fn("load-git", timestamp=at(1), num_tasks=97), _id, N_TASKS)

    results = _race(dsn, claim)
    claimed = Counter(i for r in results for i in r)
    assert len(claimed) == N_TASKS
    assert max(claimed.values()) == 1
    assert sum(1 for r in results if r) > 1  # several claimers did get work
    assert s.search_tasks(status="next_run_not_scheduled") == []
    s.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy",
    [
        "oldest_scheduled_first",
        "never_visited_oldest_update_first",
        "origins_without_last_update",
        "first_visits_after_listing",
    ],
)
def test_visits_claimed_once(dsn, policy):
    s = pgsched.get_scheduler("postgresql", db=dsn)
    lister = s.get_or_create_lister("forge")
    lister = s.update_lister(lister.evolve(last_listing_finished_at=at(1)))
    last_update = None if policy == "origins_without_last_update" else at(-5)
    for start in range(0, N_ORIGINS, 5000):
        s.record_listed_origins(
            [
                ListedOrigin(
                    lister_id=lister.id,
                    url=f"https://forge.example/{i}",
                    visit_type="git",
                    last_update=last_update + datetime.timedelta(seconds=i)
                    if last_update
                    else None,
                )
                for i in range(start, start + 5000)
            ]
        )

    def claim(c):
        return _drain(
            lambda: c.grab_next_visits("git", 250, policy, lister_uuid=lister.id, timestamp=at(2)),
            _url,
            N_ORIGINS,
        )

    results = _race(dsn, claim)
    claimed = Counter(u for r in results for u in r)
    assert max(claimed.values()) == 1
    assert len(claimed) == N_ORIGINS
    s.close()


@pytest.mark.slow
def test_already_visited_by_lag_claimed_once(dsn):
    from pgsched.model import OriginVisitStats

    s = pgsched.get_scheduler("postgresql", db=dsn)
    lister = s.get_or_create_lister("forge")
    n = 5000
    s.record_listed_origins(
        [
            ListedOrigin(lister_id=lister.id, url=f"u{i}", visit_type="git", last_update=at(-1))
            for i in range(n)
        ]
    )
    s.origin_visit_stats_upsert(
        [
            OriginVisitStats(
                url=f"u{i}",
                visit_type="git",
                last_snapshot=b"\x01" * 20,
                last_successful=at(-100 - i),
                last_visit=at(-100 - i),
            )
            for i in range(n)
        ]
    )

    def claim(c):
        return _drain(
            lambda: c.grab_next_visits("git", 100, "already_visited_order_by_lag", timestamp=at()),
            _url,
            n,
        )

    claimed = Counter(u for r in _race(dsn, claim) for u in r)
    assert len(claimed) == n and max(claimed.values()) == 1
    s.close()


@pytest.mark.slow
def test_shared_origins_across_listers_claimed_once(dsn):
    """Origins listed by two listers: one claim per origin, no deadlock error."""
    s = pgsched.get_scheduler("postgresql", db=dsn)
    listers = [s.get_or_create_lister(f"l{i}") for i in range(2)]
    n = 3000
    for lister in listers:
        s.record_listed_origins(
            [ListedOrigin(lister_id=lister.id, url=f"u{i}", visit_type="git") for i in range(n)]
        )

    def claim(c):
        return _drain(
            lambda: c.grab_next_visits("git", 50, "oldest_scheduled_first", timestamp=at()),
            _url,
            n,
        )

    claimed = Counter(u for r in _race(dsn, claim) for u in r)
    assert len(claimed) == n and max(claimed.values()) == 1
    s.close()


def test_get_or_create_lister_concurrent(dsn):
    ids = _race(dsn, lambda c: c.get_or_create_lister("same", "inst").id)
    assert len(set(ids)) == 1


def test_update_lister_concurrent_one_wins(dsn):
    s = pgsched.get_scheduler("postgresql", db=dsn)
    lister = s.get_or_create_lister("contended")

    def update(c):
        try:
            c.update_lister(lister.evolve(current_state={"by": threading.get_ident()}))
            return "won"
        except StaleData:
            return "stale"

    outcomes = Counter(_race(dsn, update))
    assert outcomes == {"won": 1, "stale": CLAIMERS - 1}
    s.close()


def test_record_listed_origins_concurrent_overlap(dsn):
    s = pgsched.get_scheduler("postgresql", db=dsn)
    lister = s.get_or_create_lister("overlap")
    s.record_listed_origins([ListedOrigin(lister_id=lister.id, url="u0", visit_type="git")])
    first_seen = s.get_listed_origins(urls=["u0"]).results[0].first_seen

    def record(c):
        k = threading.get_ident() % 7
        batch = [
            ListedOrigin(lister_id=lister.id, url=f"u{(i * (k + 1)) % 500}", visit_type="git")
            for i in range(500)
        ]
        for _ in range(5):
            c.record_listed_origins(batch)
        return True

    assert all(_race(dsn, record))
    rows = []
    token = None
    while True:
        page = s.get_listed_origins(lister_id=lister.id, limit=200, page_token=token)
        rows += page.results
        token = page.next_page_token
        if token is None:
            break
    assert len(rows) == len({o.url for o in rows}) <= 500
    assert next(o for o in rows if o.url == "u0").first_seen == first_seen
    s.close()
