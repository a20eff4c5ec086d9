"""The RPC client: :class:`RemoteScheduler`, one method per interface method.

The methods are generated from :mod:`pgsched.interface`: each one sends its
arguments by name to ``POST {url}/{path}`` in msgpack and decodes the answer
back into pgsched's models.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .. import exc as _exc
from ..interface import SchedulerInterface, interface_methods
from . import serializers
from .serializers import JSON, MSGPACK

logger = logging.getLogger(__name__)


class APIError(Exception):
    """The server could not be reached, or answered something that is not the protocol."""


class RemoteException(Exception):
    """The server answered with an error.

    ``payload`` is the decoded error map (type, module, args, message,
    traceback) or a short text; ``response`` the ``requests`` response.
    """

    def __init__(self, payload: Any = None, response: requests.Response | None = None):
        super().__init__(payload)
        self.payload = payload
        self.response = response

    def __str__(self) -> str:
        payload = self.payload
        if isinstance(payload, dict) and "type" in payload:
            status = f"{self.response.status_code} " if self.response is not None else ""
            return f"{status}{payload.get('type')}: {payload.get('message')}"
        return str(payload)


class TransientRemoteException(RemoteException):
    """A 502 or 503: the server or its database is (for now) unavailable."""


def _remote_method(name: str, fn):
    signature = inspect.signature(fn)
    path = fn._endpoint_path

    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        data = {k: v for k, v in bound.arguments.items() if k != "self"}
        return self._call(path, data)

    method.__signature__ = signature
    return method


class _GeneratedMethods(type):
    """Adds one method per interface method to the class being created."""

    def __new__(mcs, cls_name, bases, namespace):
        for name, fn in interface_methods().items():
            namespace.setdefault(name, _remote_method(name, fn))
        return super().__new__(mcs, cls_name, bases, namespace)


class RemoteScheduler(SchedulerInterface, metaclass=_GeneratedMethods):
    """Proxy to a remote scheduler over the RPC protocol.

    - ``timeout``: seconds, or a (connect, read) pair (a list of two is a pair);
    - ``chunk_size``: bytes read at a time from a response;
    - ``max_retries``, ``pool_connections``, ``pool_maxsize``,
      ``adapter_kwargs``: given to the HTTP connection pool (requests'
      ``HTTPAdapter``);
    - ``api_exception``: raised when the server is unreachable or answers
      something that is not the protocol (default :class:`APIError`);
    - ``reraise_exceptions``: error classes re-raised, with the server's args,
      when the error's type has their name;
    - ``enable_requests_retry``: retry a call that failed with a connection
      error, a 502 or a 503, waiting ``retry_wait * 2**n`` seconds between the
      ``retry_attempts`` attempts (default on).
    """

    reraise_exceptions: list[type[Exception]] = [
        _exc.SchedulerException,
        _exc.StaleData,
        _exc.UnknownPolicy,
    ]
    enable_requests_retry: bool = True
    retry_attempts: int = 5
    retry_wait: float = 0.1
    retry_max_wait: float = 5.0

    def __init__(
        self,
        url: str,
        timeout: None | tuple[float, float] | list[float] | float = None,
        chunk_size: int = 4096,
        max_retries: int = 3,
        pool_connections: int = 20,
        pool_maxsize: int = 100,
        adapter_kwargs: dict[str, Any] | None = None,
        api_exception: type[Exception] | None = None,
        reraise_exceptions: list[type[Exception]] | None = None,
        enable_requests_retry: bool | None = None,
        **kwargs,
    ):
        self.url = url.rstrip("/") + "/"
        if isinstance(timeout, list):
            if len(timeout) != 2:
                raise ValueError(f"timeout: a list must hold (connect, read), got {timeout!r}")
            timeout = (timeout[0], timeout[1])
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.api_exception = api_exception or APIError
        if reraise_exceptions is not None:
            self.reraise_exceptions = list(reraise_exceptions)
        if enable_requests_retry is not None:
            self.enable_requests_retry = enable_requests_retry
        for key in ("retry_attempts", "retry_wait", "retry_max_wait"):
            if key in kwargs:
                setattr(self, key, kwargs.pop(key))
        if kwargs:
            raise TypeError(f"RemoteScheduler got unexpected arguments: {', '.join(kwargs)}")
        adapter = HTTPAdapter(
            max_retries=max_retries,
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            **(adapter_kwargs or {}),
        )
        self.session = requests.Session()
        self.session.mount(self.url, adapter)

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"RemoteScheduler({self.url!r})"

    # --- one call -------------------------------------------------------------
    def _call(self, path: str, data: dict[str, Any]) -> Any:
        body = self._encode(data)
        attempts = self.retry_attempts if self.enable_requests_retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post(path, body)
            except (requests.ConnectionError, TransientRemoteException) as e:
                if attempt >= attempts:
                    if isinstance(e, requests.ConnectionError):
                        raise self.api_exception(e) from e
                    raise
                wait = min(self.retry_wait * 2 ** (attempt - 1), self.retry_max_wait)
                logger.info(
                    "%s%s: attempt %d/%d failed (%s), retrying in %.2fs",
                    self.url,
                    path,
                    attempt,
                    attempts,
                    e,
                    wait,
                )
                time.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _encode(data: dict[str, Any]) -> bytes:
        try:
            return serializers.dumps(data, MSGPACK)
        except (TypeError, ValueError) as e:
            # Name the argument that cannot be sent (a naive datetime, say).
            for name, value in data.items():
                try:
                    serializers.dumps(value, MSGPACK)
                except (TypeError, ValueError) as arg_error:
                    # Not type(e): some ValueErrors (UnicodeEncodeError) take other arguments.
                    kind = TypeError if isinstance(e, TypeError) else ValueError
                    raise kind(f"{name}: {arg_error}") from e
            raise

    def _post(self, path: str, body: bytes) -> Any:
        try:
            response = self.session.post(
                self.url + path,
                data=body,
                headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
                timeout=self.timeout,
                stream=True,
            )
        except requests.ConnectionError:
            raise
        except requests.RequestException as e:
            # A read timeout is not retried: the call may have taken effect.
            raise self.api_exception(e) from e
        try:
            content = b"".join(response.iter_content(self.chunk_size))
        except requests.ConnectionError:
            raise
        except requests.RequestException as e:
            raise self.api_exception(e) from e
        finally:
            response.close()
        if response.status_code == 200:
            try:
                return self._decode(response, content)
            except ValueError as e:
                raise self.api_exception(f"{path}: undecodable response: {e}") from e
        self._raise_for(response, content)

    @staticmethod
    def _decode(response: requests.Response, content: bytes) -> Any:
        content_type = serializers.media_type(response.headers.get("Content-Type"))
        if content_type not in (MSGPACK, JSON):
            raise ValueError(f"unexpected Content-Type {content_type or '(none)'!r}")
        return serializers.loads(content, content_type)

    def _raise_for(self, response: requests.Response, content: bytes):
        status = response.status_code
        if status == 404:
            raise RemoteException("404 not found", response)
        try:
            payload = self._decode(response, content)
        except (ValueError, TypeError):
            payload = None
        if not (isinstance(payload, dict) and isinstance(payload.get("type"), str)):
            if status in (502, 503):
                raise TransientRemoteException(f"HTTP {status}", response)
            raise self.api_exception(
                f"{response.url}: HTTP {status}: {content[:200].decode('utf-8', 'replace')}"
            )
        if 400 <= status < 500:
            for cls in self.reraise_exceptions:
                if cls.__name__ == payload["type"]:
                    raise cls(*(payload.get("args") or []))
            raise RemoteException(payload, response)
        if status in (502, 503):
            raise TransientRemoteException(payload, response)
        raise RemoteException(payload, response)


__all__ = ["RemoteScheduler", "RemoteException", "TransientRemoteException", "APIError"]
