"""The RPC codec: every wrapped type round-trips in both encodings (no database)."""

from __future__ import annotations

import datetime
import json
import uuid

import msgpack
import pytest

from pgsched import exc
from pgsched.api import serializers as S
from pgsched.model import (
    LastVisitStatus,
    ListedOrigin,
    Lister,
    OriginVisitStats,
    PaginatedListedOriginList,
    SchedulerMetrics,
    Task,
    TaskArguments,
    TaskRun,
    TaskType,
)

UTC = datetime.UTC
NOW = datetime.datetime(2024, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)
PARIS = datetime.timezone(datetime.timedelta(hours=2))
LISTER_ID = uuid.UUID("6f1c1a40-3b44-4c0e-9a3c-2b1f7a9d0e11")
ENCODINGS = [S.MSGPACK, S.JSON]

MODELS = [
    TaskType(
        type="load-git",
        description="Load a git repository",
        backend_name="swh.loader.git.tasks.UpdateGitRepository",
        default_interval=datetime.timedelta(days=64),
        min_interval=datetime.timedelta(hours=12),
        max_interval=datetime.timedelta(days=64),
        backoff_factor=2.0,
        max_queue_length=None,
        num_retries=7,
        retry_delay=datetime.timedelta(hours=2),
    ),
    TaskType(type="t", description="d", backend_name="b"),
    TaskArguments(args=[1, "two", None, [3.5]], kwargs={"url": "https://example.org", "n": 2**40}),
    Task(
        type="load-git",
        arguments=TaskArguments(args=["x"], kwargs={"url": "https://ex.org/ü", "raw": b"\x00\xff"}),
        next_run=NOW,
        status="next_run_scheduled",
        policy="oneshot",
        retries_left=3,
        id=2**40,
        current_interval=datetime.timedelta(days=1, seconds=5, microseconds=7),
        priority="high",
    ),
    TaskRun(
        task=12,
        id=34,
        backend_id="celery-uuid",
        scheduled=NOW,
        started=NOW + datetime.timedelta(seconds=1),
        ended=NOW + datetime.timedelta(minutes=3),
        metadata={"worker": "w1", "nested": {"list": [1, 2]}},
        status="eventful",
    ),
    TaskRun(task=5),
    Lister(
        name="github",
        instance_name="github",
        id=LISTER_ID,
        current_state={"last_seen_id": 123456789},
        created=NOW,
        updated=NOW,
        last_listing_finished_at=NOW,
        first_visits_queue_prefix="github-first",
        first_visits_scheduled_at=NOW,
    ),
    ListedOrigin(
        lister_id=LISTER_ID,
        url="https://example.org/repo.git",
        visit_type="git",
        extra_loader_arguments={"branch": "main"},
        last_update=NOW,
        is_fork=True,
        forked_from_url="https://example.org/upstream.git",
        enabled=False,
        first_seen=NOW,
        last_seen=NOW,
    ),
    OriginVisitStats(
        url="https://example.org/repo.git",
        visit_type="git",
        last_successful=NOW,
        last_visit=NOW,
        last_visit_status=LastVisitStatus.not_found,
        last_scheduled=NOW,
        last_snapshot=bytes(range(20)),
        next_visit_queue_position=2**62,
        next_position_offset=6,
        successive_visits=3,
    ),
    OriginVisitStats(url="u", visit_type="svn"),
    SchedulerMetrics(
        lister_id=LISTER_ID,
        visit_type="git",
        last_update=NOW,
        origins_known=10,
        origins_enabled=9,
        origins_never_visited=4,
        origins_with_pending_changes=2,
    ),
]

VALUES = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    3.25,
    "text é 🎉",
    b"\x00\x01\xfe\xff",
    [1, "a", None],
    {"a": 1, "b": [True, False]},
    NOW,
    NOW.astimezone(PARIS),
    datetime.timedelta(days=-3, seconds=7, microseconds=11),
    datetime.timedelta(0),
    LISTER_ID,
    LastVisitStatus.successful,
    LastVisitStatus.failed,
    PaginatedListedOriginList(results=[MODELS[7]], next_page_token=(str(LISTER_ID), "u")),
    PaginatedListedOriginList(results=[], next_page_token=None),
    *MODELS,
    {"results": [MODELS[3], {"nested": [LISTER_ID, NOW]}]},
]


