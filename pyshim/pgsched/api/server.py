"""The RPC server: a WSGI application exposing every interface method over HTTP.

One ``POST /<path>`` endpoint per method of :mod:`pgsched.interface`, bodies
in msgpack or JSON, answers encoded as the ``Accept`` header asks.  The server
holds no SQL: it decodes the arguments, calls the backend object and encodes
what it returns.

Production::

    PGSCHED_DB='dbname=pgsched' gunicorn -w 4 -b 127.0.0.1:5008 'pgsched.api.server:make_app()'

Development: ``pgsched serve [--host 127.0.0.1] [--port 5008] [--db DSN]``.

Configuration (``make_app(config)``): a dict, the path of a TOML file, or
None to read the file named by ``PGSCHED_CONFIG`` or else the DSN in
``PGSCHED_DB``.  Keys (a TOML file may hold them at top level or under a
``[server]`` table):

- ``db``: libpq DSN of the scheduler database;
- ``pool_min_size`` / ``pool_max_size``: the backend's connection pool;
- ``pool_timeout``: seconds a call waits for a connection before the
  database counts as unavailable (503);
- ``max_request_size``: largest accepted request body, in bytes (64 MiB).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import tomllib
import traceback
from typing import Any

import psycopg
import psycopg_pool
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..exc import DatabaseUnavailable, SchedulerException
from ..interface import interface_methods
from . import serializers
from .serializers import JSON, MSGPACK

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5008

_UNAVAILABLE = (DatabaseUnavailable, psycopg.OperationalError, psycopg_pool.PoolTimeout)
_BAD_INPUT = (ValueError, TypeError, psycopg.DataError)


class BadRequest(ValueError):
    """The request cannot be turned into a method call (answered with 400)."""


def status_for(exc: BaseException) -> int:
    """The HTTP status that reports ``exc``."""
    if isinstance(exc, HTTPException) and exc.code:
        return exc.code
    if isinstance(exc, SchedulerException):
        return 400
    if isinstance(exc, _UNAVAILABLE):
        return 503
    if isinstance(exc, _BAD_INPUT):
        return 400
    return 500


def load_config(config: dict[str, Any] | str | os.PathLike | None = None) -> dict[str, Any]:
    """The server configuration from a dict, a TOML file, or the environment."""
    if config is None:
        path = os.environ.get("PGSCHED_CONFIG")
        if path:
            config = path
        else:
            config = {"db": os.environ.get("PGSCHED_DB")}
    if isinstance(config, str | os.PathLike):
        with open(config, "rb") as f:
            data = tomllib.load(f)
        config = {**data, **data.get("server", {})}
        config.pop("server", None)
    config = dict(config)
    config.setdefault("max_request_size", DEFAULT_MAX_REQUEST_SIZE)
    return config


def describe_dsn(dsn: str | None) -> str:
    """The DSN without its password, for logs."""
    if not dsn:
        return "(libpq defaults)"
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    params.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _build_backend(config: dict[str, Any]):
    from .. import get_scheduler

    kwargs: dict[str, Any] = {"db": config.get("db") or ""}
    for key, arg, kind in _POOL_SETTINGS:
        if config.get(key) is not None:
            kwargs[arg] = kind(config[key])
    return get_scheduler("postgresql", **kwargs)


# configuration key -> keyword argument of the backend's constructor
_POOL_SETTINGS = (
    ("pool_min_size", "min_size", int),
    ("pool_max_size", "max_size", int),
    ("pool_timeout", "timeout", float),
)


def _description(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


class SchedulerApp:
    """The WSGI application; build it with :func:`make_app`."""

    def __init__(self, config: dict[str, Any], scheduler=None):
        self.config = config
        self.max_request_size = int(config.get("max_request_size") or DEFAULT_MAX_REQUEST_SIZE)
        self.methods = interface_methods()
        self.signatures = {name: inspect.signature(fn) for name, fn in self.methods.items()}
        rules = [Rule("/", endpoint="index", methods=["GET"])]
        rules.append(Rule("/site-map", endpoint="site_map", methods=["GET"]))
        rules += [
            Rule(f"/{fn._endpoint_path}", endpoint=name, methods=["POST"])
            for name, fn in self.methods.items()
        ]
        self.url_map = Map(rules, strict_slashes=False)
        self.site_map = [
            {"rule": f"/{fn._endpoint_path}", "description": _description(fn)}
            for fn in self.methods.values()
        ]
        self._scheduler = scheduler
        self._lock = threading.Lock()

    # --- the backend, built once, on first use --------------------------------
    @property
    def scheduler(self):
        if self._scheduler is None:
            with self._lock:
                if self._scheduler is None:
                    logger.info("connecting to %s", describe_dsn(self.config.get("db")))
                    self._scheduler = _build_backend(self.config)
        return self._scheduler

    def close(self) -> None:
        """Close the backend (its connection pool), if it was built."""
        with self._lock:
            backend, self._scheduler = self._scheduler, None
        close = getattr(backend, "close", None)
        if close is not None:
            close()

    # --- WSGI ------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_request_size
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        endpoint = None
        try:
            endpoint, _ = adapter.match()
            if endpoint == "index":
                return self.index()
            if endpoint == "site_map":
                return self.encode(request, self.site_map)
            return self.call(request, endpoint)
        except Exception as e:
            return self.error(request, endpoint, e)

    def index(self) -> Response:
        body = (
            "<!doctype html><html><head><title>pgsched</title></head><body>"
            "<h1>pgsched scheduler RPC server</h1>"
            f"<p>{len(self.methods)} endpoints; see "
            '<a href="/site-map">/site-map</a>.</p></body></html>'
        )
        return Response(body, mimetype="text/html")

    def call(self, request: Request, name: str) -> Response:
        kwargs = self.decode_arguments(request, name)
        result = getattr(self.scheduler, name)(**kwargs)
        return self.encode(request, result)

    def decode_arguments(self, request: Request, name: str) -> dict[str, Any]:
        length = request.content_length
        if length is not None and length > self.max_request_size:
            raise RequestEntityTooLarge()
        data = self.read_body(request)
        if not data:
            kwargs: Any = {}
        else:
            content_type = serializers.media_type(request.headers.get("Content-Type"))
            if content_type not in (MSGPACK, JSON):
                raise BadRequest(
                    f"/{self.methods[name]._endpoint_path}: unsupported Content-Type "
                    f"{content_type or '(none)'!r}; send {MSGPACK} or {JSON}"
                )
            kwargs = serializers.loads(data, content_type)
        if not isinstance(kwargs, dict):
            raise BadRequest(
                f"{name}: the body must be a map of argument names to values, "
                f"not {type(kwargs).__name__}"
            )
        bad_keys = [k for k in kwargs if not isinstance(k, str)]
        if bad_keys:
            raise BadRequest(f"{name}: argument names must be strings, got {bad_keys!r}")
        signature = self.signatures[name]
        unknown = [k for k in kwargs if k == "self" or k not in signature.parameters]
        if unknown:
            raise BadRequest(
                f"{name}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                f"expected some of {', '.join(p for p in signature.parameters if p != 'self')}"
            )
        try:
            signature.bind(None, **kwargs)
        except TypeError as e:
            raise BadRequest(f"{name}: {e}") from None
        return kwargs

    def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 past ``max_request_size``.

        Read chunk by chunk so that a chunked body (no Content-Length) is
        measured too, instead of being cut at the limit.
        """
        stream = request.stream
        chunks, size = [], 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_request_size:
                raise RequestEntityTooLarge()
            chunks.append(chunk)

    # --- responses ---------------------------------------------------------------
    @staticmethod
    def response_type(request: Request) -> str:
        """msgpack when the client asks for it over JSON; JSON otherwise."""
        accept = request.accept_mimetypes
        return MSGPACK if accept[MSGPACK] > accept[JSON] else JSON

    def encode(self, request: Request, data: Any, status: int = 200) -> Response:
        content_type = self.response_type(request)
        return Response(serializers.dumps(data, content_type), status, mimetype=content_type)

    def error(self, request: Request, endpoint: str | None, exc: Exception) -> Response:
        status = status_for(exc)
        if isinstance(exc, RequestEntityTooLarge):
            exc = RequestEntityTooLarge(
                f"the request body exceeds the limit of {self.max_request_size} bytes "
                f"(max_request_size)"
            )
        where = f"{request.method} {request.path}"
        if status >= 500 and status != 503:
            logger.exception("%s: %s failed", where, endpoint or "request")
        elif status == 503:
            logger.warning("%s: database unavailable: %s", where, exc)
        elif not isinstance(exc, NotFound):
            logger.info("%s: %s: %s", where, type(exc).__name__, exc)
        error = serializers.encode_exception(exc)
        if isinstance(exc, HTTPException | BadRequest):
            # The request was at fault: the server's stack says nothing useful.
            error["traceback"] = traceback.format_exception_only(type(exc), exc)
        try:
            return self.encode(request, error, status)
        except Exception:
            pass
        try:
            # Text the codec cannot carry (a lone surrogate from a JSON
            # "\\ud800" escape) is sent escaped, with the same status.
            return self.encode(request, _escaped(error), status)
        except Exception:
            logger.exception("%s: cannot encode the error response", where)
            return Response("internal error", 500, mimetype="text/plain")


