"""Least privilege and safe defaults.

- The RPC server logs in as a member of ``pgsched_api`` (EXECUTE on the
  functions, nothing on the tables) and serves a realistic sequence touching
  every interface method.
- No SQL text is assembled from strings in ``pyshim/`` (checked on the
  syntax tree of every module, the checker itself tested on samples).
- ``pgsched serve`` binds 127.0.0.1 unless told otherwise.  The request
  body limit (413 with a message naming max_request_size) is tested in
  tests/test_rpc_server.py (test_body_over_the_limit_is_413 and
  test_chunked_body_over_the_limit_is_413).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
import requests
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgsched
from pgsched.api import server as rpc_server
from pgsched.api.client import RemoteScheduler
from pgsched.api.server import background_server, make_app
from pgsched.interface import interface_methods
from pgsched.model import ListedOrigin, OriginVisitStats, Task, TaskRun
from utils import args, at, task_type

PYSHIM = pathlib.Path(__file__).resolve().parent.parent / "pyshim"


# --------------------------------------------------------------------------
# The server as the API role
# --------------------------------------------------------------------------


@contextlib.contextmanager
def login_role(dsn: str, member_of: str):
    """A LOGIN role, member of ``member_of``, unique to this run; dropped after."""
    name = f"pgsched_rel_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(member_of)
            )
        )
    try:
        yield name, make_conninfo(**{**conninfo_to_dict(dsn), "user": name})
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_server_runs_as_the_api_role(dsn):
    with login_role(dsn, "pgsched_api") as (role, api_dsn):
        # the role itself: no table privilege at all
        with psycopg.connect(api_dsn, autocommit=True) as conn:
            for statement in (
                "SELECT count(*) FROM scheduler.task",
                "INSERT INTO scheduler.lister (name, instance_name) VALUES ('x', '')",
                "DELETE FROM scheduler.listed_origins",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        app = make_app({"db": api_dsn, "pool_max_size": 4})
        try:
            with background_server(app) as url:
                client = RemoteScheduler(url, timeout=60)
                try:
                    calls = Recording(client)
                    realistic_sequence(calls)
                    sessions = active_sessions(dsn, role)
                finally:
                    client.close()
        finally:
            app.close()
        assert sessions >= 1, "the server did not log in as the API role"
        assert calls.names == set(interface_methods())
        # the shim's own extra function, in process, as the same role
        with pgsched.get_scheduler("postgresql", db=api_dsn) as backend:
            from pgsched.visit_results import VisitResult, record_visit_results

            (stats,) = record_visit_results(
                backend,
                [
                    VisitResult(
                        url="https://forge.example/api/0",
                        visit_type="git",
                        visit_date=at(30),
                        status="successful",
                        snapshot=b"\x09" * 20,
                    )
                ],
            )
            assert stats.last_successful == at(30)


class Recording:
    """The scheduler, remembering which methods were called."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.names: set[str] = set()

    def __getattr__(self, name):
        self.names.add(name)
        return getattr(self.scheduler, name)


def active_sessions(dsn: str, role: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity "
            "WHERE usename = %s AND datname = current_database()",
            (role,),
        ).fetchone()[0]


