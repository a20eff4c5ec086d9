"""The two backends under test, each on a fresh database of the same server.

``pgsched``: a fresh database, ``pgsched.migrate.migrate(dsn)``, then
``pgsched.get_scheduler("postgresql", db=dsn)``.

``reference``: the reference backend (swh.scheduler 3.1.0) from PyPI. Its
schema is created the way ``swh db init scheduler`` does it: the package's
superuser SQL files, then its schema files and swh.core's version tables (all
run by ``psql`` with the DSN given here, which is the system libpq's own
syntax), then the version row; then ``swh.scheduler.get_scheduler``.

Both expose the same interface; ``Backend`` adds what the benchmark needs
around it: a direct connection with auto_explain for plans, the bare SQL call
for the shim overhead (pgsched only), and a COPY baseline table shaped like
the backend's listed_origins.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

SQL_DIR = Path(__file__).resolve().parent / "sql"

REFERENCE_VERSION = "3.1.0"


def load_sql(name: str) -> str:
    """Fixed SQL text of bench/sql/<name>.sql (bind parameters only)."""
    return (SQL_DIR / f"{name}.sql").read_text()


# --- databases ---------------------------------------------------------------


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def create_database(server_dsn: str, dbname: str) -> str:
    """Drop and create ``dbname`` on the server of ``server_dsn``; its DSN."""
    # CREATE/DROP DATABASE take no bind parameters: the name is quoted as an
    # identifier by psycopg.
    drop_database(server_dsn, dbname)
    with psycopg.connect(with_dbname(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_dbname(server_dsn, dbname)


def drop_database(server_dsn: str, dbname: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
    with psycopg.connect(with_dbname(server_dsn, "postgres"), autocommit=True) as conn:
        conn.execute(drop)


def reference_available() -> str | None:
    """None when the reference backend can be imported, else why not."""
    try:
        import importlib.metadata

        import swh.scheduler  # noqa: F401

        version = importlib.metadata.version("swh.scheduler")
    except Exception as exc:  # ImportError, PackageNotFoundError
        return f"swh.scheduler not importable: {exc}"
    if version != REFERENCE_VERSION:
        return f"swh.scheduler {version} installed, the benchmark needs {REFERENCE_VERSION}"
    return None


def init_reference_schema(dsn: str) -> None:
    """What ``swh db init scheduler`` does, on the database of ``dsn``."""
    from swh.core.db import db_utils
    from swh.scheduler.backend import SchedulerBackend

    # The DSN goes to psql unchanged (not re-expanded by psycopg's libpq), so
    # psql 15 reads only options it knows.
    db_utils.init_admin_extensions("swh.scheduler", dsn)
    db_utils.populate_database_for_package("swh.scheduler", dsn)
    db_utils.swh_set_db_version(dsn, SchedulerBackend.current_version)


# --- auto_explain --------------------------------------------------------------

# Plans of every statement run on the connection, nested ones (inside SQL and
# PL/pgSQL functions) included, sent to the client as LOG messages.
AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_timing = on",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_format = 'text'",
    "SET client_min_messages = log",
)

DURATION = re.compile(r"duration: ([\d.]+) ms")
SEQ_SCAN = re.compile(r"(?:Parallel )?Seq Scan on (\S+)")
# A sort or hash that spilled to temporary files.
DISK_SPILL = re.compile(r"Sort Method: external|Disk: \d+kB|temp (?:read|written)=")
BIG_TABLE_ROWS = 10_000

RELATION_SIZES = """
SELECT c.relname, c.reltuples::bigint
  FROM pg_class AS c
 WHERE c.relkind IN ('r', 'p', 'm')
   AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace
                               WHERE nspname IN ('pg_catalog', 'information_schema'))
