"""Unusual but valid input: stored, found and handed out unchanged.

- urls thousands of characters long (up to the 16 KiB limit exactly) and
  non-ASCII urls (several scripts, combining characters, emoji sequences,
  two urls equal on their first 600 characters): byte for byte through
  record, lookup, paging, visit statistics, grab_next_visits and tasks, in
  process and through pgsched's RPC server and client;
- batches of 20,000 rows in one call (record_listed_origins, create_tasks,
  origin_visit_stats_upsert) through the RPC server;
- NUL characters in JSON values (task arguments, run metadata, lister state,
  extra loader arguments): removed, keys included, the rest kept (README,
  "NUL characters").
"""

from __future__ import annotations

import datetime
import time
import unicodedata

import psycopg
import pytest

import pgsched
from pgsched.api.client import RemoteScheduler
from pgsched.api.server import background_server, make_app
from pgsched.model import ListedOrigin, OriginVisitStats, Task, TaskRun
from utils import BAD_INPUT, args, at, task_type

LIMIT = 16384  # bytes
PREFIX = "https://forge.example/"


def padded(unit: str, total_bytes: int = LIMIT, prefix: str = PREFIX) -> str:
    """prefix + unit repeated, filled with "x" to exactly total_bytes of UTF-8."""
    room = total_bytes - len(prefix.encode())
    n = room // len(unit.encode())
    url = prefix + unit * n
    return url + "x" * (total_bytes - len(url.encode()))


NFC = PREFIX + "café"
NFD = unicodedata.normalize("NFD", NFC)
URLS = [
    PREFIX + "a" * 5000,
    padded("a"),  # exactly the limit, ASCII
    padded("é"),  # exactly the limit, 2-byte characters
    padded("😀"),  # exactly the limit, 4-byte characters
    padded("开源", prefix="https://gitee.com/"),
    # equal on the first 600 characters (the paging index holds 500)
    PREFIX + "p" * 600 + "/b",
    PREFIX + "p" * 600 + "/a",
    PREFIX + "p" * 600,
    "https://gitee.com/开源中国/仓库",
    "https://git.example.org/проект/репозиторий",
    "https://example.org/مشروع/مستودع",
    "https://example.org/שלום",
    NFC,
    NFD,  # distinct from NFC: urls are not normalized
    "https://example.org/👨‍👩‍👧/family",  # zero-width joiners
    "https://example.org/%E2%82%AC",
    "https://example.org/€",
    "https://example.org/a b\tc\u2028d\ufeffe",
    "svn://ex\u00e4mple.org/trunk",
]


def byte_length(url: str) -> int:
    return len(url.encode("utf-8"))


def test_the_urls_are_what_they_claim():
    assert NFC != NFD and len(set(URLS)) == len(URLS)
    assert [byte_length(u) for u in URLS[1:5]] == [LIMIT] * 4
    assert len(URLS[3]) < LIMIT // 3  # far fewer characters than bytes
    assert max(len(u) for u in URLS) >= 5000


def stored_urls(dsn: str, table: str) -> dict[bytes, int]:
    """The urls of a table as PostgreSQL holds them: UTF-8 bytes -> octet_length."""
    query = {
        "listed_origins": "SELECT convert_to(url, 'UTF8'), octet_length(url) "
        "FROM scheduler.listed_origins",
        "origin_visit_stats": "SELECT convert_to(url, 'UTF8'), octet_length(url) "
        "FROM scheduler.origin_visit_stats",
    }[table]
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {bytes(r[0]): r[1] for r in conn.execute(query)}


