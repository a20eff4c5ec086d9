"""Bad input, table-driven: every kind is refused with an error naming the
argument, answered 400 over RPC, and leaves the database exactly as it was.

Two tables:

- ``CALLS``: interface calls with a bad argument, each run twice: in process
  (pgsched's backend) and through pgsched's RPC server and client.  Over RPC
  the client re-raises nothing, so that every error shows its HTTP status.
  When pgsched's own client refuses to send a call (a naive datetime, a
  missing argument, a model that cannot be built), the case also carries the
  raw JSON request another client could send, and the server must answer it
  400 naming the argument.
- ``BODIES``: requests only a raw HTTP client sends (undecodable bodies, wrong
  Content-Type, malformed wrapped values), posted to a live server.

The cases share one database per module (a clone of the session's migrated
template, filled by :func:`fill` with rows in every table).  Before and after
each case every table of the ``scheduler`` schema is read whole, in a fixed
order (:func:`dump_tables`); the two reads must be equal.

A case marked xfail is a known defect, described by its reason; strict, so
that it fails once fixed and the mark has to go.  The body-size limit (413)
is tested in test_rpc_server.py (test_body_over_the_limit_is_413 and its
chunked variant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

import pgsched
from pgsched.api import serializers as S
from pgsched.api.client import RemoteException, RemoteScheduler
from pgsched.api.server import background_server, make_app
from pgsched.exc import SchedulerException
from pgsched.model import (
    ListedOrigin,
    Lister,
    OriginVisitStats,
    Task,
    TaskRun,
)
from utils import args, at, task_type

NAIVE = datetime.datetime(2026, 1, 1, 12, 0)  # no tzinfo
NAN, INF = float("nan"), float("inf")
URL_LIMIT = 16384  # bytes (README: "Keys and long urls")
PREFIX = "https://forge.example/"
URL_TOO_LONG = PREFIX + "x" * (URL_LIMIT + 1 - len(PREFIX))  # 16385 ASCII bytes
# Fewer characters than the limit, more bytes: the limit counts UTF-8 bytes.
URL_TOO_LONG_UTF8 = PREFIX + "é" * ((URL_LIMIT - len(PREFIX)) // 2 + 1)


# --------------------------------------------------------------------------
# The database before and after
# --------------------------------------------------------------------------

Q_SCHEDULER_TABLES = """
SELECT c.relname FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = 'scheduler'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""


