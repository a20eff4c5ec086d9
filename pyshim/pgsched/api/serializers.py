"""The RPC codec: the one encoder/decoder shared by the server and the client.

Two encodings carry the same values (see the protocol page of the docs):

- msgpack: ``str`` as str and ``bytes`` as bin; aware datetimes as the
  Timestamp extension (-1); integers beyond 64 bits as extensions 1 (positive)
  and 2 (negative), holding the magnitude in big-endian bytes.
- JSON: datetimes and bytes, which JSON lacks, are wrapped like the others.

Every other type travels as a two-key map ``{"swhtype": NAME, "d": VALUE}``
(in msgpack the two keys are bin, not str).  A decoder turns a map with exactly
those two keys and a known NAME back into the value and leaves any other map
untouched.
"""

from __future__ import annotations

import base64
import builtins
import datetime
import enum
import json
import traceback
import types
from collections.abc import Callable
from typing import Any
from uuid import UUID

import attr
import msgpack

from .. import exc as _exc
from ..model import MODELS, BaseSchedulerModel, LastVisitStatus, PaginatedListedOriginList

MSGPACK = "application/x-msgpack"
JSON = "application/json"

EXT_LONG_INT = 1
EXT_LONG_NEG_INT = 2

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class DecodeError(ValueError):
    """A body that is not a valid encoding of any value."""


# --- encoding ---------------------------------------------------------------


def _check_aware(value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be encoded (no UTC offset)")
    return value


def encode_model(obj: BaseSchedulerModel) -> dict[str, Any]:
    """A model's fields (nested models left for their own wrapping) plus ``__type__``."""
    fields = {a.name: getattr(obj, a.name) for a in attr.fields(type(obj))}
    fields["__type__"] = type(obj).__name__
    return fields


def encode_exception(exc: BaseException) -> dict[str, Any]:
    """The error map of an exception: type, module, args, message and traceback."""
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "args": list(_encodable_args(exc.args)),
        "message": str(exc),
        "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }


def _encodable_args(args):
    # Exception args may hold anything; whatever the codec cannot carry is sent as text.
    for arg in args:
        if arg is None or isinstance(arg, str | int | float | bool | bytes):
            yield arg
        else:
            try:
                dumps(arg, MSGPACK)
            except (TypeError, ValueError):
                yield repr(arg)
            else:
                yield arg


def _encode_paged(page: PaginatedListedOriginList) -> dict[str, Any]:
    return {"results": list(page.results), "next_page_token": page.next_page_token}


def _encode_timedelta(td: datetime.timedelta) -> dict[str, int]:
    return {"days": td.days, "seconds": td.seconds, "microseconds": td.microseconds}


# (type, NAME, encoder) tried in order; shared by both encodings.
TYPE_ENCODERS: list[tuple[type, str, Callable[[Any], Any]]] = [
    (UUID, "uuid", str),
    (datetime.timedelta, "timedelta", _encode_timedelta),
    (PaginatedListedOriginList, "paged_result", _encode_paged),
    (BaseException, "exception", encode_exception),
    (BaseSchedulerModel, "scheduler_model", encode_model),
    (LastVisitStatus, "last_visit_status", lambda e: e.value),
]


def _wrap(obj: Any, key_type: Callable[[str], Any]) -> Any:
    for kind, name, encoder in TYPE_ENCODERS:
        if isinstance(obj, kind):
            return {key_type("swhtype"): name, key_type("d"): encoder(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, types.GeneratorType | set | frozenset | map | filter):
        return list(obj)
    raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__name__}")


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        # Reached only for naive datetimes: aware ones are packed as Timestamps.
        _check_aware(obj)
        raise TypeError(f"cannot encode datetime {obj!r}")
    if isinstance(obj, int) and not isinstance(obj, bool):
        if obj > _UINT64_MAX:
            return msgpack.ExtType(EXT_LONG_INT, _int_bytes(obj))
        if obj < _INT64_MIN:
            return msgpack.ExtType(EXT_LONG_NEG_INT, _int_bytes(-obj))
    return _wrap(obj, str.encode)


def _int_bytes(magnitude: int) -> bytes:
    return magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return {"swhtype": "datetime", "d": _check_aware(obj).isoformat()}
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"swhtype": "bytes", "d": base64.b85encode(bytes(obj)).decode("ascii")}
    return _wrap(obj, str)


def msgpack_dumps(data: Any) -> bytes:
    return msgpack.packb(data, use_bin_type=True, datetime=True, default=_msgpack_default)


def json_dumps(data: Any) -> bytes:
    return json.dumps(data, default=_json_default, ensure_ascii=False).encode("utf-8")


def dumps(data: Any, content_type: str = MSGPACK) -> bytes:
    """Encode ``data`` as ``content_type`` (msgpack or JSON)."""
    if content_type == MSGPACK:
        return msgpack_dumps(data)
    if content_type == JSON:
        return json_dumps(data)
    raise ValueError(f"unsupported content type {content_type!r}")


# --- decoding ---------------------------------------------------------------


