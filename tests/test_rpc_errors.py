"""Error statuses with a real database behind the server (each test gets a
fresh database: conftest's ``dsn``).

- 400 with the error map for the scheduler's own errors and for bad input,
  and nothing written;
- 503 while the database is unreachable (a server pointed at a loopback port
  where nothing listens), retried by the client, then TransientRemoteException.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import time

import pytest
import requests

from pgsched import exc, get_scheduler
from pgsched.api import serializers as S
from pgsched.api.server import background_server, make_app
from pgsched.client import RemoteException, RemoteScheduler, TransientRemoteException
from pgsched.model import Lister, Task, TaskArguments, TaskType

psycopg = pytest.importorskip("psycopg")

UTC = datetime.UTC
NOW = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local(dsn):
    backend = get_scheduler("postgresql", db=dsn)
    yield backend
    backend.close()


@pytest.fixture
def url(dsn):
    app = make_app({"db": dsn, "pool_max_size": 4})
    with background_server(app) as url:
        yield url
    app.close()


@pytest.fixture
def remote(url):
    client = RemoteScheduler(url, timeout=30)
    yield client
    client.close()


@pytest.fixture
def task_type(local):
    task_type = TaskType(
        type="errors-git",
        description="d",
        backend_name="b",
        default_interval=datetime.timedelta(days=1),
    )
    local.create_task_type(task_type)
    return task_type


def raw_post(url, path, body, content_type=S.MSGPACK):
    data = body if isinstance(body, bytes) else S.dumps(body, content_type)
    response = requests.post(
        url + path, data=data, headers={"Content-Type": content_type, "Accept": S.JSON}, timeout=30
    )
    return response.status_code, response.json()


def table_count(dsn, table):
    with psycopg.connect(dsn) as conn:
        query = psycopg.sql.SQL("SELECT count(*) FROM scheduler.{}").format(
            psycopg.sql.Identifier(table)
        )
        return conn.execute(query).fetchone()[0]


def test_stale_data_reraised_with_args(remote, local):
    lister = remote.get_or_create_lister("errors-lister")
    assert isinstance(lister, Lister)
    assert remote.update_lister(lister.evolve(current_state={"n": 1})).current_state == {"n": 1}
    with pytest.raises(exc.StaleData) as info:
        remote.update_lister(lister.evolve(current_state={"n": 2}))
    assert info.value.args and str(lister.id) in str(info.value.args[0])
    assert local.get_lister("errors-lister").current_state == {"n": 1}


def test_unknown_policy_is_400_and_reraised(remote, url):
    with pytest.raises(exc.UnknownPolicy):
        remote.grab_next_visits("git", 3, policy="alphabetical")
    status, error = raw_post(
        url, "origins/grab_next", {"visit_type": "git", "count": 1, "policy": "x"}
    )
    assert status == 400
    assert error["type"] == "UnknownPolicy"
    assert error["module"] == "pgsched.exc"


def test_not_reraised_when_not_listed(url):
    client = RemoteScheduler(url, reraise_exceptions=[])
    with pytest.raises(RemoteException) as info:
        client.grab_next_visits("git", 3, policy="alphabetical")
    assert info.value.response.status_code == 400
    assert info.value.payload["type"] == "UnknownPolicy"


def task(type_, i, **changes):
    return Task(
        type=type_,
        arguments=TaskArguments(args=[i], kwargs={}),
        next_run=NOW,
        **changes,
    )


@pytest.mark.parametrize(
    "path, body, message",
    [
        # unknown task type: refused by the database, whole batch rolled back
        (
            "task/create",
            {"tasks": [task("errors-git", 1), task("no-such-type", 2)]},
            "no-such-type",
        ),
        # bad argument values, refused by the shim's checks
        ("task/create", {"tasks": [task("errors-git", 3)], "policy": "sometimes"}, "policy"),
        ("task/peek_ready", {"task_type": "errors-git", "num_tasks": -1}, "num_tasks"),
        ("origins/get", {"limit": 0}, "limit"),
        ("visit_scheduler/set", {"visit_type": "git", "position": 2**64}, "position"),
        ("task/get", {"task_ids": "1,2"}, "task_ids"),
    ],
)
def test_bad_input_is_400_and_writes_nothing(url, dsn, task_type, path, body, message):
    before = {t: table_count(dsn, t) for t in ("task", "visit_scheduler_queue_position")}
    status, error = raw_post(url, path, body)
    assert status == 400, error
    assert error["type"] in ("ValueError", "TypeError")
    assert message in error["message"]
    assert {t: table_count(dsn, t) for t in before} == before


def test_naive_datetime_in_json_is_400_and_writes_nothing(url, dsn, task_type):
    body = json.loads(S.json_dumps({"tasks": [task("errors-git", 9)]}))
    body["tasks"][0]["d"]["next_run"]["d"] = "2024-06-01T12:00:00"
    before = table_count(dsn, "task")
    status, error = raw_post(url, "task/create", json.dumps(body).encode(), S.JSON)
    assert status == 400
    assert "naive datetime" in error["message"]
    assert table_count(dsn, "task") == before


def test_json_in_msgpack_out(url, task_type):
    body = S.json_dumps({"task_type_name": "errors-git"})
    response = requests.post(
        url + "task_type/get",
        data=body,
        headers={"Content-Type": S.JSON, "Accept": S.MSGPACK},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == S.MSGPACK
    assert S.msgpack_loads(response.content) == task_type
    response = requests.post(
        url + "task_type/get", data=body, headers={"Content-Type": S.JSON}, timeout=30
    )
    assert response.headers["Content-Type"] == S.JSON
    assert S.json_loads(response.content) == task_type


class _Counting:
    """WSGI middleware counting the requests that reach the app."""

    def __init__(self, app):
        self.app = app
        self.hits = 0

    def __call__(self, environ, start_response):
        self.hits += 1
        return self.app(environ, start_response)


def test_unreachable_database_is_503_retried_then_transient(caplog):
    app = make_app(
        {
            "db": f"host=127.0.0.1 port={closed_port()} dbname=pgsched connect_timeout=2",
            "pool_timeout": 0.3,
        }
    )
    counting = _Counting(app)
    try:
        with background_server(counting) as url:
            status, error = raw_post(url, "task_type/get_all", {})
            assert status == 503
            assert error["type"] == "DatabaseUnavailable"
            counting.hits = 0
            client = RemoteScheduler(url, retry_wait=0.01)
            start = time.monotonic()
            with caplog.at_level(logging.INFO):
                with pytest.raises(TransientRemoteException) as info:
                    client.get_task_types()
            elapsed = time.monotonic() - start
    finally:
        app.close()
    assert info.value.response.status_code == 503
    assert info.value.payload["type"] == "DatabaseUnavailable"
    assert counting.hits == 5
    assert elapsed < 30
    assert any(
        r.name == "pgsched.api.server" and "database unavailable" in r.getMessage()
        for r in caplog.records
    )


def test_unexpected_database_error_is_500_not_retried(pgsched_server, caplog):
    """A database without pgsched's schema: the call fails, neither 400 nor 503."""
    from psycopg.conninfo import make_conninfo

    empty = make_conninfo(
        host=pgsched_server.host,
        port=pgsched_server.port,
        user=pgsched_server.user,
        password=pgsched_server.password,
        dbname="postgres",
    )
    app = make_app({"db": empty})
    counting = _Counting(app)
    try:
        with background_server(counting) as url:
            client = RemoteScheduler(url, retry_wait=0.01)
            with caplog.at_level(logging.ERROR, logger="pgsched.api.server"):
                with pytest.raises(RemoteException) as info:
                    client.get_task_types()
    finally:
        app.close()
    assert not isinstance(info.value, TransientRemoteException)
    assert info.value.response.status_code == 500
    assert "scheduler" in info.value.payload["message"]
    assert counting.hits == 1
    assert any("get_task_types failed" in r.getMessage() for r in caplog.records)