def _escaped(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8 (backslash escapes)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


def _default_logging() -> None:
    """Log pgsched's INFO lines to stderr when nothing configured logging (gunicorn)."""
    package = logging.getLogger("pgsched")
    if package.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


def make_app(config: dict[str, Any] | str | os.PathLike | None = None, scheduler=None):
    """The WSGI application.

    ``config`` is a dict, a TOML file's path, or None (``PGSCHED_CONFIG``, else
    ``PGSCHED_DB``).  ``scheduler`` serves an existing backend object instead of
    building one from ``config["db"]``.
    """
    _default_logging()
    config = load_config(config)
    app = SchedulerApp(config, scheduler=scheduler)
    logger.info(
        "pgsched RPC server: %d endpoints, database %s, max request size %d bytes",
        len(app.methods),
        "(given backend)" if scheduler is not None else describe_dsn(config.get("db")),
        app.max_request_size,
    )
    return app


@contextlib.contextmanager
def background_server(app, host: str = DEFAULT_HOST, port: int = 0):
    """Serve ``app`` from a thread (tests, benchmarks); yields the base URL.

    ``port=0`` takes a free port.  The server stops when the block ends.
    """
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # a prompt shutdown
        name=f"pgsched-rpc-{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, db: str | None = None) -> None:
    """Run the server with Werkzeug's development server (threaded), until interrupted."""
    from werkzeug.serving import run_simple

    config = load_config(None)
    if db:
        config["db"] = db
    app = make_app(config)
    logger.info("listening on http://%s:%d/", host, port)
    try:
        run_simple(host, port, app, threaded=True)
    finally:
        app.close()


__all__ = ["make_app", "serve", "background_server", "SchedulerApp", "status_for"]
