"""The WSGI server: routes, content negotiation, request checks and error statuses.

Requests refused here never reach the backend: the app points at a database
port where nothing listens, so a request that did reach it would answer 503,
not 400.
"""

from __future__ import annotations

import datetime
import http.client
import json
import re
import socket

import pytest
from werkzeug.test import Client

from pgsched.api import serializers as S
from pgsched.api.server import background_server, load_config, make_app, status_for
from pgsched.client import RemoteException, RemoteScheduler
from pgsched.interface import interface_methods


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rpc_app():
    app = make_app({"db": f"host=127.0.0.1 port={closed_port()} dbname=none connect_timeout=2"})
    yield app
    app.close()


@pytest.fixture
def wsgi(rpc_app):
    return Client(rpc_app)


def error_map(response):
    content_type = S.media_type(response.headers["Content-Type"])
    data = S.loads(response.get_data(), content_type)
    assert set(data) == {"type", "module", "args", "message", "traceback"}
    assert isinstance(data["traceback"], list)
    return data


def post(client, path, body, content_type=S.MSGPACK, accept=S.MSGPACK):
    if not isinstance(body, bytes):
        body = S.dumps(body, content_type)
    return client.post(path, data=body, headers={"Content-Type": content_type, "Accept": accept})


def test_index(wsgi):
    response = wsgi.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"pgsched" in response.data


@pytest.mark.parametrize("accept", [None, "*/*", S.JSON, S.MSGPACK])
def test_site_map_lists_the_34_endpoints(wsgi, accept):
    response = wsgi.get("/site-map", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    expected = S.MSGPACK if accept == S.MSGPACK else S.JSON
    assert response.mimetype == expected
    site_map = S.loads(response.data, expected)
    methods = interface_methods()
    assert len(site_map) == 34
    assert [entry["rule"] for entry in site_map] == [
        f"/{fn._endpoint_path}" for fn in methods.values()
    ]
    for entry, fn in zip(site_map, methods.values(), strict=True):
        assert entry["description"] == fn.__doc__.strip()


def test_paths_match_the_protocol_table():
    paths = {name: fn._endpoint_path for name, fn in interface_methods().items()}
    assert paths["create_task_type"] == "task_type/create"
    assert paths["peek_ready_priority_tasks"] == "task/peek_ready_with_priority"
    assert paths["mass_schedule_task_runs"] == "task_run/schedule"
    assert paths["get_visit_types_for_listed_origins"] == "lister/visit_types"
    assert paths["visit_scheduler_queue_position_set"] == "visit_scheduler/set"
    assert paths["filter_task_to_archive"] == "task/filter_for_archive"
    assert len(set(paths.values())) == 34


def test_unknown_path_is_404(wsgi):
    response = post(wsgi, "/task/nope", {})
    assert response.status_code == 404
    assert error_map(response)["type"] == "NotFound"


def test_client_reports_404(rpc_app):
    with background_server(rpc_app) as url:
        client = RemoteScheduler(url)
        with pytest.raises(RemoteException) as info:
            client._call("no/such/endpoint", {})
    assert info.value.payload == "404 not found"
    assert info.value.response.status_code == 404


def test_get_on_an_endpoint_is_405(wsgi):
    response = wsgi.get("/task/get")
    assert response.status_code == 405


NAIVE = {"swhtype": "datetime", "d": "2024-01-01T00:00:00"}


@pytest.mark.parametrize(
    "path, body, content_type, message",
    [
        ("/task/get", {"task_ids": [1], "bogus": 1}, S.MSGPACK, "unknown argument.*'bogus'"),
        ("/task/get", {"bogus": 1}, S.JSON, "unknown argument.*'bogus'"),
        ("/task/get", {}, S.MSGPACK, "missing a required argument: 'task_ids'"),
        ("/task/get", {"self": 1, "task_ids": []}, S.MSGPACK, "unknown argument.*'self'"),
        ("/task/get", [1, 2], S.MSGPACK, "must be a map"),
        ("/task/get", {1: [1]}, S.MSGPACK, "argument names must be strings"),
        ("/task/get", b"\xc1\x00", S.MSGPACK, "undecodable msgpack"),
        ("/task/get", b"\x92\x01", S.MSGPACK, "undecodable msgpack"),
        ("/task/get", b'{"task_ids": [1', S.JSON, "undecodable JSON"),
        ("/task/get", b"task_ids=1", "application/x-www-form-urlencoded", "Content-Type"),
        (
            "/task/peek_ready",
            json.dumps({"task_type": "t", "timestamp": NAIVE}).encode(),
            S.JSON,
            "naive datetime",
        ),
        (
            "/task_type/create",
            json.dumps(
                {
                    "task_type": {
                        "swhtype": "scheduler_model",
                        "d": {"__type__": "TaskType", "type": 3, "description": "", "x": 1},
                    }
                }
            ).encode(),
            S.JSON,
            "TaskType has no field.*x",
        ),
        (
            "/task_type/create",
            json.dumps(
                {
                    "task_type": {
                        "swhtype": "scheduler_model",
                        "d": {"__type__": "TaskType", "type": 3, "description": "d"},
                    }
                }
            ).encode(),
            S.JSON,
            "backend_name",
        ),
    ],
)
@pytest.mark.parametrize("accept", [S.MSGPACK, S.JSON])
def test_bad_requests_are_400_with_error_map(wsgi, path, body, content_type, message, accept):
    response = post(wsgi, path, body, content_type, accept)
    assert response.status_code == 400, response.data
    assert response.mimetype == accept
    error = error_map(response)
    assert error["message"]
    assert re.search(message, error["message"]), error["message"]


def test_body_over_the_limit_is_413():
    app = make_app({"db": "host=127.0.0.1 port=1", "max_request_size": 1000})
    client = Client(app)
    response = post(client, "/task/get", {"task_ids": list(range(2000))})
    assert response.status_code == 413
    error = error_map(response)
    assert error["type"] == "RequestEntityTooLarge"
    assert "1000 bytes" in error["message"]
    # a body just under the limit goes through the checks (and is refused for another reason)
    response = post(client, "/task/get", {"task_ids": [1], "bogus": 1})
    assert response.status_code == 400


def test_chunked_body_over_the_limit_is_413():
    app = make_app({"db": "host=127.0.0.1 port=1", "max_request_size": 1000})
    body = S.msgpack_dumps({"task_ids": list(range(2000))})
    with background_server(app) as url:
        host, port = url.rstrip("/").rsplit(":", 1)
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        conn.putrequest("POST", "/task/get")
        conn.putheader("Content-Type", S.MSGPACK)
        conn.putheader("Accept", S.JSON)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(body), 500):
            chunk = body[i : i + 500]
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        data = json.loads(response.read())
        conn.close()
    assert response.status == 413, data["message"]
    assert data["type"] == "RequestEntityTooLarge"