def test_long_and_non_ascii_urls_byte_for_byte(scheduler, dsn):
    lister = scheduler.get_or_create_lister("forge", "ünïcode")
    recorded = scheduler.record_listed_origins(
        [
            ListedOrigin(lister_id=lister.id, url=u, visit_type="git", last_update=at(-i))
            for i, u in enumerate(URLS)
        ]
    )
    assert [o.url for o in recorded] == URLS
    # in the database: the same bytes
    expected = {u.encode(): byte_length(u) for u in URLS}
    assert stored_urls(dsn, "listed_origins") == expected

    # found, by list and one by one
    found = scheduler.get_listed_origins(urls=URLS).results
    assert sorted(o.url for o in found) == sorted(URLS)
    for u in URLS:
        (one,) = scheduler.get_listed_origins(url=u).results
        assert one.url == u and one.last_update == at(-URLS.index(u))

    # paged three at a time: every url once, in byte order, tokens carrying 16 KiB urls
    paged, token, pages = [], None, 0
    while True:
        page = scheduler.get_listed_origins(lister_id=lister.id, limit=3, page_token=token)
        paged += [o.url for o in page.results]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
        assert pages < 100
    assert paged == sorted(URLS, key=lambda u: u.encode())

    # visit statistics under the same keys
    stats = [
        OriginVisitStats(
            url=u,
            visit_type="git",
            last_visit=at(-30),
            last_successful=at(-30),
            last_visit_status="successful",
            last_snapshot=bytes([i]) * 20,
        )
        for i, u in enumerate(URLS)
    ]
    scheduler.origin_visit_stats_upsert(stats)
    got = scheduler.origin_visit_stats_get([(u, "git") for u in URLS])
    assert {s.url: s.last_snapshot for s in got} == {s.url: s.last_snapshot for s in stats}
    assert stored_urls(dsn, "origin_visit_stats") == expected

    # scheduled: grab_next_visits hands every one out once, unchanged
    grabbed = scheduler.grab_next_visits(
        "git", 100, "oldest_scheduled_first", lister_uuid=lister.id, timestamp=at(1)
    )
    assert sorted(o.url for o in grabbed) == sorted(URLS)
    assert scheduler.grab_next_visits("git", 100, "oldest_scheduled_first", timestamp=at(1)) == []
    after = scheduler.origin_visit_stats_get([(u, "git") for u in URLS])
    assert {s.url: s.last_scheduled for s in after} == {u: at(1) for u in URLS}


def test_long_and_non_ascii_task_arguments(scheduler):
    scheduler.create_task_type(task_type())
    created = scheduler.create_tasks(
        [Task(type="load-git", arguments=args(u, url=u), next_run=at()) for u in URLS]
    )
    assert [t.arguments.args for t in created] == [[u] for u in URLS]
    grabbed = scheduler.grab_ready_tasks("load-git", timestamp=at(1), num_tasks=100)
    assert sorted(t.arguments.kwargs["url"] for t in grabbed) == sorted(URLS)
    assert {t.id for t in grabbed} == {t.id for t in created}


# --------------------------------------------------------------------------
# Batches of tens of thousands of rows, in one call, through the RPC server
# --------------------------------------------------------------------------

BATCH = 20_000


@pytest.fixture
def remote(dsn):
    backend = pgsched.get_scheduler("postgresql", db=dsn)
    try:
        with background_server(make_app(scheduler=backend)) as url:
            client = RemoteScheduler(url, timeout=300)
            try:
                yield client
            finally:
                client.close()
    finally:
        backend.close()


def count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


@pytest.mark.slow
def test_batches_of_20000_rows_in_one_call_through_the_server(remote, dsn):
    lister = remote.get_or_create_lister("big")
    urls = [f"https://big.example/{i:05d}/" + "é" * (i % 50) for i in range(BATCH)]
    figures = {}

    start = time.monotonic()
    recorded = remote.record_listed_origins(
        [
            ListedOrigin(
                lister_id=lister.id,
                url=u,
                visit_type="git",
                last_update=at(-1) + datetime.timedelta(seconds=i),
                extra_loader_arguments={"i": i},
            )
            for i, u in enumerate(urls)
        ]
    )
    figures["record_listed_origins"] = time.monotonic() - start
    assert [o.url for o in recorded] == urls
    assert count(dsn, "SELECT count(*) FROM scheduler.listed_origins") == BATCH

    remote.create_task_type(task_type())
    start = time.monotonic()
    tasks = remote.create_tasks(
        [Task(type="load-git", arguments=args(u), next_run=at()) for u in urls]
    )
    figures["create_tasks"] = time.monotonic() - start
    assert len(tasks) == BATCH and len({t.id for t in tasks}) == BATCH
    assert [t.arguments.args[0] for t in tasks] == urls
    assert count(dsn, "SELECT count(*) FROM scheduler.task") == BATCH

    start = time.monotonic()
    remote.origin_visit_stats_upsert(
        [
            OriginVisitStats(
                url=u,
                visit_type="git",
                last_visit=at(-2),
                last_visit_status="failed",
                next_visit_queue_position=i,
            )
            for i, u in enumerate(urls)
        ]
    )
    figures["origin_visit_stats_upsert"] = time.monotonic() - start
    assert count(dsn, "SELECT count(*) FROM scheduler.origin_visit_stats") == BATCH
    assert (
        count(
            dsn,
            "SELECT count(*) FROM scheduler.origin_visit_stats "
            "WHERE last_visit_status = 'failed' AND next_visit_queue_position IS NOT NULL",
        )
        == BATCH
    )
    sample = remote.origin_visit_stats_get([(urls[i], "git") for i in (0, 9_999, BATCH - 1)])
    assert [s.next_visit_queue_position for s in sample] == [0, 9_999, BATCH - 1]

    # and back out in one call: all 20,000 scheduled tasks
    start = time.monotonic()
    grabbed = remote.grab_ready_tasks("load-git", timestamp=at(1), num_tasks=BATCH)
    figures["grab_ready_tasks"] = time.monotonic() - start
    assert sorted(t.id for t in grabbed) == sorted(t.id for t in tasks)
    print(
        "\n20,000-row calls through the RPC server: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in figures.items())
    )