"""


def compact(message: str) -> str:
    """An auto_explain message as the statement on one line, then its plan."""
    lines = message.split("plan:", 1)[-1].strip("\n").split("\n")
    root = next((i for i, line in enumerate(lines) if "(cost=" in line), 0)
    query = " ".join(" ".join(lines[:root]).split())
    query = query.removeprefix("Query Text: ")
    # Bound parameters show up inline (a 1000-element array, say): cut.
    plan = [line if len(line) <= 300 else line[:300] + " ..." for line in lines[root:]]
    return "\n".join([f"-- {query[:300]}{' ...' if len(query) > 300 else ''}", *plan])


class PlanRecorder:
    """Collects auto_explain plans sent to one connection."""

    def __init__(self, conn: psycopg.Connection, min_ms: int = 1):
        self.conn = conn
        self.plans: list[str] = []
        conn.add_notice_handler(self._notice)
        for stmt in AUTO_EXPLAIN:
            conn.execute(stmt)
        # Statements quicker than this are left out: a function called per
        # row (a generated column's) would otherwise log thousands of plans.
        conn.execute(
            "SELECT set_config('auto_explain.log_min_duration', %s, false)", (str(min_ms),)
        )
        conn.commit()

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        msg = diag.message_primary or ""
        if "plan:" in msg:
            self.plans.append(msg)

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        self.plans.clear()
        got: list[str] = []
        yield got
        got.extend(self.plans)
        self.plans.clear()

    def analyse(self, plans: list[str]) -> dict[str, Any]:
        """The plans, the big tables read by a sequential scan, on-disk sorts."""
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(RELATION_SIZES)
            sizes = dict(cur.fetchall())
        self.conn.commit()
        seq = sorted(
            {
                name
                for plan in plans
                for name in SEQ_SCAN.findall(plan)
                if sizes.get(name.split(".")[-1], 0) >= BIG_TABLE_ROWS
            }
        )
        statements = []
        for plan in plans:
            duration = DURATION.search(plan)
            body = compact(plan)
            statements.append(
                {
                    "ms": float(duration.group(1)) if duration else None,
                    "statement": body.split("\n", 1)[0].removeprefix("-- ")[:160],
                    "seq_scans": sorted(
                        {
                            n
                            for n in SEQ_SCAN.findall(plan)
                            if sizes.get(n.split(".")[-1], 0) >= BIG_TABLE_ROWS
                        }
                    ),
                    "disk_spill": bool(DISK_SPILL.search(plan)),
                }
            )
        return {
            "plans": [compact(p) for p in plans],
            "statements": statements,
            "seq_scans_on_big_tables": seq,
            "disk_spill": any(DISK_SPILL.search(p) for p in plans),
        }


# --- backends ----------------------------------------------------------------


class Backend:
    """One backend under test: its scheduler, model module and database."""

    name: str

    def __init__(self, server_dsn: str, dbname: str, explain_min_ms: int = 1):
        self.server_dsn = server_dsn
        self.dbname = dbname
        self.explain_min_ms = explain_min_ms
        self.dsn = create_database(server_dsn, dbname)
        self.init_schema()
        self.scheduler = self.make_scheduler(self.dsn)
        self._explain: tuple[Any, PlanRecorder] | None = None

    # set by subclasses
    model: Any

    def init_schema(self) -> None:
        raise NotImplementedError

    def make_scheduler(self, db: Any) -> Any:
        raise NotImplementedError

    def drop(self) -> None:
        self.close()
        drop_database(self.server_dsn, self.dbname)

    def close(self) -> None:
        if self._explain is not None:
            self._explain[1].conn.close()
            self._explain = None
        pool = getattr(self.scheduler, "_pool", None) or getattr(self.scheduler, "pool", None)
        close = getattr(pool, "close", None)
        if callable(close):
            close()

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **kwargs)

    def maintenance(self) -> float:
        """VACUUM ANALYZE the database (what autovacuum does after a bulk load)."""
        t0 = time.perf_counter()
        with self.connect(autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        return time.perf_counter() - t0

    def explain(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Plans of one interface call, nested statements included."""
        raise NotImplementedError

    # The COPY baseline: a table like the backend's listed_origins, with the
    # same indexes, defaults and checks (not its triggers).
    copy_create: str
    copy_drop = "DROP SCHEMA bench_copy CASCADE"
    copy_into = (
        "COPY bench_copy.listed_origins (lister_id, url, visit_type, extra_loader_arguments,"
        " last_update, enabled, first_seen, last_seen) FROM STDIN"
    )

    def copy_row(self, lister_id, url: str, visit_type: str, last_update, now) -> tuple:
        """One row of ``copy_into``, as a lister's bulk load would send it."""
        return (lister_id, url, visit_type, "{}", last_update, True, now, now)

    # shim overhead: only pgsched has a bare SQL call under its methods
    has_bare_calls = False