def realistic_sequence(s) -> None:
    """A lister, a loader and a scheduler's day, every interface method once or more."""
    # task types and tasks
    s.create_task_type(task_type())
    assert [t.type for t in s.get_task_types()] == ["load-git"]
    assert s.get_task_type("load-git").backoff_factor == 2.0
    tasks = s.create_tasks(
        [
            Task(type="load-git", arguments=args(f"https://forge.example/api/{i}"), next_run=at())
            for i in range(6)
        ]
        + [Task(type="load-git", arguments=args("urgent"), next_run=at(), priority="high")]
    )
    ids = [t.id for t in tasks]
    assert len(s.peek_ready_tasks("load-git", timestamp=at(1))) == 6
    assert len(s.peek_ready_priority_tasks("load-git", timestamp=at(1))) == 1
    grabbed = s.grab_ready_tasks("load-git", timestamp=at(1), num_tasks=4)
    (urgent,) = s.grab_ready_priority_tasks("load-git", timestamp=at(1))
    assert len(grabbed) == 4 and urgent.priority == "high"
    run = s.schedule_task_run(grabbed[0].id, "celery-1", metadata={"q": "a"}, timestamp=at(1))
    s.mass_schedule_task_runs(
        [
            TaskRun(task=t.id, backend_id=f"celery-{i + 2}", scheduled=at(1))
            for i, t in enumerate(grabbed[1:])
        ]
    )
    assert s.start_task_run("celery-1", timestamp=at(2)).started == at(2)
    ended = s.end_task_run("celery-1", "eventful", metadata={"r": 1}, timestamp=at(3))
    assert ended.status == "eventful" and ended.metadata == {"q": "a", "r": 1}
    assert run.id == ended.id
    assert [r.backend_id for r in s.get_task_runs([grabbed[0].id])] == ["celery-1"]
    (rescheduled,) = s.get_tasks([grabbed[0].id])
    assert rescheduled.status == "next_run_not_scheduled" and rescheduled.next_run > at(3)
    s.set_status_tasks([ids[5]], status="disabled")
    s.disable_tasks([ids[4]])
    assert {t.id for t in s.search_tasks(status="disabled")} == {ids[4], ids[5]}
    (once,) = s.create_tasks(
        [Task(type="load-git", arguments=args("once"), next_run=at(5), policy="oneshot")]
    )
    once_run = s.schedule_task_run(once.id, "celery-once", timestamp=at(5))
    s.start_task_run("celery-once", timestamp=at(5))
    s.end_task_run("celery-once", "eventful", timestamp=at(6))
    assert s.get_tasks([once.id])[0].status == "completed"
    archive = s.filter_task_to_archive("2020-01-01", "2030-01-01", limit=100)
    assert [row["task_run_id"] for row in archive["tasks"]] == [once_run.id]
    s.delete_archived_tasks([{"task_id": once.id, "task_run_id": once_run.id}])
    assert s.get_tasks([once.id]) == [] and s.get_task_runs([once.id]) == []

    # listers, origins, visits
    lister = s.get_or_create_lister("forge", "api", first_visits_queue_prefix="forge")
    lister = s.update_lister(lister.evolve(last_listing_finished_at=at(1)))
    assert s.get_lister("forge", "api").id == lister.id
    assert [x.id for x in s.get_listers_by_id([str(lister.id)])] == [lister.id]
    assert [x.id for x in s.get_listers(with_first_visits_to_schedule=True)] == [lister.id]
    urls = [f"https://forge.example/api/{i}" for i in range(10)]
    s.record_listed_origins(
        [
            ListedOrigin(lister_id=lister.id, url=u, visit_type="git", last_update=at(-i))
            for i, u in enumerate(urls)
        ]
    )
    assert s.get_visit_types_for_listed_origins(lister) == ["git"]
    page = s.get_listed_origins(lister_id=lister.id, limit=6)
    rest = s.get_listed_origins(lister_id=lister.id, limit=6, page_token=page.next_page_token)
    assert sorted(o.url for o in page.results + rest.results) == sorted(urls)
    first = s.grab_next_visits(
        "git", 3, "first_visits_after_listing", lister_uuid=lister.id, timestamp=at(2)
    )
    more = s.grab_next_visits("git", 3, "never_visited_oldest_update_first", timestamp=at(2))
    rest = s.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at(2))
    assert sorted(o.url for o in first + more + rest) == sorted(urls)
    s.origin_visit_stats_upsert(
        [
            OriginVisitStats(
                url=u,
                visit_type="git",
                last_visit=at(3),
                last_successful=at(3),
                last_visit_status="successful",
                last_snapshot=b"\x07" * 20,
            )
            for u in urls
        ]
    )
    stats = s.origin_visit_stats_get([(u, "git") for u in urls])
    assert {x.last_scheduled for x in stats} == {at(2)}
    s.visit_scheduler_queue_position_set("git", 1234)
    assert s.visit_scheduler_queue_position_get() == {"git": 1234}
    (metrics,) = s.update_metrics(lister_id=lister.id, timestamp=at(4))
    assert metrics.origins_known == 10 and metrics.origins_never_visited == 0
    assert s.get_metrics(lister_id=lister.id, visit_type="git") == [metrics]