def ids(values):
    return [type(v).__name__ + str(i) for i, v in enumerate(values)]


@pytest.mark.parametrize("content_type", ENCODINGS)
@pytest.mark.parametrize("value", VALUES, ids=ids(VALUES))
def test_round_trip(content_type, value):
    decoded = S.loads(S.dumps(value, content_type), content_type)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("content_type", ENCODINGS)
def test_every_model_class_is_covered(content_type):
    from pgsched.model import MODELS as CLASSES

    assert {type(m).__name__ for m in MODELS} == set(CLASSES)


@pytest.mark.parametrize("content_type", ENCODINGS)
def test_datetime_comes_back_same_instant(content_type):
    decoded = S.loads(S.dumps(NOW.astimezone(PARIS), content_type), content_type)
    assert decoded == NOW
    assert decoded.utcoffset() is not None


def test_msgpack_datetime_is_timestamp_extension():
    packed = S.msgpack_dumps(NOW)
    raw = msgpack.unpackb(packed, timestamp=0)
    assert isinstance(raw, msgpack.Timestamp)
    assert raw.to_datetime() == NOW
    assert S.msgpack_loads(packed).tzinfo == UTC


@pytest.mark.parametrize("value", [2**64, 2**200, -(2**63) - 1, -(2**100)])
def test_msgpack_big_int_extension(value):
    packed = S.msgpack_dumps({"big": value})
    raw = msgpack.unpackb(packed, ext_hook=lambda code, data: (code, data))
    code, data = raw["big"]
    assert code == (1 if value > 0 else 2)
    assert int.from_bytes(data, "big") == abs(value)
    assert S.msgpack_loads(packed) == {"big": value}


@pytest.mark.parametrize("value", [2**64, -(2**100)])
def test_json_big_int_is_native(value):
    assert S.json_loads(S.json_dumps(value)) == value


def test_msgpack_wrapping_uses_bin_keys_and_str_names():
    raw = msgpack.unpackb(S.msgpack_dumps(LISTER_ID), raw=False)
    assert raw == {b"swhtype": "uuid", b"d": str(LISTER_ID)}
    raw = msgpack.unpackb(S.msgpack_dumps(b"ab"), raw=False)
    assert raw == b"ab"
    assert msgpack.unpackb(S.msgpack_dumps("ab"), raw=True) == b"ab"


def test_json_wrapping():
    assert json.loads(S.json_dumps(LISTER_ID)) == {"swhtype": "uuid", "d": str(LISTER_ID)}
    assert json.loads(S.json_dumps(b"\x00\x01")) == {"swhtype": "bytes", "d": "009"}
    assert json.loads(S.json_dumps(NOW)) == {
        "swhtype": "datetime",
        "d": "2024-05-17T08:30:15.123456+00:00",
    }
    assert json.loads(S.json_dumps(datetime.timedelta(days=1, seconds=2, microseconds=3))) == {
        "swhtype": "timedelta",
        "d": {"days": 1, "seconds": 2, "microseconds": 3},
    }


def test_model_wrapping_nests_models_and_names_type():
    task = MODELS[3]
    raw = json.loads(S.json_dumps(task))
    assert raw["swhtype"] == "scheduler_model"
    assert raw["d"]["__type__"] == "Task"
    assert raw["d"]["arguments"]["swhtype"] == "scheduler_model"
    assert raw["d"]["arguments"]["d"]["__type__"] == "TaskArguments"
    stats = json.loads(S.json_dumps(MODELS[8]))
    assert stats["d"]["last_visit_status"] == {"swhtype": "last_visit_status", "d": "not_found"}


def test_task_arguments_as_plain_map_are_accepted():
    raw = json.loads(S.json_dumps(MODELS[3]))
    raw["d"]["arguments"] = {"args": ["x"], "kwargs": {"k": 1}}
    task = S.json_loads(json.dumps(raw))
    assert task.arguments == TaskArguments(args=["x"], kwargs={"k": 1})