class PgschedBackend(Backend):
    name = "pgsched"
    copy_create = (
        "CREATE SCHEMA bench_copy;"
        " CREATE TABLE bench_copy.listed_origins"
        " (LIKE scheduler.listed_origins INCLUDING ALL)"
    )
    # pgsched keys urls by their SHA-256 (url_digest), which a loader sends.
    copy_into = (
        "COPY bench_copy.listed_origins (lister_id, url, url_digest, visit_type,"
        " extra_loader_arguments, last_update, enabled, first_seen, last_seen) FROM STDIN"
    )
    has_bare_calls = True

    def copy_row(self, lister_id, url: str, visit_type: str, last_update, now) -> tuple:
        digest = hashlib.sha256(url.encode()).digest()
        return (lister_id, url, digest, visit_type, "{}", last_update, True, now, now)

    def __init__(self, server_dsn: str, dbname: str, explain_min_ms: int = 1):
        import pgsched.model

        self.model = pgsched.model
        super().__init__(server_dsn, dbname, explain_min_ms)

    def init_schema(self) -> None:
        from pgsched.migrate import migrate

        migrate(self.dsn)

    def make_scheduler(self, db: Any) -> Any:
        import pgsched

        return pgsched.get_scheduler("postgresql", db=db)

    def explain(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        # The shim sends one function call; the same call, bare, on a
        # connection with auto_explain shows the plans of the statements
        # inside the function.
        if self._explain is None:
            self._explain = (None, PlanRecorder(self.connect(), self.explain_min_ms))
        rec = self._explain[1]
        query, params = self.bare(method, kwargs)
        with rec.capture() as plans:
            rec.conn.execute(query, params).fetchall()
            rec.conn.commit()
        return rec.analyse(plans)

    def bare(self, method: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The bare SQL call under a shim method: fixed text, plain parameters."""
        return load_sql(method), BARE_PARAMS[method](kwargs)


class ReferenceBackend(Backend):
    name = "reference"
    copy_create = (
        "CREATE SCHEMA bench_copy;"
        " CREATE TABLE bench_copy.listed_origins"
        " (LIKE public.listed_origins INCLUDING ALL)"
    )

    def __init__(self, server_dsn: str, dbname: str, explain_min_ms: int = 1):
        import swh.scheduler.model

        self.model = swh.scheduler.model
        super().__init__(server_dsn, dbname, explain_min_ms)

    def init_schema(self) -> None:
        init_reference_schema(self.dsn)

    def make_scheduler(self, db: Any) -> Any:
        from swh.scheduler import get_scheduler

        return get_scheduler("postgresql", db=db)

    def explain(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        # The reference backend also runs on a given connection (dict rows):
        # one with auto_explain loaded shows the plans of its queries.
        if self._explain is None:
            conn = self.connect(row_factory=dict_row)
            rec = PlanRecorder(conn, self.explain_min_ms)
            self._explain = (self.make_scheduler(conn), rec)
        sched, rec = self._explain
        with rec.capture() as plans:
            getattr(sched, method)(**kwargs)
        return rec.analyse(plans)


# --- bare call parameters (pgsched) --------------------------------------------
# Built from plain values (rows, not models), as a caller of the SQL function
# would; the shim builds the same parameters from models.


def _grab_next_visits_params(kw: dict[str, Any]) -> dict[str, Any]:
    from pgsched import interface

    lister = kw.get("lister_uuid")
    return {
        "visit_type": kw["visit_type"],
        "count": kw["count"],
        "policy": kw["policy"],
        "enabled": kw.get("enabled", True),
        "lister_uuid": uuid.UUID(str(lister)) if lister else None,
        "lister_name": kw.get("lister_name"),
        "lister_instance_name": kw.get("lister_instance_name"),
        "timestamp": kw.get("timestamp"),
        "absolute_cooldown": kw.get("absolute_cooldown", interface.DEFAULT_ABSOLUTE_COOLDOWN),
        "scheduled_cooldown": kw.get("scheduled_cooldown", interface.DEFAULT_SCHEDULED_COOLDOWN),
        "failed_cooldown": kw.get("failed_cooldown", interface.DEFAULT_FAILED_COOLDOWN),
        "not_found_cooldown": kw.get("not_found_cooldown", interface.DEFAULT_NOT_FOUND_COOLDOWN),
        "tablesample": kw.get("tablesample"),
    }


def _grab_ready_tasks_params(kw: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_type": kw["task_type"],
        "timestamp": kw.get("timestamp"),
        "num_tasks": kw.get("num_tasks"),
    }


def _record_listed_origins_params(kw: dict[str, Any]) -> dict[str, Any]:
    """kw["rows"]: (lister_id, url, visit_type, last_update) tuples."""
    rows = kw["rows"]
    empty = Jsonb({})
    return {
        "lister_ids": [r[0] for r in rows],
        "urls": [r[1] for r in rows],
        "visit_types": [r[2] for r in rows],
        "extra_loader_arguments": [empty] * len(rows),
        "last_updates": [r[3] for r in rows],
        "is_forks": [None] * len(rows),
        "forked_from_urls": [None] * len(rows),
        "enabled": [True] * len(rows),
    }


def _origin_visit_stats_upsert_params(kw: dict[str, Any]) -> dict[str, Any]:
    """kw["rows"]: workload.StatsRow tuples."""
    rows = kw["rows"]
    names = (
        "urls",
        "visit_types",
        "last_successful",
        "last_visit",
        "last_visit_status",
        "last_scheduled",
        "last_snapshot",
        "next_visit_queue_position",
        "next_position_offset",
        "successive_visits",
    )
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def _start_task_run_params(kw: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend_id": kw["backend_id"],
        "metadata": Jsonb(kw["metadata"]) if kw.get("metadata") is not None else None,
        "timestamp": kw.get("timestamp"),
    }


BARE_PARAMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "grab_next_visits": _grab_next_visits_params,
    "grab_ready_tasks": _grab_ready_tasks_params,
    "record_listed_origins": _record_listed_origins_params,
    "origin_visit_stats_upsert": _origin_visit_stats_upsert_params,
    "start_task_run": _start_task_run_params,
}