# --------------------------------------------------------------------------
# No SQL assembled from strings
# --------------------------------------------------------------------------

# SQL text: upper-case keywords, or lower-case statements
_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|CREATE|DROP|ALTER|GRANT|REVOKE|"
    r"TRUNCATE|EXECUTE)\b"
    r"|\bselect\s.*\bfrom\b|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+[\w.]+\s+set\b"
    r"|\bscheduler\.",
    re.S,
)
# calls whose first argument is SQL text
_EXECUTORS = {"execute", "executemany", "copy", "stream", "_run"}
# SQL that is not in Python: the jinja2 templates of sql/, read and rendered
# by the migrator (module, function, expression)
_SQL_FILES = {
    ("migrate.py", "migrate", "m.text"),
    ("migrate.py", "migrate", "drop_functions"),
    ("migrate.py", "migrate", "text"),
}
# the one place that runs the statements it is given (all checked at its callers)
_PASS_THROUGH = {("backend.py", "_run", "query")}
# text with SQL in it that is shown, never executed: (module, function)
_SHOWN = {("demo.py", "next_steps")}  # psql commands the demo suggests to the user


def _literal_text(node: ast.AST) -> str:
    """The literal string parts inside an expression."""
    return " ".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


def _static(node: ast.AST) -> bool:
    """A string literal, or a dict, tuple or list of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Dict):
        return all(_static(v) for v in node.values) and all(
            k is not None and _static(k) for k in node.keys
        )
    if isinstance(node, ast.Tuple | ast.List):
        return all(_static(e) for e in node.elts)
    return False


def sql_assembly_problems(source: str, filename: str) -> list[str]:
    """Where ``source`` builds SQL text from strings, or executes non-constant SQL."""
    tree = ast.parse(source, filename)
    problems = []
    module_constants = {
        target.id
        for stmt in tree.body
        if isinstance(stmt, ast.Assign) and _static(stmt.value)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }
    imported = {
        alias.asname or alias.name
        for stmt in tree.body
        if isinstance(stmt, ast.ImportFrom) and (stmt.level or "pgsched" in (stmt.module or ""))
        for alias in stmt.names
        if (alias.asname or alias.name).startswith("Q_")
    }

    def where(node):
        return f"{filename}:{node.lineno}"

    shown = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef) and (pathlib.Path(filename).name, f.name) in _SHOWN
        for n in ast.walk(f)
    }

    # 1. string building whose literal parts are SQL
    for node in ast.walk(tree):
        if id(node) in shown:
            continue
        built = None
        if isinstance(node, ast.JoinedStr) and any(
            isinstance(v, ast.FormattedValue) for v in node.values
        ):
            built = "f-string"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            if isinstance(node.left, ast.Constant | ast.JoinedStr | ast.BinOp):
                built = "% formatting" if isinstance(node.op, ast.Mod) else "+ concatenation"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("format", "join")
            and isinstance(node.func.value, ast.Constant)
            and isinstance(node.func.value.value, str)
        ):
            built = f"str.{node.func.attr}"
        if built and _SQL.search(_literal_text(node)):
            problems.append(f"{where(node)}: SQL built by {built}")

    # 2. what reaches execute(): a literal, a module constant, psycopg.sql
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for node in ast.walk(func):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _EXECUTORS
                and node.args
            ):
                continue
            arg = node.args[0]
            base = arg.value if isinstance(arg, ast.Subscript) else arg
            text = ast.unparse(arg)
            if _static(arg):
                continue
            if isinstance(base, ast.Name) and (base.id in module_constants or base.id in imported):
                continue
            if (
                isinstance(arg, ast.Call)
                and "sql." in ast.unparse(arg.func)
                or text.startswith("sql.")
            ):
                continue  # psycopg.sql composition: identifiers quoted by psycopg
            key = (pathlib.Path(filename).name, func.name, text)
            if key in _SQL_FILES or key in _PASS_THROUGH:
                continue
            problems.append(f"{where(node)}: {node.func.attr}({text}) is not constant SQL")
    return problems


BAD_SAMPLES = {
    "f-string": 'def f(c, t):\n    c.execute(f"SELECT * FROM {t}")\n',
    "percent": 'def f(c, t):\n    return "DELETE FROM x WHERE id = %s" % t\n',
    "format": 'def f(c, t):\n    c.execute("select a from {}".format(t))\n',
    "plus": 'def f(c, t):\n    q = "UPDATE scheduler.task SET x = " + t\n    c.execute(q)\n',
    "join": 'def f(c, t):\n    return " WHERE ".join(t)\n',
    "lowercase": 'def f(c, t):\n    return f"insert into x values ({t})"\n',
    "function": 'def f(c, t):\n    return f"scheduler.{t}(1)"\n',
    "variable": "def f(c, q):\n    c.execute(q)\n",
    "constant then assembled": ('Q = "SELECT 1"\ndef f(c, t):\n    c.execute(Q + t)\n'),
}
GOOD_SAMPLES = {
    "literal": 'def f(c):\n    c.execute("SELECT 1")\n',
    "constant": (
        'Q = """\nSELECT * FROM scheduler.f(a => %(a)s)\n"""\ndef f(c):\n    c.execute(Q, {})\n'
    ),
    "dict of constants": (
        'Q = {"a": "SELECT 1", "b": "SELECT 2"}\ndef f(c, k):\n    c.execute(Q[k])\n'
    ),
    "psycopg.sql": (
        "from psycopg import sql\n"
        "def f(c, t):\n"
        '    c.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(t)))\n'
    ),
    "messages": (
        "def f(name, v):\n"
        '    raise ValueError(f"{name}: must be set (get the lister from the scheduler first)")\n'
    ),
}


@pytest.mark.parametrize("name", BAD_SAMPLES)
def test_the_checker_finds_assembled_sql(name):
    assert sql_assembly_problems(BAD_SAMPLES[name], "sample.py"), name


@pytest.mark.parametrize("name", GOOD_SAMPLES)
def test_the_checker_accepts_fixed_sql(name):
    assert sql_assembly_problems(GOOD_SAMPLES[name], "sample.py") == []


def test_no_sql_is_assembled_from_strings_in_pyshim():
    files = sorted(PYSHIM.rglob("*.py"))
    assert len(files) >= 10
    problems = []
    for path in files:
        problems += sql_assembly_problems(path.read_text(), str(path.relative_to(PYSHIM)))
    assert problems == []


# --------------------------------------------------------------------------
# Server defaults
# --------------------------------------------------------------------------


def test_serve_defaults_to_loopback():
    assert rpc_server.DEFAULT_HOST == "127.0.0.1"
    assert inspect.signature(rpc_server.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(background_server).parameters["host"].default == "127.0.0.1"
    from pgsched.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert re.search(r"--host\s+TEXT\s+\[default:\s*127\.0\.0\.1\]", result.output), result.output


def _listening(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")
def test_pgsched_serve_listens_on_loopback_only(dsn):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched.cli", "serve", "--port", str(port), "--db", dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/site-map", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "pgsched serve exited"
                assert time.monotonic() < deadline, "pgsched serve did not start"
                time.sleep(0.1)
        # 127.0.0.1, as /proc/net/tcp spells it (little-endian hex), and nothing else
        assert _listening(port) == {"0100007F"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
