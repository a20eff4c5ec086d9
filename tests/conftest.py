"""Database fixtures: a fresh, migrated database for every test.

The server is one started beforehand: `make pg-start` (scripts/pg.sh) or the
one PGSCHED_DB names; `make test` passes it as PGSCHED_TEST_DSN.  Only its
host, port, user and password are used (PGSCHED_TEST_HOST, _PORT, _USER and
_PASSWORD override each; scripts/pg.sh's defaults otherwise).  pytest-postgresql's
own process fixture is not used: it would start the server as the current user,
which is root on CI.

Once per pytest session the pgsched schema is installed (pgsched.migrate) into
a template database, pgsched_test_<pid>_tmpl; each test gets a clone of it,
pgsched_test_<pid>, dropped afterwards.  The pid keeps concurrent pytest runs on
one server apart.

Fixtures: pg_conn (a psycopg connection to the test database), dsn (its
connection string) and scheduler (get_scheduler("postgresql", db=dsn), and the
same behind pgsched's RPC server and client: see the fixture).
"""

from __future__ import annotations

import os
import re

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories

import pgsched

TEST_DBNAME = f"pgsched_test_{os.getpid()}"
_TEST_DB_RE = re.compile(r"^pgsched_test_(\d+)(_tmpl)?$")


def _server() -> dict[str, str | None]:
    params: dict[str, str | None] = {
        "host": "127.0.0.1",
        "port": os.environ.get("PGSCHED_PORT", "5433"),
        "user": "postgres",
        "password": None,
    }
    dsn = os.environ.get("PGSCHED_TEST_DSN")
    if dsn:
        given = conninfo_to_dict(dsn)
        params.update({k: given[k] for k in params if given.get(k)})
    for key in params:
        value = os.environ.get(f"PGSCHED_TEST_{key.upper()}")
        if value:
            params[key] = value
    return params


SERVER = _server()


def _install_schema(host, port, user, dbname, password=None, **_ignored) -> None:
    """pytest-postgresql loader: migrate the template database."""
    from pgsched.migrate import migrate

    migrate(make_conninfo(host=host, port=port, user=user, password=password, dbname=dbname))


def _drop_stale_test_databases() -> None:
    """Drop test databases left by killed pytest runs on this machine.

    A database named after a pid that no longer runs here is stale; it would
    also make a later run that reuses the pid fail on CREATE DATABASE.  Only
    for a server on this machine, where the pid means something.
    """
    host = SERVER["host"] or ""
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
        return
    admin = make_conninfo(**{**SERVER, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
        for name in names:
            match = _TEST_DB_RE.match(name)
            if not match or _alive(int(match.group(1))):
                continue
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("ALTER DATABASE {} WITH is_template false").format(ident))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The template: created, migrated and marked as template once per session.
_pgsched_template = factories.postgresql_noproc(
    host=SERVER["host"],
    port=SERVER["port"],
    user=SERVER["user"],
    password=SERVER["password"],
    dbname=TEST_DBNAME,
    load=[_install_schema],
)


@pytest.fixture(scope="session")
def pgsched_server(request):
    """The server, with this session's template database installed."""
    _drop_stale_test_databases()
    return request.getfixturevalue("_pgsched_template")


pg_conn = factories.postgresql("pgsched_server")


@pytest.fixture
def dsn(pg_conn, pgsched_server) -> str:
    """Connection string of this test's fresh database."""
    return make_conninfo(
        host=pgsched_server.host,
        port=pgsched_server.port,
        user=pgsched_server.user,
        password=pgsched_server.password,
        dbname=pg_conn.info.dbname,
    )


@pytest.fixture(params=["local", "remote"])
def scheduler(request, dsn):
    """The backend on this test's database, once per path: "local" is the
    in-process backend; "remote" is pgsched's RPC client talking to pgsched's
    RPC server (a thread on a free loopback port) in front of that backend.
    Every interface test thus runs twice, with the same assertions."""
    backend = pgsched.get_scheduler("postgresql", db=dsn)
    try:
        if request.param == "local":
            yield backend
            return
        from pgsched.api.server import background_server, make_app

        with background_server(make_app(scheduler=backend)) as url:
            client = pgsched.get_scheduler("remote", url=url, timeout=60)
            try:
                yield client
            finally:
                client.close()
    finally:
        backend.close()
