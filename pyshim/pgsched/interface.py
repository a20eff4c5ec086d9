"""The scheduler interface: every method, its signature, and its RPC path.

Both backends (``pgsched.backend.PostgresScheduler`` in process and
``pgsched.client.RemoteScheduler`` over HTTP) implement exactly these methods.
The server exposes each one at ``POST /<path>``.  Behaviour is specified in
the README and enforced by the SQL functions of the ``scheduler`` schema.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, Literal
from uuid import UUID

from .model import (
    ListedOrigin,
    Lister,
    OriginVisitStats,
    PaginatedListedOriginList,
    SchedulerMetrics,
    Task,
    TaskRun,
    TaskType,
)

DEFAULT_ABSOLUTE_COOLDOWN = datetime.timedelta(hours=12)
DEFAULT_SCHEDULED_COOLDOWN = datetime.timedelta(days=7)
DEFAULT_FAILED_COOLDOWN = datetime.timedelta(days=14)
DEFAULT_NOT_FOUND_COOLDOWN = datetime.timedelta(days=31)

TaskStatus = Literal["next_run_not_scheduled", "next_run_scheduled", "completed", "disabled"]
TaskPolicy = Literal["recurring", "oneshot"]
TaskPriority = Literal["high", "normal", "low"]
TaskRunStatus = Literal[
    "scheduled", "started", "eventful", "uneventful", "failed", "permfailed", "lost"
]


def endpoint(path: str):
    """Record the RPC path of an interface method."""

    def mark(fn):
        fn._endpoint_path = path
        return fn

    return mark


class SchedulerInterface:
    """The methods every pgsched backend offers."""

    # --- task types -------------------------------------------------------
    @endpoint("task_type/create")
    def create_task_type(self, task_type: TaskType) -> None:
        """Store a task type; creating an existing one again changes nothing."""
        raise NotImplementedError

    @endpoint("task_type/get")
    def get_task_type(self, task_type_name: str) -> TaskType | None:
        """The task type of that name, or None."""
        raise NotImplementedError

    @endpoint("task_type/get_all")
    def get_task_types(self) -> list[TaskType]:
        """Every registered task type."""
        raise NotImplementedError

    # --- tasks ------------------------------------------------------------
    @endpoint("task/create")
    def create_tasks(self, tasks: list[Task], policy: TaskPolicy = "recurring") -> list[Task]:
        """Insert tasks (idempotent); returns the stored tasks with their ids."""
        raise NotImplementedError

    @endpoint("task/set_status")
    def set_status_tasks(
        self,
        task_ids: list[int],
        status: TaskStatus = "disabled",
        next_run: datetime.datetime | None = None,
    ) -> None:
        """Set the status (and next_run, when given) of those tasks."""
        raise NotImplementedError

    @endpoint("task/disable")
    def disable_tasks(self, task_ids: list[int]) -> None:
        """Disable those tasks."""
        raise NotImplementedError

    @endpoint("task/search")
    def search_tasks(
        self,
        task_id: int | None = None,
        task_type: str | None = None,
        status: TaskStatus | None = None,
        priority: TaskPriority | None = None,
        policy: TaskPolicy | None = None,
        before: datetime.datetime | None = None,
        after: datetime.datetime | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        """Tasks matching every given filter (a value or a list of values)."""
        raise NotImplementedError

    @endpoint("task/get")
    def get_tasks(self, task_ids: list[int]) -> list[Task]:
        """Those tasks; unknown ids are skipped."""
        raise NotImplementedError

    @endpoint("task/peek_ready")
    def peek_ready_tasks(
        self,
        task_type: str,
        timestamp: datetime.datetime | None = None,
        num_tasks: int | None = None,
    ) -> list[Task]:
        """Ready tasks without priority, oldest next_run first (read only)."""
        raise NotImplementedError

    @endpoint("task/grab_ready")
    def grab_ready_tasks(
        self,
        task_type: str,
        timestamp: datetime.datetime | None = None,
        num_tasks: int | None = None,
    ) -> list[Task]:
        """Claim ready tasks without priority: they become next_run_scheduled."""
        raise NotImplementedError

    @endpoint("task/peek_ready_with_priority")
    def peek_ready_priority_tasks(
        self,
        task_type: str,
        timestamp: datetime.datetime | None = None,
        num_tasks: int | None = None,
    ) -> list[Task]:
        """Ready tasks with a priority, highest priority then oldest first (read only)."""
        raise NotImplementedError

    @endpoint("task/grab_ready_with_priority")
    def grab_ready_priority_tasks(
        self,
        task_type: str,
        timestamp: datetime.datetime | None = None,
        num_tasks: int | None = None,
    ) -> list[Task]:
        """Claim ready tasks with a priority."""
        raise NotImplementedError

    # --- task runs --------------------------------------------------------
    @endpoint("task_run/schedule_one")
    def schedule_task_run(
        self,
        task_id: int,
        backend_id: str,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> TaskRun:
        """Record a new run of a task, status scheduled."""
        raise NotImplementedError

    @endpoint("task_run/schedule")
    def mass_schedule_task_runs(self, task_runs: list[TaskRun]) -> None:
        """Record many scheduled runs in one batch."""
        raise NotImplementedError

    @endpoint("task_run/start")
    def start_task_run(
        self,
        backend_id: str,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> TaskRun | None:
        """Mark the run with that backend id started; None when there is none."""
        raise NotImplementedError

    @endpoint("task_run/end")
    def end_task_run(
        self,
        backend_id: str,
        status: TaskRunStatus,
        metadata: dict[str, Any] | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> TaskRun | None:
        """End the run with that backend id and reschedule its task."""
        raise NotImplementedError

    @endpoint("task_run/get")
    def get_task_runs(self, task_ids: list[int], limit: int | None = None) -> list[TaskRun]:
        """Runs of those tasks."""
        raise NotImplementedError

    @endpoint("task/filter_for_archive")
    def filter_task_to_archive(
        self,
        after_ts: str,
        before_ts: str,
        limit: int = 10,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """Runs of finished tasks in [after_ts, before_ts), one page at a time."""
        raise NotImplementedError

    @endpoint("task/delete_archived")
    def delete_archived_tasks(self, task_ids: list[dict[str, int]]) -> None:
        """Delete exactly those (task_id, task_run_id) runs, then tasks left with none."""
        raise NotImplementedError

    # --- listers ----------------------------------------------------------
    @endpoint("listers/get")
    def get_listers(self, with_first_visits_to_schedule: bool = False) -> list[Lister]:
        """All listers, or those whose first visits are still to schedule."""
        raise NotImplementedError

    @endpoint("listers/get_by_id")
    def get_listers_by_id(self, lister_ids: list[str]) -> list[Lister]:
        """Listers by UUID (strings or UUIDs)."""
        raise NotImplementedError

    @endpoint("lister/get")
    def get_lister(self, name: str, instance_name: str | None = None) -> Lister | None:
        """The lister of that name and instance, or None."""
        raise NotImplementedError

    @endpoint("lister/get_or_create")
    def get_or_create_lister(
        self,
        name: str,
        instance_name: str | None = None,
        first_visits_queue_prefix: str | None = None,
    ) -> Lister:
        """The lister of that name and instance, created if absent."""
        raise NotImplementedError

    @endpoint("lister/update")
    def update_lister(self, lister: Lister) -> Lister:
        """Write the lister if its stored ``updated`` is unchanged, else StaleData."""
        raise NotImplementedError

    @endpoint("lister/visit_types")
    def get_visit_types_for_listed_origins(self, lister: Lister) -> list[str]:
        """Distinct visit types of the origins this lister listed."""
        raise NotImplementedError

    # --- listed origins ---------------------------------------------------
    @endpoint("origins/record")
    def record_listed_origins(self, listed_origins: Iterable[ListedOrigin]) -> list[ListedOrigin]:
        """Upsert listed origins; returns the stored rows."""
        raise NotImplementedError

    @endpoint("origins/get")
    def get_listed_origins(
        self,
        lister_id: UUID | None = None,
        url: str | None = None,
        urls: list[str] | None = None,
        enabled: bool | None = True,
        limit: int = 1000,
        page_token: tuple[str, str] | None = None,
    ) -> PaginatedListedOriginList:
        """A page of listed origins, ordered by lister then url then visit type."""
        raise NotImplementedError

    @endpoint("origins/grab_next")
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
        """Choose and claim the next origins to visit under a policy."""
        raise NotImplementedError

    # --- visit statistics -------------------------------------------------
    @endpoint("visit_stats/upsert")
    def origin_visit_stats_upsert(self, origin_visit_stats: Iterable[OriginVisitStats]) -> None:
        """Upsert visit statistics; None fields keep the stored value."""
        raise NotImplementedError

    @endpoint("visit_stats/get")
    def origin_visit_stats_get(self, ids: Iterable[tuple[str, str]]) -> list[OriginVisitStats]:
        """Visit statistics of those (url, visit_type) pairs; unknown ones left out."""
        raise NotImplementedError

    @endpoint("visit_scheduler/get")
    def visit_scheduler_queue_position_get(self) -> dict[str, int]:
        """The queue position of every visit type."""
        raise NotImplementedError

    @endpoint("visit_scheduler/set")
    def visit_scheduler_queue_position_set(self, visit_type: str, position: int) -> None:
        """Set the queue position of a visit type."""
        raise NotImplementedError

    # --- metrics ----------------------------------------------------------
    @endpoint("scheduler_metrics/update")
    def update_metrics(
        self,
        lister_id: UUID | None = None,
        timestamp: datetime.datetime | None = None,
    ) -> list[SchedulerMetrics]:
        """Recompute and store the metrics (of one lister, or all)."""
        raise NotImplementedError

    @endpoint("scheduler_metrics/get")
    def get_metrics(
        self,
        lister_id: UUID | None = None,
        visit_type: str | None = None,
    ) -> list[SchedulerMetrics]:
        """Stored metrics, filtered."""
        raise NotImplementedError


def interface_methods() -> dict[str, Any]:
    """Name -> function of every interface method, in declaration order."""
    return {
        name: fn
        for name, fn in vars(SchedulerInterface).items()
        if callable(fn) and hasattr(fn, "_endpoint_path")
    }
