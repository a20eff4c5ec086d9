"""The PostgreSQL backend: each interface method is one call of one function.

What happens here, and only here: arguments are checked for shape (types,
timezone-aware datetimes, 64-bit integers, enum values), turned into the
parallel arrays the SQL functions take, sent in one statement, and the rows
that come back are turned into models.  Every decision (what is ready, what
to visit next, how a run reschedules its task) is made by the functions of
the ``scheduler`` schema; the statements below are fixed text.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
import uuid
import weakref
from collections.abc import Iterable
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps

from . import exc
from .interface import (
    DEFAULT_ABSOLUTE_COOLDOWN,
    DEFAULT_FAILED_COOLDOWN,
    DEFAULT_NOT_FOUND_COOLDOWN,
    DEFAULT_SCHEDULED_COOLDOWN,
    SchedulerInterface,
)
from .model import (
    TASK_POLICIES,
    TASK_PRIORITIES,
    TASK_RUN_STATUSES,
    TASK_STATUSES,
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

logger = logging.getLogger(__name__)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Deadlocks can only arise between writers of one origin listed by several
# listers (see sql/functions/50_origins.sql); PostgreSQL then aborts one
# transaction, which is retried whole.
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
ATTEMPTS = 3


# --------------------------------------------------------------------------
# Argument checks: shape only, with the argument's name in every message.
# --------------------------------------------------------------------------


def _datetime(name: str, value, optional: bool = True) -> datetime.datetime | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: must not be None")
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{name}: must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name}: naive datetime {value!r}; give a timezone-aware one")
    return value


def _timestamp_text(name: str, value) -> datetime.datetime:
    """A datetime or ISO 8601 text; a date alone means midnight UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 timestamp: {value!r}") from None
        if parsed.tzinfo is None:
            if len(value.strip()) == 10:  # YYYY-MM-DD
                return parsed.replace(tzinfo=datetime.UTC)
            raise ValueError(f"{name}: timestamp {value!r} has no UTC offset")
        return parsed
    return _datetime(name, value, optional=False)


def _int(name: str, value, optional: bool = True) -> int | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: must not be None")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: must be an integer, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name}: {value} does not fit in 64 bits")
    return value


def _ints(name: str, values) -> list[int]:
    if isinstance(values, int | str | bytes) or values is None:
        raise TypeError(f"{name}: must be a list of integers")
    return [_int(f"{name}[{i}]", v, optional=False) for i, v in enumerate(values)]


def _text(name: str, value, optional: bool = True) -> str | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: must not be None")
    if not isinstance(value, str):
        raise TypeError(f"{name}: must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{name}: contains a NUL character")
    if not value.isascii():
        _check_unicode(name, value)
    return value


