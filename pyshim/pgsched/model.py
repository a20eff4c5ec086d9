"""The scheduler's data model: plain attrs classes, equal when their fields are.

Field names and order follow the Software Heritage scheduler model, so that
models cross the RPC layer unchanged in both directions.  Every datetime
field must be timezone-aware: a naive one raises ``ValueError`` naming the
field, at construction time.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any
from uuid import UUID

import attr

TASK_STATUSES = ("next_run_not_scheduled", "next_run_scheduled", "completed", "disabled")
TASK_POLICIES = ("recurring", "oneshot")
TASK_PRIORITIES = ("high", "normal", "low")
TASK_RUN_STATUSES = (
    "scheduled",
    "started",
    "eventful",
    "uneventful",
    "failed",
    "permfailed",
    "lost",
)


def _aware(instance, attribute, value):
    """attrs validator: None, or a timezone-aware datetime."""
    if value is None:
        return
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"{attribute.name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{attribute.name} must be a timezone-aware datetime, got {value!r}")


def _one_of(choices, optional=False):
    def check(instance, attribute, value):
        if value is None and optional:
            return
        if value not in choices:
            raise ValueError(f"{attribute.name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def _opt(kind):
    return attr.validators.optional(attr.validators.instance_of(kind))


_timedelta = _opt(datetime.timedelta)


class BaseSchedulerModel:
    """Common helpers of every model."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; nested models stay models."""
        return attr.asdict(self, recurse=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**data)

    def evolve(self, **changes):
        return attr.evolve(self, **changes)


@attr.s(frozen=True, slots=True, auto_attribs=False)
class TaskType(BaseSchedulerModel):
    type = attr.ib(type=str, validator=attr.validators.instance_of(str))
    description = attr.ib(type=str, validator=attr.validators.instance_of(str))
    backend_name = attr.ib(type=str, validator=attr.validators.instance_of(str))
    default_interval = attr.ib(default=None, validator=_timedelta)
    min_interval = attr.ib(default=None, validator=_timedelta)
    max_interval = attr.ib(default=None, validator=_timedelta)
    backoff_factor = attr.ib(default=None, validator=_opt((float, int)))
    max_queue_length = attr.ib(default=1000, validator=_opt(int))
    num_retries = attr.ib(default=None, validator=_opt(int))
    retry_delay = attr.ib(default=None, validator=_timedelta)


def _argument_list(value):
    if not isinstance(value, list | tuple):
        raise TypeError(f"args must be a list, not {type(value).__name__}")
    return list(value)


@attr.s(frozen=True, slots=True)
class TaskArguments(BaseSchedulerModel):
    args = attr.ib(factory=list, converter=_argument_list)
    kwargs = attr.ib(factory=dict, validator=attr.validators.instance_of(dict))


@attr.s(frozen=True, slots=True)
class Task(BaseSchedulerModel):
    type = attr.ib(type=str, validator=attr.validators.instance_of(str))
    arguments = attr.ib(type=TaskArguments, validator=attr.validators.instance_of(TaskArguments))
    next_run = attr.ib(type=datetime.datetime, validator=_aware)
    status = attr.ib(default="next_run_not_scheduled", validator=_one_of(TASK_STATUSES))
    policy = attr.ib(default="recurring", validator=_one_of(TASK_POLICIES))
    retries_left = attr.ib(default=None, validator=_opt(int))
    id = attr.ib(default=None, validator=_opt(int))
    current_interval = attr.ib(default=None, validator=_timedelta)
    priority = attr.ib(default=None, validator=_one_of(TASK_PRIORITIES, optional=True))


@attr.s(frozen=True, slots=True)
class TaskRun(BaseSchedulerModel):
    task = attr.ib(validator=_opt(int))
    id = attr.ib(default=None, validator=_opt(int))
    backend_id = attr.ib(default=None, validator=_opt(str))
    scheduled = attr.ib(default=None, validator=_aware)
    started = attr.ib(default=None, validator=_aware)
    ended = attr.ib(default=None, validator=_aware)
    metadata = attr.ib(default=None, validator=_opt(dict))
    status = attr.ib(default="scheduled", validator=_one_of(TASK_RUN_STATUSES))