# --------------------------------------------------------------------------
# NUL characters in JSON values
# --------------------------------------------------------------------------


def test_nul_characters_are_removed_from_json_values(scheduler, dsn):
    scheduler.create_task_type(task_type())
    (t,) = scheduler.create_tasks(
        [Task(type="load-git", arguments=args("a\x00b", k="v\x00", **{"k\x002": 1}), next_run=at())]
    )
    assert t.arguments.args == ["ab"] and t.arguments.kwargs == {"k": "v", "k2": 1}
    # the task's identity is its stored arguments: the NUL-free spelling is the same task
    (again,) = scheduler.create_tasks(
        [Task(type="load-git", arguments=args("ab", k="v", k2=1), next_run=at())]
    )
    assert again.id == t.id

    metadata = {"log": "line 1\x00line 2", "k\x00ey": ["\x00", {"n": "x\x00y"}], "ok": "é"}
    run = scheduler.schedule_task_run(t.id, "nul-run", metadata=metadata, timestamp=at(1))
    kept = {"log": "line 1line 2", "key": ["", {"n": "xy"}], "ok": "é"}
    assert run.metadata == kept
    run = scheduler.start_task_run("nul-run", metadata={"pid\x00": "\x00\x00"}, timestamp=at(2))
    assert run.metadata == {**kept, "pid": ""}
    run = scheduler.end_task_run(
        "nul-run", "eventful", metadata={"end": "\x00done"}, timestamp=at(3)
    )
    assert run.metadata == {**kept, "pid": "", "end": "done"}
    assert scheduler.get_task_runs([t.id])[0].metadata == run.metadata

    lister = scheduler.get_or_create_lister("nul-lister")
    lister = scheduler.update_lister(lister.evolve(current_state={"page\x00": "n\x00ext"}))
    assert lister.current_state == {"page": "next"}
    # keys equal once their NULs are gone: the later one is kept
    collided = scheduler.update_lister(
        lister.evolve(current_state={"a\x00": 1, "a": 2, "\x00a": 3})
    )
    assert collided.current_state == {"a": 3}
    lister = scheduler.update_lister(collided.evolve(current_state={"page": "next"}))
    (o,) = scheduler.record_listed_origins(
        [
            ListedOrigin(
                lister_id=lister.id,
                url=PREFIX + "nul",
                visit_type="git",
                extra_loader_arguments={"branch\x00": ["ma\x00in"]},
            )
        ]
    )
    assert o.extra_loader_arguments == {"branch": ["main"]}
    # in the tables: what the calls returned
    with psycopg.connect(dsn, autocommit=True) as conn:
        (stored,) = conn.execute(
            "SELECT metadata FROM scheduler.task_run WHERE backend_id = 'nul-run'"
        ).fetchone()
        (state,) = conn.execute(
            "SELECT current_state FROM scheduler.lister WHERE name = 'nul-lister'"
        ).fetchone()
    assert stored == run.metadata and state == {"page": "next"}


# --------------------------------------------------------------------------
# Extreme but accepted settings
# --------------------------------------------------------------------------


def test_a_task_type_with_the_longest_intervals_still_ends_its_runs(scheduler):
    longest = datetime.timedelta(days=999_999_999)
    try:
        scheduler.create_task_type(
            task_type(
                "forever", default_interval=longest, min_interval=longest, max_interval=longest
            )
        )
    except BAD_INPUT as e:  # refused, naming the interval
        assert "interval" in str(e)
    else:
        raise AssertionError("an interval of 999,999,999 days was accepted")
    century = datetime.timedelta(days=36000)  # 100 years, as PostgreSQL compares intervals
    scheduler.create_task_type(
        task_type("forever", default_interval=century, min_interval=century, max_interval=None)
    )
    (t,) = scheduler.create_tasks([Task(type="forever", arguments=args(), next_run=at())])
    scheduler.grab_ready_tasks("forever", timestamp=at(1))
    scheduler.mass_schedule_task_runs([TaskRun(task=t.id, backend_id="forever-1")])
    scheduler.start_task_run("forever-1", timestamp=at(1))
    run = scheduler.end_task_run("forever-1", "uneventful", timestamp=at(2))
    assert run.status == "uneventful"
    (t,) = scheduler.get_tasks([t.id])
    assert t.next_run > at(2)