def decode_datetime(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {text!r} refused: a UTC offset is required")
    return value


def decode_model(fields: dict[str, Any]) -> BaseSchedulerModel:
    """Rebuild a model from its fields and ``__type__``."""
    fields = dict(fields)
    name = fields.pop("__type__", None)
    cls = MODELS.get(name)
    if cls is None:
        raise ValueError(f"unknown scheduler model type {name!r}")
    known = {a.name for a in attr.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{name} has no field(s) {', '.join(map(str, unknown))}")
    arguments = fields.get("arguments")
    if name == "Task" and isinstance(arguments, dict):
        # Nested arguments may travel as a plain map instead of a wrapped model.
        fields["arguments"] = MODELS["TaskArguments"](**arguments)
    return cls(**fields)


def _decode_paged(value: dict[str, Any]) -> PaginatedListedOriginList:
    token = value.get("next_page_token")
    if isinstance(token, list):
        # Tuples travel as arrays; page tokens are tuples.
        token = tuple(token)
    return PaginatedListedOriginList(
        results=list(value.get("results") or []), next_page_token=token
    )


_EXCEPTION_CLASSES: dict[str, type[BaseException]] = {
    name: getattr(_exc, name) for name in _exc.__all__
}


def decode_exception(value: dict[str, Any]) -> BaseException:
    """An instance of the named class when it is a pgsched or built-in exception.

    The scheduler's own errors are matched by class name whatever their module,
    so that another implementation's ``StaleData`` becomes pgsched's.  Modules
    are never imported on the strength of a message.
    """
    name = value.get("type")
    args = value.get("args") or []
    cls = _EXCEPTION_CLASSES.get(name)
    if cls is None and value.get("module") == "builtins":
        candidate = getattr(builtins, str(name), None)
        if isinstance(candidate, type) and issubclass(candidate, Exception):
            cls = candidate
    if cls is None:
        return Exception(f"{value.get('module')}.{name}: {value.get('message')}")
    try:
        return cls(*args)
    except Exception:
        return cls(value.get("message"))


TYPE_DECODERS: dict[str, Callable[[Any], Any]] = {
    "uuid": UUID,
    "timedelta": lambda d: datetime.timedelta(**d),
    "paged_result": _decode_paged,
    "exception": decode_exception,
    "scheduler_model": decode_model,
    "last_visit_status": LastVisitStatus,
    "datetime": decode_datetime,
    "bytes": lambda d: base64.b85decode(d),
}


def _unwrap(obj: dict, swhtype_key, d_key) -> Any:
    if len(obj) == 2 and swhtype_key in obj and d_key in obj:
        decoder = TYPE_DECODERS.get(obj[swhtype_key])
        if decoder is not None:
            return decoder(obj[d_key])
    return obj


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_LONG_INT:
        return int.from_bytes(data, "big")
    if code == EXT_LONG_NEG_INT:
        return -int.from_bytes(data, "big")
    return msgpack.ExtType(code, data)


# What a malformed body can raise while decoding: a wrapped value of the wrong
# shape (AttributeError, TypeError), out of range (OverflowError), too deeply
# nested (RecursionError).  All of them are the request's fault (400).
_BAD_BODY = (ValueError, TypeError, AttributeError, ArithmeticError, RecursionError)


def _argument_at_fault(data: bytes | str, content_type: str) -> str:
    """``"NAME: "`` when the body is a map whose value NAME alone cannot be decoded.

    Only called on the error path: the body is read again without the type
    wrappers, then each top-level value is re-encoded and decoded on its own.
    Returns "" when that does not single out one argument.
    """
    try:
        if content_type == MSGPACK:
            plain = msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3)
        else:
            plain = json.loads(data)
        if not isinstance(plain, dict):
            return ""
        for key, value in plain.items():
            try:
                if content_type == MSGPACK:
                    loads(msgpack.packb(value, use_bin_type=True, datetime=True), MSGPACK)
                else:
                    loads(json.dumps(value).encode(), JSON)
            except DecodeError:
                return f"{key}: "
    except Exception:
        return ""
    return ""


def msgpack_loads(data: bytes) -> Any:
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            timestamp=3,
            ext_hook=_ext_hook,
            object_hook=lambda obj: _unwrap(obj, b"swhtype", b"d"),
        )
    except DecodeError:
        raise
    except (*_BAD_BODY, msgpack.UnpackException) as e:
        where = _argument_at_fault(data, MSGPACK)
        raise DecodeError(f"{where}undecodable msgpack body: {type(e).__name__}: {e}") from e


def json_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data, object_hook=lambda obj: _unwrap(obj, "swhtype", "d"))
    except DecodeError:
        raise
    except _BAD_BODY as e:
        where = _argument_at_fault(data, JSON)
        raise DecodeError(f"{where}undecodable JSON body: {type(e).__name__}: {e}") from e


def loads(data: bytes, content_type: str = MSGPACK) -> Any:
    """Decode ``data`` encoded as ``content_type`` (msgpack or JSON)."""
    if content_type == MSGPACK:
        return msgpack_loads(data)
    if content_type == JSON:
        return json_loads(data)
    raise DecodeError(f"unsupported content type {content_type!r}")


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type header value, lower-cased."""
    return (header or "").split(";", 1)[0].strip().lower()