def _check_unicode(name: str, text: str) -> None:
    """Refuse a lone surrogate (JSON's "\\ud800" decodes to one): not UTF-8 text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{name}: not valid Unicode text ({e.reason}: {text[e.start : e.end]!r} "
            f"at position {e.start})"
        ) from None


def _choice(name: str, value, choices, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")
    return value


def _choices(name: str, value, choices) -> list[str] | None:
    """One value or a list of values (search filters)."""
    if value is None:
        return None
    if not isinstance(value, str | list | tuple | set | frozenset):
        kind = type(value).__name__
        raise TypeError(f"{name}: must be a string or a list of strings, not {kind}")
    values = [value] if isinstance(value, str) else list(value)
    return [_choice(name, v, choices, optional=False) for v in values]


def _uuid(name: str, value, optional: bool = True) -> uuid.UUID | None:
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: must not be None")
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{name}: not a UUID: {value!r}") from None
    raise TypeError(f"{name}: must be a UUID or its string, not {type(value).__name__}")


def _timedelta(name: str, value) -> datetime.timedelta | None:
    if value is None:
        return None
    if not isinstance(value, datetime.timedelta):
        raise TypeError(f"{name}: must be a timedelta, not {type(value).__name__}")
    return value


def _models(name: str, values, cls) -> list:
    if values is None or isinstance(values, str | bytes | dict):
        raise TypeError(f"{name}: must be a list of {cls.__name__}")
    try:
        values = list(values)
    except TypeError:
        raise TypeError(
            f"{name}: must be a list of {cls.__name__}, not {type(values).__name__}"
        ) from None
    for i, v in enumerate(values):
        if not isinstance(v, cls):
            raise TypeError(f"{name}[{i}]: must be a {cls.__name__}, not {type(v).__name__}")
    return values


def _without_nul(value):
    """PostgreSQL jsonb cannot hold NUL characters: they are removed."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def _json_dumps(value) -> str:
    try:
        return json.dumps(_without_nul(value), allow_nan=False, ensure_ascii=False)
    except RecursionError:
        raise ValueError("JSON value: nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"JSON value: {e}") from None


def _jsonb(name: str, value, optional: bool = True):
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: must not be None")
    if not isinstance(value, dict):
        raise TypeError(f"{name}: must be a dict, not {type(value).__name__}")
    if not value:
        return _EMPTY_JSONB
    try:
        text = _json_dumps(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not serializable as JSON: {e}") from None
    if not text.isascii():
        _check_unicode(name, text)
    # Serialized once, here; psycopg sends the text as it is.
    return Jsonb(text, dumps=_as_is)


def _as_is(text: str) -> str:
    return text


_EMPTY_JSONB = Jsonb("{}", dumps=_as_is)


# --------------------------------------------------------------------------
# Rows to models
# --------------------------------------------------------------------------


def _fields(cls) -> tuple[str, ...]:
    return tuple(a.name for a in cls.__attrs_attrs__)


def _model(cls, **convert):
    """A builder of ``cls`` from a row of the matching SQL type.

    Rows come from columns whose types already guarantee what the model's
    validators check (timestamptz is aware, enums hold known values), so the
    model is filled in directly: validating every field of every row would
    cost more than the database call itself on large results.  ``convert``
    maps a field to the function turning its column value into the model's.
    """
    names = _fields(cls)
    new = object.__new__
    setattr_ = object.__setattr__

    def build(row: dict):
        obj = new(cls)
        for name in names:
            value = row[name]
            if name in convert and value is not None:
                value = convert[name](value)
            setattr_(obj, name, value)
        return obj

    return build


def _task_arguments(value: dict) -> TaskArguments:
    return TaskArguments(args=value["args"], kwargs=value["kwargs"])


_task = _model(Task, arguments=_task_arguments)
_task_type = _model(TaskType)
_task_run = _model(TaskRun)
_lister = _model(Lister)
_listed_origin = _model(ListedOrigin)
_visit_stats = _model(OriginVisitStats, last_visit_status=LastVisitStatus)
_metrics = _model(SchedulerMetrics)


# --------------------------------------------------------------------------
# The statements: one function call each.
# --------------------------------------------------------------------------

Q_CREATE_TASK_TYPE = """
SELECT scheduler.create_task_type(
    type => %(type)s, description => %(description)s, backend_name => %(backend_name)s,
    default_interval => %(default_interval)s, min_interval => %(min_interval)s,
    max_interval => %(max_interval)s, backoff_factor => %(backoff_factor)s,
    max_queue_length => %(max_queue_length)s, num_retries => %(num_retries)s,
    retry_delay => %(retry_delay)s)
"""
Q_GET_TASK_TYPES = "SELECT * FROM scheduler.get_task_types(names => %(names)s)"
Q_CREATE_TASKS = """
SELECT * FROM scheduler.create_tasks(
    types => %(types)b, arguments => %(arguments)b, next_runs => %(next_runs)b,
    policies => %(policies)b::text[]::scheduler.task_policy[],
    statuses => %(statuses)b::text[]::scheduler.task_status[],
    priorities => %(priorities)b::text[]::scheduler.task_priority[],
    retries_left => %(retries_left)b,
    default_policy => %(policy)s::scheduler.task_policy)
"""
Q_SET_STATUS_TASKS = """
SELECT count(*) FROM scheduler.set_status_tasks(
    task_ids => %(task_ids)s, status => %(status)s::scheduler.task_status,
    next_run => %(next_run)s)
"""
Q_SEARCH_TASKS = """
SELECT * FROM scheduler.search_tasks(
    task_ids => %(task_ids)s, task_types => %(task_types)s,
    statuses => %(statuses)s::text[]::scheduler.task_status[],
    priorities => %(priorities)s::text[]::scheduler.task_priority[],
    policies => %(policies)s::text[]::scheduler.task_policy[],
    before => %(before)s, after => %(after)s, max_rows => %(limit)s)
"""
Q_GET_TASKS = "SELECT * FROM scheduler.get_tasks(task_ids => %(task_ids)s)"
# Written out, not built from the function names: no SQL is assembled in Python.
Q_READY_TASKS = {
    "peek_ready_tasks": """
SELECT * FROM scheduler.peek_ready_tasks(
    task_type => %(task_type)s, ts => %(timestamp)s, num_tasks => %(num_tasks)s)
""",
    "grab_ready_tasks": """
SELECT * FROM scheduler.grab_ready_tasks(
    task_type => %(task_type)s, ts => %(timestamp)s, num_tasks => %(num_tasks)s)
""",
    "peek_ready_priority_tasks": """
SELECT * FROM scheduler.peek_ready_priority_tasks(
    task_type => %(task_type)s, ts => %(timestamp)s, num_tasks => %(num_tasks)s)
""",
    "grab_ready_priority_tasks": """
SELECT * FROM scheduler.grab_ready_priority_tasks(
    task_type => %(task_type)s, ts => %(timestamp)s, num_tasks => %(num_tasks)s)
""",
}
Q_SCHEDULE_TASK_RUNS = """
SELECT * FROM scheduler.schedule_task_runs(
    task_ids => %(task_ids)b, backend_ids => %(backend_ids)b,
    scheduled => %(scheduled)b, metadata => %(metadata)b)
"""
Q_START_TASK_RUN = """
SELECT * FROM scheduler.start_task_run(
    backend_id => %(backend_id)s, metadata => %(metadata)s, ts => %(timestamp)s)
"""
Q_END_TASK_RUN = """
SELECT * FROM scheduler.end_task_run(
    backend_id => %(backend_id)s, status => %(status)s::scheduler.task_run_status,
    metadata => %(metadata)s, ts => %(timestamp)s)
"""
Q_GET_TASK_RUNS = """
SELECT * FROM scheduler.get_task_runs(task_ids => %(task_ids)s, max_rows => %(limit)s)
"""
Q_FILTER_TASK_TO_ARCHIVE = """
SELECT * FROM scheduler.filter_task_to_archive(
    after_ts => %(after_ts)s, before_ts => %(before_ts)s, max_rows => %(limit)s,
    page_token => %(page_token)s)
"""
Q_DELETE_ARCHIVED_TASKS = """
SELECT * FROM scheduler.delete_archived_tasks(
    task_ids => %(task_ids)s, task_run_ids => %(task_run_ids)s)
"""
Q_GET_LISTERS = """
SELECT * FROM scheduler.get_listers(
    with_first_visits_to_schedule => %(with_first_visits_to_schedule)s, ids => %(ids)s,
    lister_name => %(name)s, instance_name => %(instance_name)s)
"""
Q_GET_OR_CREATE_LISTER = """
SELECT * FROM scheduler.get_or_create_lister(
    name => %(name)s, instance_name => %(instance_name)s,
    first_visits_queue_prefix => %(first_visits_queue_prefix)s)
"""
Q_UPDATE_LISTER = """
SELECT * FROM scheduler.update_lister(
    id => %(id)s, updated => %(updated)s, current_state => %(current_state)s,
    last_listing_finished_at => %(last_listing_finished_at)s,
    first_visits_queue_prefix => %(first_visits_queue_prefix)s,
    first_visits_scheduled_at => %(first_visits_scheduled_at)s)
"""
Q_VISIT_TYPES = """
SELECT * FROM scheduler.get_visit_types_for_listed_origins(lister_id => %(lister_id)s)
"""
Q_RECORD_LISTED_ORIGINS = """
SELECT * FROM scheduler.record_listed_origins(
    lister_ids => %(lister_ids)b, urls => %(urls)b, visit_types => %(visit_types)b,
    extra_loader_arguments => %(extra_loader_arguments)b, last_updates => %(last_updates)b,
    is_forks => %(is_forks)b, forked_from_urls => %(forked_from_urls)b,
    enabled => %(enabled)b)
"""
Q_GET_LISTED_ORIGINS = """
SELECT * FROM scheduler.get_listed_origins(
    lister_id => %(lister_id)s, urls => %(urls)s, enabled => %(enabled)s,
    max_rows => %(limit)s, after_lister_id => %(after_lister_id)s,
    after_url => %(after_url)s, after_visit_type => %(after_visit_type)s)
"""
Q_GRAB_NEXT_VISITS = """
SELECT * FROM scheduler.grab_next_visits(
    visit_type => %(visit_type)s, count => %(count)s, policy => %(policy)s,
    enabled => %(enabled)s, lister_uuid => %(lister_uuid)s, lister_name => %(lister_name)s,
    lister_instance_name => %(lister_instance_name)s, ts => %(timestamp)s,
    absolute_cooldown => %(absolute_cooldown)s, scheduled_cooldown => %(scheduled_cooldown)s,
    failed_cooldown => %(failed_cooldown)s, not_found_cooldown => %(not_found_cooldown)s,
    tablesample => %(tablesample)s)
"""
Q_VISIT_STATS_UPSERT = """
SELECT scheduler.origin_visit_stats_upsert(
    urls => %(urls)b, visit_types => %(visit_types)b,
    last_successful => %(last_successful)b, last_visit => %(last_visit)b,
    last_visit_status => %(last_visit_status)b::text[]::scheduler.last_visit_status[],
    last_scheduled => %(last_scheduled)b, last_snapshot => %(last_snapshot)b,
    next_visit_queue_position => %(next_visit_queue_position)b,
    next_position_offset => %(next_position_offset)b,
    successive_visits => %(successive_visits)b)
"""
Q_VISIT_STATS_GET = """
SELECT * FROM scheduler.origin_visit_stats_get(urls => %(urls)s, visit_types => %(visit_types)s)
"""
Q_QUEUE_POSITION_GET = "SELECT * FROM scheduler.visit_scheduler_queue_position_get()"
Q_QUEUE_POSITION_SET = """
SELECT scheduler.visit_scheduler_queue_position_set(
    visit_type => %(visit_type)s, queue_position => %(position)s)
"""
Q_UPDATE_METRICS = """
SELECT * FROM scheduler.update_metrics(lister_id => %(lister_id)s, ts => %(timestamp)s)
"""
Q_GET_METRICS = """
SELECT * FROM scheduler.get_metrics(lister_id => %(lister_id)s, visit_type => %(visit_type)s)
"""


def _configure(conn: psycopg.Connection) -> None:
    """Every pooled connection: UTC session, NUL-free JSON."""
    conn.execute("SET timezone TO 'UTC'")
    set_json_dumps(_json_dumps, context=conn)


# A connection that has sat idle in the pool may have lost its server (a
# restart); it is checked, at the cost of a round trip, before it is handed
# out.  One in steady use is not: that round trip would cost more than many
# calls themselves, and a broken connection is discarded when it comes back.
IDLE_CHECK_AFTER = 5.0  # seconds
_returned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _note_return(conn: psycopg.Connection) -> None:
    _returned_at[conn] = time.monotonic()


def _check_if_idle(conn: psycopg.Connection) -> None:
    if time.monotonic() - _returned_at.get(conn, 0.0) > IDLE_CHECK_AFTER:
        psycopg_pool.ConnectionPool.check_connection(conn)


class PostgresScheduler(SchedulerInterface):
    """The scheduler, backed by the functions of a PostgreSQL database.

    ``db`` is a libpq connection string.  The pool holds ``min_size`` to
    ``max_size`` connections; a call waits at most ``timeout`` seconds for
    one before raising ``DatabaseUnavailable``.
    """

    def __init__(
        self,
        db: str,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 3.0,
        **_ignored: Any,
    ):
        self.db = db
        self.pool = psycopg_pool.ConnectionPool(
            db,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            check=_check_if_idle,
            reset=_note_return,
            open=False,
            name="pgsched",
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresScheduler pool={self.pool.name}>"

    # One statement, in its own transaction; errors become pgsched's.
    def _run(self, query: str, params: dict[str, Any]) -> list[dict]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.pool.connection() as conn:
                    return conn.execute(query, params).fetchall()
            except RETRYABLE as e:
                if attempt == ATTEMPTS:
                    raise exc.SchedulerException(f"gave up after {attempt} attempts: {e}") from e
                logger.warning("retrying after %s (attempt %d)", type(e).__name__, attempt)
                time.sleep(0.05 * attempt)
            except psycopg.Error as e:
                raise _translate(e) from e
            except psycopg_pool.PoolTimeout as e:
                raise exc.DatabaseUnavailable(f"no database connection: {e}") from e
        raise AssertionError("unreachable")

    # --- task types -------------------------------------------------------
    def create_task_type(self, task_type: TaskType) -> None:
        (task_type,) = _models("task_type", [task_type], TaskType)
        params = task_type.to_dict()
        for name in ("type", "description", "backend_name"):
            _text(f"task_type.{name}", params[name], optional=False)
        for name in ("max_queue_length", "num_retries"):
            _int(f"task_type.{name}", params[name])
        if params["backoff_factor"] is not None:
            params["backoff_factor"] = float(params["backoff_factor"])
        self._run(Q_CREATE_TASK_TYPE, params)

    def get_task_type(self, task_type_name: str) -> TaskType | None:
        name = _text("task_type_name", task_type_name, optional=False)
        rows = self._run(Q_GET_TASK_TYPES, {"names": [name]})
        return _task_type(rows[0]) if rows else None

    def get_task_types(self) -> list[TaskType]:
        return [_task_type(r) for r in self._run(Q_GET_TASK_TYPES, {"names": None})]

    # --- tasks ------------------------------------------------------------
    def create_tasks(self, tasks: list[Task], policy: str = "recurring") -> list[Task]:
        tasks = _models("tasks", tasks, Task)
        policy = _choice("policy", policy, TASK_POLICIES, optional=False)
        if not tasks:
            return []
        params = {
            "types": [t.type for t in tasks],
            "arguments": [
                _jsonb(
                    "tasks.arguments",
                    {"args": list(t.arguments.args), "kwargs": t.arguments.kwargs},
                )
                for t in tasks
            ],
            "next_runs": [_datetime("tasks.next_run", t.next_run, False) for t in tasks],
            "policies": [t.policy for t in tasks],
            "statuses": [t.status for t in tasks],
            "priorities": [t.priority for t in tasks],
            "retries_left": [_int("tasks.retries_left", t.retries_left) for t in tasks],
            "policy": policy,
        }
        return [_task(r) for r in self._run(Q_CREATE_TASKS, params)]

    def set_status_tasks(
        self,
        task_ids: list[int],
        status: str = "disabled",
        next_run: datetime.datetime | None = None,
    ) -> None:
        self._run(
            Q_SET_STATUS_TASKS,
            {
                "task_ids": _ints("task_ids", task_ids),
                "status": _choice("status", status, TASK_STATUSES, optional=False),
                "next_run": _datetime("next_run", next_run),
            },
        )

    def disable_tasks(self, task_ids: list[int]) -> None:
        self.set_status_tasks(task_ids, status="disabled")

    def search_tasks(
        self,
        task_id=None,
        task_type=None,
        status=None,
        priority=None,
        policy=None,
        before: datetime.datetime | None = None,
        after: datetime.datetime | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        if task_id is None:
            task_ids = None
        elif isinstance(task_id, int):
            task_ids = [_int("task_id", task_id)]
        else:
            task_ids = _ints("task_id", task_id)
        if task_type is None:
            task_types = None
        elif isinstance(task_type, str):
            task_types = [task_type]
        elif isinstance(task_type, list | tuple | set | frozenset):
            task_types = [_text("task_type", t, optional=False) for t in task_type]
        else:
            raise TypeError(
                f"task_type: must be a string or a list of strings, not {type(task_type).__name__}"
            )
        params = {
            "task_ids": task_ids,
            "task_types": task_types,
            "statuses": _choices("status", status, TASK_STATUSES),
            "priorities": _choices("priority", priority, TASK_PRIORITIES),
            "policies": _choices("policy", policy, TASK_POLICIES),
            "before": _datetime("before", before),
            "after": _datetime("after", after),
            "limit": _int("limit", limit),
        }
        return [_task(r) for r in self._run(Q_SEARCH_TASKS, params)]

    def get_tasks(self, task_ids: list[int]) -> list[Task]:
        return [_task(r) for r in self._run(Q_GET_TASKS, {"task_ids": _ints("task_ids", task_ids)})]

    def _ready(self, name, task_type, timestamp, num_tasks) -> list[Task]:
        params = {
            "task_type": _text("task_type", task_type, optional=False),
            "timestamp": _datetime("timestamp", timestamp),
            "num_tasks": _int("num_tasks", num_tasks),
        }
        return [_task(r) for r in self._run(Q_READY_TASKS[name], params)]

    def peek_ready_tasks(self, task_type, timestamp=None, num_tasks=None) -> list[Task]:
        return self._ready("peek_ready_tasks", task_type, timestamp, num_tasks)

    def grab_ready_tasks(self, task_type, timestamp=None, num_tasks=None) -> list[Task]:
        return self._ready("grab_ready_tasks", task_type, timestamp, num_tasks)

    def peek_ready_priority_tasks(self, task_type, timestamp=None, num_tasks=None) -> list[Task]:
        return self._ready("peek_ready_priority_tasks", task_type, timestamp, num_tasks)

    def grab_ready_priority_tasks(self, task_type, timestamp=None, num_tasks=None) -> list[Task]:
        return self._ready("grab_ready_priority_tasks", task_type, timestamp, num_tasks)

    # --- task runs --------------------------------------------------------
    def schedule_task_run(
        self,
        task_id: int,
        backend_id: str,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> TaskRun:
        params = {
            "task_ids": [_int("task_id", task_id, optional=False)],
            "backend_ids": [_text("backend_id", backend_id)],
            "scheduled": [_datetime("timestamp", timestamp)],
            "metadata": [_jsonb("metadata", metadata)],
        }
        return _task_run(self._run(Q_SCHEDULE_TASK_RUNS, params)[0])

    def mass_schedule_task_runs(self, task_runs: list[TaskRun]) -> None:
        runs = _models("task_runs", task_runs, TaskRun)
        if not runs:
            return None
        params = {
            "task_ids": [_int("task_runs.task", r.task, optional=False) for r in runs],
            "backend_ids": [_text("task_runs.backend_id", r.backend_id) for r in runs],
            "scheduled": [_datetime("task_runs.scheduled", r.scheduled) for r in runs],
            "metadata": [_jsonb("task_runs.metadata", r.metadata) for r in runs],
        }
        self._run(Q_SCHEDULE_TASK_RUNS, params)
        return None

    def start_task_run(self, backend_id, metadata=None, timestamp=None) -> TaskRun | None:
        params = {
            "backend_id": _text("backend_id", backend_id, optional=False),
            "metadata": _jsonb("metadata", metadata),
            "timestamp": _datetime("timestamp", timestamp),
        }
        rows = self._run(Q_START_TASK_RUN, params)
        return _task_run(rows[0]) if rows else None

    def end_task_run(self, backend_id, status, metadata=None, timestamp=None) -> TaskRun | None:
        params = {
            "backend_id": _text("backend_id", backend_id, optional=False),
            "status": _choice("status", status, TASK_RUN_STATUSES, optional=False),
            "metadata": _jsonb("metadata", metadata),
            "timestamp": _datetime("timestamp", timestamp),
        }
        rows = self._run(Q_END_TASK_RUN, params)
        return _task_run(rows[0]) if rows else None

    def get_task_runs(self, task_ids: list[int], limit: int | None = None) -> list[TaskRun]:
        params = {"task_ids": _ints("task_ids", task_ids), "limit": _int("limit", limit)}
        return [_task_run(r) for r in self._run(Q_GET_TASK_RUNS, params)]

    def filter_task_to_archive(
        self, after_ts, before_ts, limit: int = 10, page_token: str | None = None
    ) -> dict[str, Any]:
        params = {
            "after_ts": _timestamp_text("after_ts", after_ts),
            "before_ts": _timestamp_text("before_ts", before_ts),
            "limit": _int("limit", limit, optional=False),
            "page_token": _text("page_token", page_token),
        }
        rows = self._run(Q_FILTER_TASK_TO_ARCHIVE, params)
        result: dict[str, Any] = {"tasks": []}
        for row in rows:
            entry = {k: v for k, v in row.items() if k not in ("row_token", "has_more")}
            result["tasks"].append(entry)
        if rows and rows[-1]["has_more"]:
            result["next_page_token"] = rows[-1]["row_token"]
        return result

    def delete_archived_tasks(self, task_ids: list[dict[str, int]]) -> None:
        if task_ids is None or isinstance(task_ids, dict | str):
            raise TypeError("task_ids: must be a list of {'task_id', 'task_run_id'} maps")
        pairs = []
        for i, pair in enumerate(task_ids):
            if not isinstance(pair, dict) or not {"task_id", "task_run_id"} <= set(pair):
                raise ValueError(f"task_ids[{i}]: must be a map with task_id and task_run_id")
            pairs.append(
                (
                    _int(f"task_ids[{i}].task_id", pair["task_id"], optional=False),
                    _int(f"task_ids[{i}].task_run_id", pair["task_run_id"], optional=False),
                )
            )
        self._run(
            Q_DELETE_ARCHIVED_TASKS,
            {"task_ids": [p[0] for p in pairs], "task_run_ids": [p[1] for p in pairs]},
        )

    # --- listers ----------------------------------------------------------
    def _listers(self, **filters) -> list[Lister]:
        params = {"with_first_visits_to_schedule": False, "ids": None}
        params.update({"name": None, "instance_name": None})
        params.update(filters)
        return [_lister(r) for r in self._run(Q_GET_LISTERS, params)]

    def get_listers(self, with_first_visits_to_schedule: bool = False) -> list[Lister]:
        if not isinstance(with_first_visits_to_schedule, bool):
            raise TypeError("with_first_visits_to_schedule: must be True or False")
        return self._listers(with_first_visits_to_schedule=with_first_visits_to_schedule)

    def get_listers_by_id(self, lister_ids: list[str]) -> list[Lister]:
        if lister_ids is None or isinstance(lister_ids, str):
            raise TypeError("lister_ids: must be a list of UUIDs")
        ids = [_uuid(f"lister_ids[{i}]", v, optional=False) for i, v in enumerate(lister_ids)]
        return self._listers(ids=ids)

    def get_lister(self, name: str, instance_name: str | None = None) -> Lister | None:
        found = self._listers(
            name=_text("name", name, optional=False),
            instance_name=_text("instance_name", instance_name) or "",
        )
        return found[0] if found else None

    def get_or_create_lister(
        self,
        name: str,
        instance_name: str | None = None,
        first_visits_queue_prefix: str | None = None,
    ) -> Lister:
        params = {
            "name": _text("name", name, optional=False),
            "instance_name": _text("instance_name", instance_name) or "",
            "first_visits_queue_prefix": _text(
                "first_visits_queue_prefix", first_visits_queue_prefix
            ),
        }
        return _lister(self._run(Q_GET_OR_CREATE_LISTER, params)[0])

    def update_lister(self, lister: Lister) -> Lister:
        (lister,) = _models("lister", [lister], Lister)
        if lister.id is None:
            raise ValueError("lister.id: must be set (get the lister from the scheduler first)")
        if lister.updated is None:
            raise exc.StaleData(f"lister {lister.id}: no updated timestamp given")
        params = {
            "id": lister.id,
            "updated": lister.updated,
            "current_state": _jsonb("lister.current_state", lister.current_state),
            "last_listing_finished_at": lister.last_listing_finished_at,
            "first_visits_queue_prefix": _text(
                "lister.first_visits_queue_prefix", lister.first_visits_queue_prefix
            ),
            "first_visits_scheduled_at": lister.first_visits_scheduled_at,
        }
        return _lister(self._run(Q_UPDATE_LISTER, params)[0])

    def get_visit_types_for_listed_origins(self, lister: Lister) -> list[str]:
        (lister,) = _models("lister", [lister], Lister)
        rows = self._run(Q_VISIT_TYPES, {"lister_id": _uuid("lister.id", lister.id, False)})
        return [r["get_visit_types_for_listed_origins"] for r in rows]

    # --- listed origins ---------------------------------------------------
    def record_listed_origins(self, listed_origins: Iterable[ListedOrigin]) -> list[ListedOrigin]:
        origins = _models("listed_origins", listed_origins, ListedOrigin)
        if not origins:
            return []
        params = {
            "lister_ids": [o.lister_id for o in origins],
            "urls": [_text("listed_origins.url", o.url, optional=False) for o in origins],
            "visit_types": [
                _text("listed_origins.visit_type", o.visit_type, optional=False) for o in origins
            ],
            "extra_loader_arguments": [
                _jsonb("listed_origins.extra_loader_arguments", o.extra_loader_arguments)
                for o in origins
            ],
            "last_updates": [o.last_update for o in origins],
            "is_forks": [o.is_fork for o in origins],
            "forked_from_urls": [
                _text("listed_origins.forked_from_url", o.forked_from_url) for o in origins
            ],
            "enabled": [o.enabled for o in origins],
        }
        return [_listed_origin(r) for r in self._run(Q_RECORD_LISTED_ORIGINS, params)]

    def get_listed_origins(
        self,
        lister_id=None,
        url: str | None = None,
        urls: list[str] | None = None,
        enabled: bool | None = True,
        limit: int = 1000,
        page_token=None,
    ) -> PaginatedListedOriginList:
        limit = _int("limit", limit, optional=False)
        if limit < 1:
            raise ValueError(f"limit: must be at least 1, got {limit}")
        url_list = None
        if urls is not None:
            if isinstance(urls, str):
                raise TypeError("urls: must be a list of strings")
            url_list = [_text(f"urls[{i}]", u, optional=False) for i, u in enumerate(urls)]
        if url is not None:
            url_list = (url_list or []) + [_text("url", url, optional=False)]
        after = (None, None, None)
        if page_token is not None:
            if not isinstance(page_token, list | tuple) or len(page_token) != 3:
                raise ValueError(
                    f"page_token: malformed (expected the token of the previous page): "
                    f"{page_token!r}"
                )
            after = (
                _uuid("page_token", page_token[0], optional=False),
                _text("page_token", page_token[1], optional=False),
                _text("page_token", page_token[2], optional=False),
            )
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError("enabled: must be True, False or None")
        params = {
            "lister_id": _uuid("lister_id", lister_id),
            "urls": url_list,
            "enabled": enabled,
            "limit": limit,
            "after_lister_id": after[0],
            "after_url": after[1],
            "after_visit_type": after[2],
        }
        rows = self._run(Q_GET_LISTED_ORIGINS, params)
        token = None
        if rows and rows[-1]["has_more"]:
            last = rows[-1]
            token = (str(last["lister_id"]), last["url"], last["visit_type"])
        return PaginatedListedOriginList(
            results=[_listed_origin(r) for r in rows], next_page_token=token
        )

    def grab_next_visits(
        self,
        visit_type: str,
        count: int,
        policy: str,
        enabled: bool = True,
        lister_uuid: str | None = None,
        lister_name: str | None = None,
        lister_instance_name: str | None = None,
        timestamp: datetime.datetime | None = None,
        absolute_cooldown: datetime.timedelta | None = DEFAULT_ABSOLUTE_COOLDOWN,
        scheduled_cooldown: datetime.timedelta | None = DEFAULT_SCHEDULED_COOLDOWN,
        failed_cooldown: datetime.timedelta | None = DEFAULT_FAILED_COOLDOWN,
        not_found_cooldown: datetime.timedelta | None = DEFAULT_NOT_FOUND_COOLDOWN,
        tablesample: float | None = None,
    ) -> list[ListedOrigin]:
        if tablesample is not None:
            if isinstance(tablesample, bool) or not isinstance(tablesample, int | float):
                raise TypeError("tablesample: must be a number (a percentage)")
            tablesample = float(tablesample)
        if not isinstance(enabled, bool):
            raise TypeError("enabled: must be True or False")
        params = {
            "visit_type": _text("visit_type", visit_type, optional=False),
            "count": _int("count", count, optional=False),
            "policy": _text("policy", policy, optional=False),
            "enabled": enabled,
            "lister_uuid": _uuid("lister_uuid", lister_uuid),
            "lister_name": _text("lister_name", lister_name),
            "lister_instance_name": _text("lister_instance_name", lister_instance_name),
            "timestamp": _datetime("timestamp", timestamp),
            "absolute_cooldown": _timedelta("absolute_cooldown", absolute_cooldown),
            "scheduled_cooldown": _timedelta("scheduled_cooldown", scheduled_cooldown),
            "failed_cooldown": _timedelta("failed_cooldown", failed_cooldown),
            "not_found_cooldown": _timedelta("not_found_cooldown", not_found_cooldown),
            "tablesample": tablesample,
        }
        return [_listed_origin(r) for r in self._run(Q_GRAB_NEXT_VISITS, params)]

    # --- visit statistics -------------------------------------------------
    def origin_visit_stats_upsert(self, origin_visit_stats: Iterable[OriginVisitStats]) -> None:
        stats = _models("origin_visit_stats", origin_visit_stats, OriginVisitStats)
        if not stats:
            return None
        params = {
            "urls": [_text("origin_visit_stats.url", s.url, optional=False) for s in stats],
            "visit_types": [
                _text("origin_visit_stats.visit_type", s.visit_type, optional=False) for s in stats
            ],
            "last_successful": [s.last_successful for s in stats],
            "last_visit": [s.last_visit for s in stats],
            "last_visit_status": [
                s.last_visit_status.value if s.last_visit_status else None for s in stats
            ],
            "last_scheduled": [s.last_scheduled for s in stats],
            "last_snapshot": [s.last_snapshot for s in stats],
            "next_visit_queue_position": [
                _int("origin_visit_stats.next_visit_queue_position", s.next_visit_queue_position)
                for s in stats
            ],
            "next_position_offset": [s.next_position_offset for s in stats],
            "successive_visits": [s.successive_visits for s in stats],
        }
        for name in ("next_position_offset", "successive_visits"):
            for v in params[name]:
                if not -(2**31) <= v < 2**31:
                    raise ValueError(f"origin_visit_stats.{name}: {v} does not fit in 32 bits")
        self._run(Q_VISIT_STATS_UPSERT, params)
        return None

    def origin_visit_stats_get(self, ids: Iterable[tuple[str, str]]) -> list[OriginVisitStats]:
        if ids is None or isinstance(ids, str | bytes):
            raise TypeError("ids: must be a list of (url, visit_type) pairs")
        pairs = []
        for i, pair in enumerate(ids):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"ids[{i}]: must be a (url, visit_type) pair")
            pairs.append(
                (
                    _text(f"ids[{i}].url", pair[0], False),
                    _text(f"ids[{i}].visit_type", pair[1], False),
                )
            )
        if not pairs:
            return []
        params = {"urls": [p[0] for p in pairs], "visit_types": [p[1] for p in pairs]}
        return [_visit_stats(r) for r in self._run(Q_VISIT_STATS_GET, params)]

    def visit_scheduler_queue_position_get(self) -> dict[str, int]:
        return {r["visit_type"]: r["queue_position"] for r in self._run(Q_QUEUE_POSITION_GET, {})}

    def visit_scheduler_queue_position_set(self, visit_type: str, position: int) -> None:
        params = {
            "visit_type": _text("visit_type", visit_type, optional=False),
            "position": _int("position", position, optional=False),
        }
        self._run(Q_QUEUE_POSITION_SET, params)

    # --- metrics ----------------------------------------------------------
    def update_metrics(self, lister_id=None, timestamp=None) -> list[SchedulerMetrics]:
        params = {
            "lister_id": _uuid("lister_id", lister_id),
            "timestamp": _datetime("timestamp", timestamp),
        }
        return [_metrics(r) for r in self._run(Q_UPDATE_METRICS, params)]

    def get_metrics(self, lister_id=None, visit_type: str | None = None) -> list[SchedulerMetrics]:
        params = {
            "lister_id": _uuid("lister_id", lister_id),
            "visit_type": _text("visit_type", visit_type),
        }
        return [_metrics(r) for r in self._run(Q_GET_METRICS, params)]


def _translate(e: psycopg.Error) -> Exception:
    """A database error as the exception a caller of the interface expects."""
    state = e.sqlstate or ""
    message = e.diag.message_primary or str(e)
    if state == "PGS01":
        return exc.StaleData(message)
    if state == "PGS02":
        return exc.UnknownPolicy(message)
    # Lost or refused connections, server shutting down or starting up.
    if not state or state.startswith(("08", "57P")) or state == "53300":
        if isinstance(e, psycopg.OperationalError):
            return exc.DatabaseUnavailable(message)
    # Data exceptions, constraint violations, limits exceeded (a value too
    # large for an index entry, JSON nested too deeply): the caller's input.
    if state.startswith(("22", "23", "54")):
        return ValueError(message)
    return e