@attr.s(frozen=True, slots=True)
class Lister(BaseSchedulerModel):
    name = attr.ib(type=str, validator=attr.validators.instance_of(str))
    instance_name = attr.ib(type=str, validator=attr.validators.instance_of(str))
    id = attr.ib(default=None, validator=_opt(UUID))
    current_state = attr.ib(factory=dict, validator=attr.validators.instance_of(dict))
    created = attr.ib(default=None, validator=_aware)
    updated = attr.ib(default=None, validator=_aware)
    last_listing_finished_at = attr.ib(default=None, validator=_aware)
    first_visits_queue_prefix = attr.ib(default=None, validator=_opt(str))
    first_visits_scheduled_at = attr.ib(default=None, validator=_aware)


@attr.s(frozen=True, slots=True)
class ListedOrigin(BaseSchedulerModel):
    lister_id = attr.ib(type=UUID, validator=attr.validators.instance_of(UUID))
    url = attr.ib(type=str, validator=attr.validators.instance_of(str))
    visit_type = attr.ib(type=str, validator=attr.validators.instance_of(str))
    extra_loader_arguments = attr.ib(factory=dict, validator=attr.validators.instance_of(dict))
    last_update = attr.ib(default=None, validator=_aware)
    is_fork = attr.ib(default=None, validator=_opt(bool))
    forked_from_url = attr.ib(default=None, validator=_opt(str))
    enabled = attr.ib(default=True, validator=attr.validators.instance_of(bool))
    first_seen = attr.ib(default=None, validator=_aware)
    last_seen = attr.ib(default=None, validator=_aware)


class LastVisitStatus(enum.Enum):
    successful = "successful"
    failed = "failed"
    not_found = "not_found"


def _visit_status(value):
    if value is None or isinstance(value, LastVisitStatus):
        return value
    try:
        return LastVisitStatus(value)
    except ValueError:
        raise ValueError(
            f"last_visit_status must be one of successful, failed, not_found, got {value!r}"
        ) from None


@attr.s(frozen=True, slots=True)
class OriginVisitStats(BaseSchedulerModel):
    url = attr.ib(type=str, validator=attr.validators.instance_of(str))
    visit_type = attr.ib(type=str, validator=attr.validators.instance_of(str))
    last_successful = attr.ib(default=None, validator=_aware)
    last_visit = attr.ib(default=None, validator=_aware)
    last_visit_status = attr.ib(default=None, converter=_visit_status)
    last_scheduled = attr.ib(default=None, validator=_aware)
    last_snapshot = attr.ib(default=None, validator=_opt(bytes))
    next_visit_queue_position = attr.ib(default=None, validator=_opt(int))
    next_position_offset = attr.ib(default=4, validator=attr.validators.instance_of(int))
    successive_visits = attr.ib(default=1, validator=attr.validators.instance_of(int))


@attr.s(frozen=True, slots=True)
class SchedulerMetrics(BaseSchedulerModel):
    lister_id = attr.ib(type=UUID, validator=attr.validators.instance_of(UUID))
    visit_type = attr.ib(type=str, validator=attr.validators.instance_of(str))
    last_update = attr.ib(default=None, validator=_aware)
    origins_known = attr.ib(default=0, validator=attr.validators.instance_of(int))
    origins_enabled = attr.ib(default=0, validator=attr.validators.instance_of(int))
    origins_never_visited = attr.ib(default=0, validator=attr.validators.instance_of(int))
    origins_with_pending_changes = attr.ib(default=0, validator=attr.validators.instance_of(int))


@attr.s(frozen=True, slots=True)
class PaginatedListedOriginList:
    """One page of listed origins; ``next_page_token`` is None on the last page."""

    results = attr.ib(factory=list)
    next_page_token = attr.ib(default=None)


MODELS = {
    cls.__name__: cls
    for cls in (
        TaskType,
        TaskArguments,
        Task,
        TaskRun,
        Lister,
        ListedOrigin,
        OriginVisitStats,
        SchedulerMetrics,
    )
}