def test_default_limit_is_64_mib():
    assert make_app({"db": "x"}).max_request_size == 64 * 1024 * 1024


def test_config_from_toml_file(tmp_path, monkeypatch):
    path = tmp_path / "pgsched.toml"
    path.write_text('db = "dbname=foo"\n[server]\nmax_request_size = 5000\npool_max_size = 4\n')
    config = load_config(str(path))
    assert config == {"db": "dbname=foo", "max_request_size": 5000, "pool_max_size": 4}
    monkeypatch.setenv("PGSCHED_CONFIG", str(path))
    assert make_app().max_request_size == 5000
    monkeypatch.delenv("PGSCHED_CONFIG")
    monkeypatch.setenv("PGSCHED_DB", "dbname=bar")
    assert make_app().config["db"] == "dbname=bar"


def test_status_mapping():
    import psycopg
    import psycopg_pool

    from pgsched import exc

    assert status_for(exc.StaleData("x")) == 400
    assert status_for(exc.UnknownPolicy("x")) == 400
    assert status_for(exc.SchedulerException("x")) == 400
    assert status_for(ValueError("x")) == 400
    assert status_for(TypeError("x")) == 400
    assert status_for(exc.DatabaseUnavailable("x")) == 503
    assert status_for(psycopg.OperationalError("x")) == 503
    assert status_for(psycopg_pool.PoolTimeout("x")) == 503
    assert status_for(RuntimeError("x")) == 500
    assert status_for(KeyError("x")) == 500


def test_datetimes_in_json_keep_their_offset():
    value = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    assert S.json_loads(S.json_dumps(value)).utcoffset() == datetime.timedelta(hours=5)


def test_pgsched_serve_command(tmp_path):
    """`pgsched serve` answers the site map; it needs no database for that."""
    import subprocess
    import sys
    import time

    import requests

    port = closed_port()
    db = f"host=127.0.0.1 port={closed_port()} dbname=none"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched.cli", "serve", "--port", str(port), "--db", db],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/site-map", timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "pgsched serve did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        assert len(response.json()) == 34
    finally:
        proc.terminate()
        proc.wait(timeout=15)