@pytest.mark.parametrize(
    "obj",
    [
        {"swhtype": "nope", "d": 1},
        {"swhtype": "uuid", "d": str(LISTER_ID), "extra": 1},
        {"swhtype": "uuid"},
        {"d": 1},
    ],
)
def test_other_maps_left_alone(obj):
    assert S.json_loads(json.dumps(obj)) == obj
    packed = msgpack.packb(obj, use_bin_type=True)
    assert S.msgpack_loads(packed) == obj


def test_msgpack_map_with_non_str_keys():
    value = {1: "one", 2.5: "float", b"k": "bytes", None: 0}
    decoded = S.msgpack_loads(S.msgpack_dumps(value))
    assert decoded == {1: "one", 2.5: "float", b"k": "bytes", None: 0}


def test_paged_result_token_list_becomes_tuple():
    raw = {
        "swhtype": "paged_result",
        "d": {"results": [], "next_page_token": ["a", "b"], "total_results": None},
    }
    page = S.json_loads(json.dumps(raw))
    assert page == PaginatedListedOriginList(results=[], next_page_token=("a", "b"))


@pytest.mark.parametrize("content_type", ENCODINGS)
@pytest.mark.parametrize(
    "error",
    [
        exc.StaleData("lister github changed", 3),
        exc.UnknownPolicy("no such policy: x"),
        exc.SchedulerException("boom"),
        exc.DatabaseUnavailable("down"),
        ValueError("bad count", -1),
        KeyError("k"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_exception_round_trip(content_type, error):
    decoded = S.loads(S.dumps(error, content_type), content_type)
    assert type(decoded) is type(error)
    assert decoded.args == error.args


def test_exception_map_fields():
    try:
        raise exc.StaleData("changed", 7)
    except exc.StaleData as e:
        error = S.encode_exception(e)
    assert error["type"] == "StaleData"
    assert error["module"] == "pgsched.exc"
    assert error["args"] == ["changed", 7]
    assert error["message"] == "('changed', 7)"
    assert any("raise exc.StaleData" in line for line in error["traceback"])


def test_unknown_exception_class_is_not_imported():
    raw = {
        "swhtype": "exception",
        "d": {"type": "Evil", "module": "os", "args": ["x"], "message": "m", "traceback": []},
    }
    decoded = S.json_loads(json.dumps(raw))
    assert type(decoded) is Exception
    assert decoded.args == ("os.Evil: m",)


@pytest.mark.parametrize("content_type", ENCODINGS)
def test_naive_datetime_refused_on_encoding(content_type):
    naive = datetime.datetime(2024, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="naive datetime"):
        S.dumps({"timestamp": naive}, content_type)


def test_naive_datetime_refused_on_json_decoding():
    body = json.dumps({"timestamp": {"swhtype": "datetime", "d": "2024-01-01T12:00:00"}})
    with pytest.raises(ValueError, match="naive datetime"):
        S.json_loads(body)


def test_model_validation_errors_surface_on_decoding():
    raw = json.loads(S.json_dumps(MODELS[3]))
    raw["d"]["status"] = "bogus"
    with pytest.raises(ValueError, match="status"):
        S.json_loads(json.dumps(raw))
    raw["d"]["__type__"] = "NoSuchModel"
    with pytest.raises(ValueError, match="NoSuchModel"):
        S.json_loads(json.dumps(raw))


@pytest.mark.parametrize(
    "content_type, body",
    [(S.MSGPACK, b"\xc1"), (S.MSGPACK, b"\x92\x01"), (S.JSON, b"{nope"), (S.JSON, b"\xff")],
)
def test_undecodable_bodies(content_type, body):
    with pytest.raises(ValueError):
        S.loads(body, content_type)


def test_unencodable_value():
    with pytest.raises(TypeError, match="cannot encode"):
        S.msgpack_dumps(object())
    with pytest.raises(TypeError, match="cannot encode"):
        S.json_dumps(object())


def test_generators_and_sets_become_lists():
    assert S.msgpack_loads(S.msgpack_dumps(x for x in (1, 2))) == [1, 2]
    assert S.json_loads(S.json_dumps({3})) == [3]
