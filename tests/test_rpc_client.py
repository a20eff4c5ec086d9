"""RemoteScheduler: generated methods, constructor, retries and error handling."""

from __future__ import annotations

import http.server
import inspect
import logging
import socket
import threading
import time

import pytest

from pgsched import exc
from pgsched.api.client import APIError
from pgsched.client import RemoteException, RemoteScheduler, TransientRemoteException
from pgsched.interface import interface_methods

FAST = {"retry_wait": 0.01}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_method_per_interface_method_same_signature():
    methods = interface_methods()
    assert len(methods) == 34
    for name, fn in methods.items():
        generated = getattr(RemoteScheduler, name)
        assert generated is not fn
        assert inspect.signature(generated) == inspect.signature(fn), name
        assert generated.__doc__ == fn.__doc__


def test_constructor_signature_matches_seed():
    params = list(inspect.signature(RemoteScheduler.__init__).parameters.values())
    assert [p.name for p in params] == [
        "self",
        "url",
        "timeout",
        "chunk_size",
        "max_retries",
        "pool_connections",
        "pool_maxsize",
        "adapter_kwargs",
        "api_exception",
        "reraise_exceptions",
        "enable_requests_retry",
        "kwargs",
    ]
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    assert defaults == {
        "timeout": None,
        "chunk_size": 4096,
        "max_retries": 3,
        "pool_connections": 20,
        "pool_maxsize": 100,
        "adapter_kwargs": None,
        "api_exception": None,
        "reraise_exceptions": None,
        "enable_requests_retry": None,
    }


def test_defaults_and_http_adapter_arguments():
    client = RemoteScheduler("http://127.0.0.1:1", max_retries=2, pool_maxsize=7)
    assert client.url == "http://127.0.0.1:1/"
    assert client.enable_requests_retry is True
    assert client.api_exception is APIError
    assert [c.__name__ for c in client.reraise_exceptions] == [
        "SchedulerException",
        "StaleData",
        "UnknownPolicy",
    ]
    adapter = client.session.get_adapter(client.url)
    assert adapter.max_retries.total == 2
    assert adapter._pool_connections == 20
    assert adapter._pool_maxsize == 7


def test_timeout_forms():
    assert RemoteScheduler("http://h", timeout=3.5).timeout == 3.5
    assert RemoteScheduler("http://h", timeout=(1, 2)).timeout == (1, 2)
    assert RemoteScheduler("http://h", timeout=[1, 2]).timeout == (1, 2)
    with pytest.raises(ValueError, match="timeout"):
        RemoteScheduler("http://h", timeout=[1, 2, 3])


def test_unknown_constructor_argument():
    with pytest.raises(TypeError, match="bogus"):
        RemoteScheduler("http://h", bogus=1)


def test_bad_call_arguments_fail_before_sending():
    client = RemoteScheduler(f"http://127.0.0.1:{closed_port()}", enable_requests_retry=False)
    with pytest.raises(TypeError):
        client.get_tasks(task_ids=[1], bogus=2)
    with pytest.raises(TypeError):
        client.get_tasks()


def test_connection_errors_retried_with_backoff_then_api_exception(caplog):
    client = RemoteScheduler(f"http://127.0.0.1:{closed_port()}", max_retries=0, **FAST)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="pgsched.api.client"):
        with pytest.raises(APIError):
            client.get_task_types()
    elapsed = time.monotonic() - start
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 4  # 5 attempts
    assert [r.getMessage().rsplit(" ", 1)[1] for r in retries] == [
        "0.01s",
        "0.02s",
        "0.04s",
        "0.08s",
    ]
    assert elapsed >= 0.15


def test_no_retry_when_disabled(caplog):
    client = RemoteScheduler(
        f"http://127.0.0.1:{closed_port()}", max_retries=0, enable_requests_retry=False
    )
    with caplog.at_level(logging.INFO, logger="pgsched.api.client"):
        with pytest.raises(APIError):
            client.get_task_types()
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_custom_api_exception():
    class Unreachable(Exception):
        pass

    client = RemoteScheduler(
        f"http://127.0.0.1:{closed_port()}",
        api_exception=Unreachable,
        enable_requests_retry=False,
        max_retries=0,
    )
    with pytest.raises(Unreachable):
        client.get_task_types()


class _ProxyPage(http.server.BaseHTTPRequestHandler):
    """A server that is not a scheduler: every POST gets an HTML page."""

    status = 502

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Counted before answering: the client may check the count as soon
        # as it has the answer.
        self.server.hits += 1
        body = b"<html><body><h1>Bad gateway</h1></body></html>"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy_page():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyPage)
    server.hits = 0
    server.status = 502
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(10)
    server.server_close()


def test_html_page_on_502_is_transient_and_retried(proxy_page):
    client = RemoteScheduler(f"http://127.0.0.1:{proxy_page.server_port}", **FAST)
    with pytest.raises(TransientRemoteException) as info:
        client.get_task_types()
    assert info.value.response.status_code == 502
    assert proxy_page.hits == 5


@pytest.mark.parametrize("status", [500, 418])
def test_html_page_gives_api_exception(proxy_page, status):
    proxy_page.status = status
    client = RemoteScheduler(f"http://127.0.0.1:{proxy_page.server_port}", **FAST)
    with pytest.raises(APIError, match=f"HTTP {status}.*Bad gateway"):
        client.get_task_types()
    assert proxy_page.hits == 1


def test_read_timeout_is_api_exception_not_retried():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (kernel backlog), never answers
        port = silent.getsockname()[1]
        client = RemoteScheduler(f"http://127.0.0.1:{port}", timeout=[2, 0.2], **FAST)
        start = time.monotonic()
        with pytest.raises(APIError, match="timed out"):
            client.grab_ready_tasks("load-git")
        assert time.monotonic() - start < 1.5


def test_remote_exception_carries_payload():
    payload = {"type": "Oops", "message": "it broke", "args": [], "module": "m"}
    error = RemoteException(payload)
    assert error.payload is payload
    assert error.response is None
    assert str(error) == "Oops: it broke"
    assert issubclass(TransientRemoteException, RemoteException)
    assert str(RemoteException("404 not found")) == "404 not found"


def test_reraise_exceptions_override():
    client = RemoteScheduler("http://h", reraise_exceptions=[exc.StaleData])
    assert client.reraise_exceptions == [exc.StaleData]
    assert RemoteScheduler.reraise_exceptions != [exc.StaleData]


def test_unencodable_argument_is_named_before_sending():
    import datetime

    client = RemoteScheduler(f"http://127.0.0.1:{closed_port()}", enable_requests_retry=False)
    with pytest.raises(ValueError, match="^timestamp: naive datetime"):
        client.peek_ready_tasks("load-git", timestamp=datetime.datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="^metadata: cannot encode"):
        client.start_task_run("b", metadata={"x": object()})