def dump_tables(dsn: str) -> dict[str, list[str]]:
    """Every row of every table of schema scheduler, as text, sorted."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(Q_SCHEDULER_TABLES)]
        return {
            table: [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT t::text FROM {} AS t ORDER BY 1").format(
                        sql.Identifier("scheduler", table)
                    )
                )
            ]
            for table in tables
        }


@dataclasses.dataclass
class World:
    """What :func:`world` stored, for the cases to refer to."""

    lister: Lister
    task_ids: list[int]
    backend_id: str


_REL_DB_RE = re.compile(r"^pgsched_rel_(\d+)_\w+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def module_database(server, suffix: str):
    """A migrated database cloned from the session's template, for one module.

    Named ``pgsched_rel_<pid>_<suffix>``; dropped at the end, and (on a server
    of this machine) any such database left by a pytest run that no longer
    runs is dropped first.
    """
    params = dict(host=server.host, port=server.port, user=server.user, password=server.password)
    local = str(server.host) in ("127.0.0.1", "localhost", "::1") or str(server.host)[:1] == "/"
    with psycopg.connect(make_conninfo(**params, dbname="postgres"), autocommit=True) as conn:
        # a pid means something only for a server on this machine
        names = (
            conn.execute("SELECT datname FROM pg_catalog.pg_database").fetchall() if local else []
        )
        for (name,) in names:
            match = _REL_DB_RE.match(name)
            if match and not _pid_alive(int(match.group(1))):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    name = f"pgsched_rel_{os.getpid()}_{suffix}"
    janitor = DatabaseJanitor(**params, dbname=name, template_dbname=server.template_dbname)
    with janitor:
        yield make_conninfo(**params, dbname=name)


@pytest.fixture(scope="module")
def module_dsn(pgsched_server):
    with module_database(pgsched_server, "bad") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def world(module_dsn) -> World:
    """A row in every table of the scheduler schema."""
    return fill(module_dsn)


def fill(dsn: str) -> World:
    """A row in every table of the scheduler schema."""
    with pgsched.get_scheduler("postgresql", db=dsn) as s:
        s.create_task_type(task_type())
        tasks = s.create_tasks(
            [
                Task(type="load-git", arguments=args("a"), next_run=at()),
                Task(type="load-git", arguments=args("b"), next_run=at(), priority="high"),
                Task(type="load-git", arguments=args("c"), next_run=at(), policy="oneshot"),
            ]
        )
        s.grab_ready_tasks("load-git", timestamp=at(1), num_tasks=1)
        s.schedule_task_run(tasks[0].id, "run-1", metadata={"k": "v"}, timestamp=at(1))
        s.start_task_run("run-1", timestamp=at(2))
        lister = s.get_or_create_lister("forge", "main")
        lister = s.update_lister(lister.evolve(last_listing_finished_at=at(3)))
        urls = [f"{PREFIX}{i}" for i in range(4)] + [f"{PREFIX}dépôt"]
        s.record_listed_origins(
            [
                ListedOrigin(lister_id=lister.id, url=u, visit_type="git", last_update=at(-1))
                for u in urls
            ]
        )
        s.origin_visit_stats_upsert(
            [
                OriginVisitStats(
                    url=urls[0],
                    visit_type="git",
                    last_visit=at(-2),
                    last_successful=at(-2),
                    last_visit_status="successful",
                    last_snapshot=b"\x01" * 20,
                )
            ]
        )
        s.visit_scheduler_queue_position_set("git", 42)
        s.update_metrics(timestamp=at(4))
        lister = s.get_lister("forge", "main")
    return World(lister=lister, task_ids=[t.id for t in tasks], backend_id="run-1")


def tables_are_filled(dump: dict[str, list[str]]) -> None:
    """Every table holds rows, so that a stray write or delete shows."""
    assert len(dump) >= 9, sorted(dump)
    assert [t for t, rows in dump.items() if not rows] == []


# --------------------------------------------------------------------------
# Raw requests
# --------------------------------------------------------------------------


def post_raw(url: str, path: str, body: bytes, content_type: str = S.JSON):
    response = requests.post(
        url + path,
        data=body,
        headers={"Content-Type": content_type, "Accept": S.JSON},
        timeout=60,
    )
    return response.status_code, response.json()


def body(**arguments) -> bytes:
    """A well-formed JSON request body."""
    return S.json_dumps(arguments)


def naive(data: bytes) -> bytes:
    """The same body with the offset of every at() datetime removed."""
    aware = json.dumps(at().isoformat()).encode()
    assert aware in data
    return data.replace(aware, json.dumps(at().replace(tzinfo=None).isoformat()).encode())


def replaced(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data, (old, data[:200])
    return data.replace(old.encode(), new.encode(), 1)


# --------------------------------------------------------------------------
# Interface calls with a bad argument
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Bad:
    id: str
    call: Callable[[Any, World], Any]
    arg: str  # named in the error message
    # (path, body) a raw client sends when pgsched's client refuses the call
    raw: Callable[[World], tuple[str, bytes]] | None = None
    raw_arg: str | None = None  # named by the server's answer to raw (default: arg)
    xfail: str | None = None


def task(type_: str = "load-git", i: Any = 0, **changes) -> Task:
    return Task(type=type_, arguments=args(i), next_run=at(), **changes)


def origin(w: World, url: str = PREFIX + "new", **changes) -> ListedOrigin:
    return ListedOrigin(lister_id=w.lister.id, url=url, visit_type="git", **changes)


def grab(s, count=10, policy="oldest_scheduled_first", **kwargs):
    return s.grab_next_visits("git", count, policy, timestamp=at(5), **kwargs)


def tablesample(value) -> Bad:
    return Bad(f"tablesample_{value}", lambda s, w: grab(s, tablesample=value), "tablesample")


CALLS: list[Bad] = [
    # --- tasks ---------------------------------------------------------------
    Bad("tasks_not_a_list", lambda s, w: s.create_tasks("load-git"), "tasks"),
    Bad(
        "tasks_wrong_model_in_list",
        lambda s, w: s.create_tasks([task(), origin(w)]),
        "tasks[1]",
    ),
    Bad(
        "tasks_unknown_task_type",
        lambda s, w: s.create_tasks([task(i="new"), task("no-such-type")]),
        "tasks.type",
    ),
    Bad(
        "tasks_unknown_type_at_the_end_of_5000",
        lambda s, w: s.create_tasks([task(i=i) for i in range(5000)] + [task("nope")]),
        "tasks.type",
    ),
    Bad("tasks_unknown_policy", lambda s, w: s.create_tasks([task()], policy="often"), "policy"),
    Bad(
        "tasks_retries_left_2_64",
        lambda s, w: s.create_tasks([task(retries_left=2**64)]),
        "retries_left",
    ),
    Bad(
        "tasks_nan_in_arguments",
        lambda s, w: s.create_tasks([task(i=NAN)]),
        "tasks.arguments",
    ),
    Bad(
        "tasks_naive_next_run_in_model",
        lambda s, w: s.create_tasks([Task(type="load-git", arguments=args(), next_run=NAIVE)]),
        "next_run",
        raw=lambda w: ("task/create", naive(body(tasks=[task()]))),
        raw_arg="tasks",
    ),
    Bad(
        "tasks_unknown_priority_in_model",
        lambda s, w: s.create_tasks([task(priority="urgent")]),
        "priority",
        raw=lambda w: (
            "task/create",
            replaced(body(tasks=[task(priority="high")]), '"high"', '"urgent"'),
        ),
    ),
    Bad(
        "tasks_missing_field_in_model",
        lambda s, w: s.create_tasks([Task(type="load-git", next_run=at())]),
        "arguments",
        raw=lambda w: (
            "task/create",
            replaced(body(tasks=[task()]), '"arguments": ', '"argumentz": '),
        ),
        raw_arg="tasks",
    ),
    Bad(
        "set_status_unknown_status",
        lambda s, w: s.set_status_tasks(w.task_ids, status="paused"),
        "status",
    ),
    Bad(
        "set_status_ids_not_a_list",
        lambda s, w: s.set_status_tasks(str(w.task_ids[0]), status="disabled"),
        "task_ids",
    ),
    Bad("search_unknown_priority", lambda s, w: s.search_tasks(priority="urgent"), "priority"),
    Bad("search_status_wrong_type", lambda s, w: s.search_tasks(status=5), "status"),
    Bad("search_task_type_wrong_type", lambda s, w: s.search_tasks(task_type=3), "task_type"),
    Bad(
        "search_naive_before",
        lambda s, w: s.search_tasks(before=NAIVE),
        "before",
        raw=lambda w: ("task/search", naive(body(before=at()))),
    ),
    Bad("get_tasks_ids_as_text", lambda s, w: s.get_tasks("1,2"), "task_ids"),
    Bad("get_tasks_id_2_63", lambda s, w: s.get_tasks([1, 2**63]), "task_ids[1]"),
    Bad(
        "peek_num_tasks_negative",
        lambda s, w: s.peek_ready_tasks("load-git", num_tasks=-1),
        "num_tasks",
    ),
    Bad(
        "grab_tasks_num_tasks_10_12",
        lambda s, w: s.grab_ready_tasks("load-git", timestamp=at(9), num_tasks=10**12),
        "num_tasks",
    ),
    Bad(
        "grab_priority_tasks_num_tasks_wrong_type",
        lambda s, w: s.grab_ready_priority_tasks("load-git", num_tasks="all"),
        "num_tasks",
    ),
    Bad("grab_tasks_task_type_wrong_type", lambda s, w: s.grab_ready_tasks(7), "task_type"),
    # --- task types and runs ---------------------------------------------------
    Bad(
        "task_type_nan_backoff_factor",
        lambda s, w: s.create_task_type(task_type("t-nan", backoff_factor=NAN)),
        "backoff_factor",
    ),
    Bad(
        "task_type_infinite_backoff_factor",
        lambda s, w: s.create_task_type(task_type("t-inf", backoff_factor=INF)),
        "backoff_factor",
    ),
    Bad(
        "task_type_negative_interval",
        lambda s, w: s.create_task_type(
            task_type("t-neg", default_interval=datetime.timedelta(days=-1))
        ),
        "default_interval",
    ),
    Bad(
        "task_type_min_above_max",
        lambda s, w: s.create_task_type(
            task_type(
                "t-minmax",
                min_interval=datetime.timedelta(days=9),
                max_interval=datetime.timedelta(days=1),
            )
        ),
        "min_interval",
    ),
    Bad(
        "task_type_empty_name",
        lambda s, w: s.create_task_type(task_type("")),
        "task_type.type",
    ),
    Bad(
        "task_type_wrong_model",
        lambda s, w: s.create_task_type(w.lister),
        "task_type",
    ),
    Bad(
        "schedule_run_unknown_task",
        lambda s, w: s.schedule_task_run(10**9, "run-x", timestamp=at()),
        "task_id",
    ),
    Bad(
        "mass_schedule_wrong_model_in_list",
        lambda s, w: s.mass_schedule_task_runs(
            [TaskRun(task=w.task_ids[1], backend_id="run-y"), task()]
        ),
        "task_runs[1]",
    ),
    Bad(
        "start_run_metadata_not_a_map",
        lambda s, w: s.start_task_run(w.backend_id, metadata=["x"]),
        "metadata",
    ),
    Bad("start_run_nul_in_backend_id", lambda s, w: s.start_task_run("run\x001"), "backend_id"),
    Bad(
        "end_run_unknown_status",
        lambda s, w: s.end_task_run(w.backend_id, "exploded"),
        "status",
    ),
    Bad(
        "end_run_infinite_in_metadata",
        lambda s, w: s.end_task_run(w.backend_id, "eventful", metadata={"t": INF}),
        "metadata",
    ),
    Bad(
        "end_run_naive_timestamp",
        lambda s, w: s.end_task_run(w.backend_id, "eventful", timestamp=NAIVE),
        "timestamp",
        raw=lambda w: (
            "task_run/end",
            naive(body(backend_id=w.backend_id, status="eventful", timestamp=at())),
        ),
    ),
    Bad(
        "runs_limit_10_12",
        lambda s, w: s.get_task_runs(w.task_ids, limit=10**12),
        "limit",
    ),
    Bad(
        "archive_malformed_page_token",
        lambda s, w: s.filter_task_to_archive("2020-01-01", "2030-01-01", page_token="1 x 2"),
        "page_token",
    ),
    Bad(
        "archive_page_token_wrong_type",
        lambda s, w: s.filter_task_to_archive("2020-01-01", "2030-01-01", page_token=[1, 2]),
        "page_token",
    ),
    Bad(
        "archive_timestamp_text",
        lambda s, w: s.filter_task_to_archive("yesterday", "2030-01-01"),
        "after_ts",
    ),
    Bad(
        "archive_naive_timestamp_text",
        lambda s, w: s.filter_task_to_archive("2020-01-01", "2030-01-01T10:00:00"),
        "before_ts",
    ),
    Bad(
        "archive_limit_zero",
        lambda s, w: s.filter_task_to_archive("2020-01-01", "2030-01-01", limit=0),
        "limit",
    ),
    Bad(
        "delete_archived_pair_incomplete",
        lambda s, w: s.delete_archived_tasks([{"task_id": w.task_ids[0]}]),
        "task_ids[0]",
    ),
    # --- listers -------------------------------------------------------------
    Bad("lister_empty_name", lambda s, w: s.get_or_create_lister(""), "name"),
    Bad("lister_name_wrong_type", lambda s, w: s.get_or_create_lister(5), "name"),
    Bad(
        "lister_ids_not_uuids",
        lambda s, w: s.get_listers_by_id([str(w.lister.id), "not-a-uuid"]),
        "lister_ids[1]",
    ),
    Bad("lister_ids_as_text", lambda s, w: s.get_listers_by_id(str(w.lister.id)), "lister_ids"),
    Bad("update_lister_wrong_model", lambda s, w: s.update_lister(origin(w)), "lister"),
    Bad(
        "update_lister_nan_in_state",
        lambda s, w: s.update_lister(w.lister.evolve(current_state={"page": NAN})),
        "current_state",
    ),
    Bad(
        "update_lister_naive_datetime_in_model",
        lambda s, w: s.update_lister(w.lister.evolve(last_listing_finished_at=NAIVE)),
        "last_listing_finished_at",
        raw=lambda w: (
            "lister/update",
            replaced(
                body(lister=w.lister),
                json.dumps(w.lister.last_listing_finished_at.isoformat()),
                json.dumps(NAIVE.isoformat()),
            ),
        ),
        raw_arg="lister",
    ),
    Bad(
        "update_lister_lone_surrogate_in_state",
        lambda s, w: s.update_lister(w.lister.evolve(current_state={"page": "\udc00"})),
        "lister",
        raw=lambda w: (
            "lister/update",
            replaced(
                body(lister=w.lister.evolve(current_state={"page": "SURROGATE"})),
                "SURROGATE",
                "\\udc00",
            ),
        ),
        raw_arg="lister.current_state",
    ),
    # --- listed origins ------------------------------------------------------
    Bad(
        "record_lister_id_not_a_uuid",
        lambda s, w: s.record_listed_origins([origin(w).evolve(lister_id="not-a-uuid")]),
        "lister_id",
        raw=lambda w: (
            "origins/record",
            replaced(
                body(listed_origins=[origin(w)]),
                f'{{"swhtype": "uuid", "d": "{w.lister.id}"}}',
                '"not-a-uuid"',
            ),
        ),
        raw_arg="listed_origins",
    ),
    Bad(
        "record_unknown_lister",
        lambda s, w: s.record_listed_origins([origin(w), origin(w).evolve(lister_id=uuid.uuid4())]),
        "lister_id",
    ),
    Bad(
        "record_url_over_16_kib",
        lambda s, w: s.record_listed_origins([origin(w), origin(w, URL_TOO_LONG)]),
        "listed_origins.url",
    ),
    Bad(
        "record_url_over_16_kib_in_utf8",
        lambda s, w: s.record_listed_origins([origin(w, URL_TOO_LONG_UTF8)]),
        "listed_origins.url",
    ),
    Bad(
        "record_url_over_16_kib_after_2000",
        lambda s, w: s.record_listed_origins(
            [origin(w, f"{PREFIX}batch/{i}") for i in range(2000)] + [origin(w, URL_TOO_LONG)]
        ),
        "listed_origins.url",
    ),
    Bad(
        "record_empty_url",
        lambda s, w: s.record_listed_origins([origin(w, "")]),
        "listed_origins.url",
    ),
    Bad(
        "record_nul_in_url",
        lambda s, w: s.record_listed_origins([origin(w, PREFIX + "a\x00b")]),
        "listed_origins.url",
    ),
    Bad(
        "record_lone_surrogate_in_url",
        lambda s, w: s.record_listed_origins([origin(w, PREFIX + "\ud800")]),
        "listed_origins",  # pgsched's client names the argument, the server its field
        raw=lambda w: (
            "origins/record",
            replaced(
                body(listed_origins=[origin(w, PREFIX + "SURROGATE")]), "SURROGATE", "\\ud800"
            ),
        ),
        raw_arg="listed_origins.url",
    ),
    Bad(
        "record_wrong_model_in_list",
        lambda s, w: s.record_listed_origins([origin(w), task()]),
        "listed_origins[1]",
    ),
    Bad(
        "record_naive_last_update_in_model",
        lambda s, w: s.record_listed_origins([origin(w, last_update=NAIVE)]),
        "last_update",
        raw=lambda w: ("origins/record", naive(body(listed_origins=[origin(w, last_update=at())]))),
        raw_arg="listed_origins",
    ),
    Bad("listed_limit_zero", lambda s, w: s.get_listed_origins(limit=0), "limit"),
    Bad("listed_limit_negative", lambda s, w: s.get_listed_origins(limit=-5), "limit"),
    Bad(
        "listed_limit_10_12",
        lambda s, w: s.get_listed_origins(limit=10**12),
        "limit",
    ),
    Bad(
        "listed_page_token_of_two",
        lambda s, w: s.get_listed_origins(page_token=(str(w.lister.id), PREFIX + "1")),
        "page_token",
    ),
    Bad(
        "listed_page_token_not_a_uuid",
        lambda s, w: s.get_listed_origins(page_token=("not-a-uuid", PREFIX + "1", "git")),
        "page_token",
    ),
    Bad(
        "listed_page_token_text",
        lambda s, w: s.get_listed_origins(page_token="abc"),
        "page_token",
    ),
    Bad(
        "listed_lister_id_not_a_uuid",
        lambda s, w: s.get_listed_origins(lister_id="forge"),
        "lister_id",
    ),
    Bad("listed_enabled_wrong_type", lambda s, w: s.get_listed_origins(enabled="yes"), "enabled"),
    # --- grab_next_visits ----------------------------------------------------
    Bad("grab_unknown_policy", lambda s, w: grab(s, policy="alphabetical"), "policy"),
    Bad("grab_count_negative", lambda s, w: grab(s, count=-1), "count"),
    Bad("grab_count_10_12", lambda s, w: grab(s, count=10**12), "count"),
    Bad("grab_count_wrong_type", lambda s, w: grab(s, count="10"), "count"),
    Bad(
        "grab_missing_count",
        lambda s, w: s.grab_next_visits("git", policy="oldest_scheduled_first"),
        "count",
        raw=lambda w: ("origins/grab_next", body(visit_type="git", policy="never_visited")),
    ),
    tablesample(0),
    tablesample(-1),
    tablesample(101),
    tablesample(NAN),
    tablesample(INF),
    Bad("tablesample_text", lambda s, w: grab(s, tablesample="10"), "tablesample"),
    Bad("grab_lister_uuid_not_a_uuid", lambda s, w: grab(s, lister_uuid="forge"), "lister_uuid"),
    Bad("grab_unknown_lister_name", lambda s, w: grab(s, lister_name="nobody"), "lister_name"),
    Bad(
        "grab_first_visits_without_lister",
        lambda s, w: grab(s, policy="first_visits_after_listing"),
        "lister_uuid",
    ),
    Bad(
        "grab_cooldown_wrong_type",
        lambda s, w: grab(s, absolute_cooldown=3600),
        "absolute_cooldown",
    ),
    Bad("grab_enabled_wrong_type", lambda s, w: grab(s, enabled="yes"), "enabled"),
    Bad(
        "grab_naive_timestamp",
        lambda s, w: s.grab_next_visits("git", 1, "oldest_scheduled_first", timestamp=NAIVE),
        "timestamp",
        raw=lambda w: (
            "origins/grab_next",
            naive(body(visit_type="git", count=1, policy="oldest_scheduled_first", timestamp=at())),
        ),
    ),
    Bad(
        "grab_cooldown_out_of_timestamp_range",
        lambda s, w: grab(s, absolute_cooldown=datetime.timedelta(days=999_999_999)),
        "absolute_cooldown",
    ),
    # --- visit statistics and queue positions ----------------------------------
    Bad(
        "stats_url_over_16_kib",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=URL_TOO_LONG, visit_type="git")]
        ),
        "origin_visit_stats.url",
    ),
    Bad(
        "stats_snapshot_of_19_bytes",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=PREFIX + "1", visit_type="git", last_snapshot=b"\x02" * 19)]
        ),
        "last_snapshot",
    ),
    Bad(
        "stats_queue_position_2_64",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=PREFIX + "1", visit_type="git", next_visit_queue_position=2**64)]
        ),
        "next_visit_queue_position",
    ),
    Bad(
        "stats_offset_2_40",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=PREFIX + "1", visit_type="git", next_position_offset=2**40)]
        ),
        "next_position_offset",
    ),
    Bad(
        "stats_unknown_visit_status",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=PREFIX + "1", visit_type="git", last_visit_status="meh")]
        ),
        "last_visit_status",
        raw=lambda w: (
            "visit_stats/upsert",
            replaced(
                body(
                    origin_visit_stats=[
                        OriginVisitStats(
                            url=PREFIX + "1", visit_type="git", last_visit_status="failed"
                        )
                    ]
                ),
                '"failed"',
                '"meh"',
            ),
        ),
        raw_arg="origin_visit_stats",
    ),
    Bad(
        "stats_get_not_pairs",
        lambda s, w: s.origin_visit_stats_get([(PREFIX + "1",)]),
        "ids[0]",
    ),
    Bad(
        "queue_position_2_64",
        lambda s, w: s.visit_scheduler_queue_position_set("git", 2**64),
        "position",
    ),
    Bad(
        "queue_position_wrong_type",
        lambda s, w: s.visit_scheduler_queue_position_set("git", "12"),
        "position",
    ),
    Bad(
        "queue_position_empty_visit_type",
        lambda s, w: s.visit_scheduler_queue_position_set("", 1),
        "visit_type",
    ),
    Bad("metrics_lister_id_not_a_uuid", lambda s, w: s.update_metrics(lister_id="x"), "lister_id"),
    # --- found by a newcomer's attack ----------------------------------------
    Bad(
        "visit_type_over_255_bytes",
        lambda s, w: s.record_listed_origins([origin(w).evolve(visit_type="v" * 300)]),
        "visit_type",
    ),
    Bad(
        "lister_name_over_255_bytes",
        lambda s, w: s.get_or_create_lister("".join(chr(97 + i % 26) for i in range(10_000))),
        "name",
    ),
    Bad(
        "task_type_name_over_255_bytes",
        lambda s, w: s.create_task_type(task_type("t" * 300)),
        "task_type.type",
    ),
    Bad(
        "queue_position_visit_type_over_255_bytes",
        lambda s, w: s.visit_scheduler_queue_position_set("q" * 300, 1),
        "visit_type",
    ),
    Bad(
        "task_type_max_queue_length_2_70",
        lambda s, w: s.create_task_type(task_type("big", max_queue_length=2**70)),
        "max_queue_length",
    ),
    Bad(
        "task_type_negative_max_queue_length",
        lambda s, w: s.create_task_type(task_type("neg", max_queue_length=-1)),
        "max_queue_length",
    ),
    Bad(
        "arguments_nested_too_deeply",
        lambda s, w: s.create_tasks([Task(type="load-git", arguments=args(DEEP), next_run=at())]),
        "JSON",
    ),
    Bad(
        "update_lister_unknown_id",
        lambda s, w: s.update_lister(w.lister.evolve(id=uuid.uuid4())),
        "lister.id",
    ),
    Bad(
        "stats_negative_position_offset",
        lambda s, w: s.origin_visit_stats_upsert(
            [OriginVisitStats(url=PREFIX + "0", visit_type="git", next_position_offset=-5)]
        ),
        "next_position_offset",
    ),
    Bad("listed_origins_not_iterable", lambda s, w: s.record_listed_origins(5), "listed_origins"),
]


def _deep(depth: int):
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


DEEP = _deep(600)


def _marks(case: Bad):
    if case.xfail:
        return [pytest.mark.xfail(reason=case.xfail, strict=True)]
    return []


@dataclasses.dataclass
class Path:
    name: str
    scheduler: Any
    url: str | None = None


@pytest.fixture(scope="module", params=["local", "remote"])
def path(request, module_dsn, world):
    """The module's database in process, or behind pgsched's RPC server.

    Over RPC the client re-raises nothing, so that every error shows its
    HTTP status.
    """
    backend = pgsched.get_scheduler("postgresql", db=module_dsn, max_size=2)
    try:
        if request.param == "local":
            yield Path("local", backend)
            return
        with background_server(make_app(scheduler=backend)) as url:
            client = RemoteScheduler(url, timeout=60, reraise_exceptions=[])
            try:
                yield Path("remote", client, url)
            finally:
                client.close()
    finally:
        backend.close()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CALLS])
def test_bad_call_is_refused_and_writes_nothing(path, module_dsn, world, case):
    before = dump_tables(module_dsn)
    tables_are_filled(before)
    with pytest.raises(Exception) as info:
        case.call(path.scheduler, world)
    error = info.value
    if isinstance(error, RemoteException):
        assert error.response.status_code == 400, error.payload
        message = error.payload["message"]
    else:
        assert isinstance(error, ValueError | TypeError | SchedulerException), repr(error)
        message = str(error)
        # Only pgsched's client may refuse a call before sending it: then the
        # server gets the raw request below.
        assert path.url is None or case.raw, f"refused before reaching the server: {error!r}"
    assert case.arg in message, message
    if path.url and case.raw:
        raw_path, data = case.raw(world)
        status, answer = post_raw(path.url, raw_path, data)
        assert status == 400, answer
        assert (case.raw_arg or case.arg) in answer["message"], answer["message"]
    assert dump_tables(module_dsn) == before


# --------------------------------------------------------------------------
# Requests only a raw HTTP client sends
# --------------------------------------------------------------------------

GRAB = {"visit_type": "git", "count": 1, "policy": "oldest_scheduled_first"}


def grab_body(**wrapped: str) -> bytes:
    """A grab_next_visits JSON body with hand-written values (JSON text)."""
    extra = "".join(f', "{k}": {v}' for k, v in wrapped.items())
    return json.dumps(GRAB)[:-1].encode() + extra.encode() + b"}"


def td(days: str) -> str:
    return '{"swhtype": "timedelta", "d": {"days": ' + days + "}}"


@dataclasses.dataclass
class RawBad:
    id: str
    path: str
    body: bytes
    content_type: str
    names: str  # in the error message
    status: int = 400


BODIES: list[RawBad] = [
    RawBad("msgpack_reserved_byte", "task/create", b"\xc1", S.MSGPACK, "msgpack body"),
    RawBad(
        "msgpack_truncated",
        "task/create",
        S.msgpack_dumps({"tasks": [task()]})[:-3],
        S.MSGPACK,
        "msgpack body",
    ),
    RawBad(
        "msgpack_trailing_bytes",
        "task/create",
        S.msgpack_dumps({"tasks": [task()]}) + b"\x00",
        S.MSGPACK,
        "msgpack body",
    ),
    RawBad("msgpack_invalid_utf8", "lister/get_or_create", b"\xa3\xff\xfe\xfd", S.MSGPACK, "body"),
    RawBad("json_truncated", "task/create", body(tasks=[task()])[:-5], S.JSON, "JSON body"),
    RawBad(
        "json_invalid_utf8",
        "lister/get_or_create",
        b'{"name": "\xff\xfe"}',
        S.JSON,
        "JSON body",
    ),
    RawBad("json_not_a_map", "task/create", b"[1, 2]", S.JSON, "must be a map"),
    RawBad("json_null", "task/create", b"null", S.JSON, "must be a map"),
    RawBad(
        "json_nested_100000_deep",
        "task/get",
        b'{"task_ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        S.JSON,
        "JSON body",
    ),
    RawBad("wrong_content_type", "task/create", b"tasks=1", "text/plain", "Content-Type"),
    RawBad(
        "unknown_argument",
        "origins/grab_next",
        json.dumps({**GRAB, "bogus": 1}).encode(),
        S.JSON,
        "'bogus'",
    ),
    RawBad(
        "non_string_argument_name",
        "task/get",
        S.msgpack_dumps({1: [1]}),
        S.MSGPACK,
        "argument names",
    ),
    RawBad("empty_body_missing_argument", "task/create", b"", S.JSON, "'tasks'"),
    RawBad(
        "nan_interval",
        "origins/grab_next",
        grab_body(absolute_cooldown=td("NaN")),
        S.JSON,
        "absolute_cooldown",
    ),
    RawBad(
        "infinite_interval",
        "origins/grab_next",
        grab_body(failed_cooldown=td("Infinity")),
        S.JSON,
        "failed_cooldown",
    ),
    RawBad(
        "interval_of_10_12_days",
        "origins/grab_next",
        grab_body(scheduled_cooldown=td("1000000000000")),
        S.JSON,
        "scheduled_cooldown",
    ),
    RawBad(
        "interval_of_wrong_shape",
        "origins/grab_next",
        grab_body(not_found_cooldown='{"swhtype": "timedelta", "d": {"weeks": "x"}}'),
        S.JSON,
        "not_found_cooldown",
    ),
    RawBad(
        "uuid_wrapping_a_number",
        "origins/grab_next",
        grab_body(lister_uuid='{"swhtype": "uuid", "d": 5}'),
        S.JSON,
        "lister_uuid",
    ),
    RawBad(
        "datetime_not_iso",
        "origins/grab_next",
        grab_body(timestamp='{"swhtype": "datetime", "d": "next tuesday"}'),
        S.JSON,
        "timestamp",
    ),
    RawBad(
        "msgpack_timestamp_of_3_bytes",
        "task/peek_ready",
        b"\x82\xa9task_type\xa8load-git\xa9timestamp\xc7\x03\xff\x00\x00\x00",
        S.MSGPACK,
        "timestamp",
    ),
    RawBad(
        "unknown_model_type",
        "task/create",
        replaced(body(tasks=[task()]), '"__type__": "Task"', '"__type__": "Job"'),
        S.JSON,
        "tasks",
    ),
    RawBad(
        "unknown_model_field",
        "task/create",
        replaced(body(tasks=[task()]), '"__type__": "Task"', '"__type__": "Task", "x": 1'),
        S.JSON,
        "tasks",
    ),
    RawBad(
        "lone_surrogate_in_text_argument",
        "lister/get_or_create",
        b'{"name": "forge", "instance_name": "\\ud83d"}',
        S.JSON,
        "instance_name",
    ),
    RawBad(
        "lone_surrogate_in_model_field_name",
        "task/create",
        replaced(body(tasks=[task()]), '"__type__": "Task"', '"__type__": "Task", "\\udfff": 1'),
        S.JSON,
        "tasks",
    ),
    RawBad(
        "bytes_not_base85",
        "visit_stats/upsert",
        replaced(
            body(
                origin_visit_stats=[
                    OriginVisitStats(url=PREFIX + "1", visit_type="git", last_snapshot=b"\x03" * 20)
                ]
            ),
            '"swhtype": "bytes", "d": "',
            '"swhtype": "bytes", "d": "\\u00e9~',
        ),
        S.JSON,
        "origin_visit_stats",
    ),
]


@pytest.fixture(scope="module")
def served(module_dsn, world):
    backend = pgsched.get_scheduler("postgresql", db=module_dsn, max_size=2)
    try:
        with background_server(make_app(scheduler=backend)) as url:
            yield url
    finally:
        backend.close()


@pytest.mark.parametrize("case", BODIES, ids=lambda c: c.id)
def test_bad_request_body_is_400_and_writes_nothing(served, module_dsn, case):
    before = dump_tables(module_dsn)
    status, answer = post_raw(served, case.path, case.body, case.content_type)
    assert status == case.status, answer
    assert case.names in answer["message"], answer["message"]
    assert answer["type"] in ("DecodeError", "BadRequest", "TypeError", "ValueError"), answer
    assert dump_tables(module_dsn) == before


def test_the_tables_cover_every_kind():
    """The figures quoted for this suite (printed with -s)."""
    kinds = len(CALLS) + len(BODIES)
    print(f"\nbad input: {len(CALLS)} call kinds x 2 paths + {len(BODIES)} raw bodies = {kinds}")
    assert kinds >= 30
    assert len({c.id for c in CALLS} | {b.id for b in BODIES}) == kinds  # ids are unique


def test_the_dump_sees_a_write(dsn):
    """The tables change when a call succeeds: the comparison can fail."""
    world = fill(dsn)
    before = dump_tables(dsn)
    with pgsched.get_scheduler("postgresql", db=dsn) as s:
        s.record_listed_origins([origin(world, PREFIX + "fresh")])
    after = dump_tables(dsn)
    assert after != before
    assert len(after["listed_origins"]) == len(before["listed_origins"]) + 1
