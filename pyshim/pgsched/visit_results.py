"""Recording visit results: the shim of ``scheduler.record_visit_results``.

Not part of the scheduler interface (which only offers the raw
``origin_visit_stats_upsert``): a loader, or ``pgsched visits record``,
reports what a visit found, and the database works out the new visit
statistics, including when to come back (see sql/functions/80_visit_results.sql).
"""

from __future__ import annotations

from collections.abc import Iterable

import attr

from .backend import PostgresScheduler, _datetime, _text, _visit_stats
from .model import LastVisitStatus, OriginVisitStats, _visit_status

Q_RECORD_VISIT_RESULTS = """
SELECT * FROM scheduler.record_visit_results(
    urls => %(urls)b, visit_types => %(visit_types)b,
    statuses => %(statuses)b::text[]::scheduler.last_visit_status[],
    visit_dates => %(visit_dates)b, snapshots => %(snapshots)b)
"""


def _snapshot(value):
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"snapshot: not a hexadecimal hash: {value!r}") from None
    raise TypeError(f"snapshot: must be bytes or hexadecimal text, not {type(value).__name__}")


@attr.s(frozen=True, slots=True)
class VisitResult:
    """What one visit of an origin found.

    ``snapshot`` (a 20-byte hash, or its hexadecimal text) is required when
    the visit was successful; ``visit_date`` None means now.
    """

    url = attr.ib(type=str)
    visit_type = attr.ib(type=str)
    status = attr.ib(converter=_visit_status)
    visit_date = attr.ib(default=None)
    snapshot = attr.ib(default=None, converter=_snapshot)


def record_visit_results(
    scheduler: PostgresScheduler, results: Iterable[VisitResult]
) -> list[OriginVisitStats]:
    """Record visit results in one call; returns the new stats, one per origin."""
    if not isinstance(scheduler, PostgresScheduler):
        raise TypeError("scheduler: record_visit_results needs the postgresql backend")
    if results is None or isinstance(results, str | bytes | dict):
        raise TypeError("results: must be a list of VisitResult")
    results = list(results)
    for i, r in enumerate(results):
        if not isinstance(r, VisitResult):
            raise TypeError(f"results[{i}]: must be a VisitResult, not {type(r).__name__}")
        if r.status is None:
            raise ValueError(f"results[{i}].status: must be one of successful, failed, not_found")
    if not results:
        return []
    params = {
        "urls": [_text(f"results[{i}].url", r.url, False) for i, r in enumerate(results)],
        "visit_types": [
            _text(f"results[{i}].visit_type", r.visit_type, False) for i, r in enumerate(results)
        ],
        "statuses": [LastVisitStatus(r.status).value for r in results],
        "visit_dates": [
            _datetime(f"results[{i}].visit_date", r.visit_date) for i, r in enumerate(results)
        ],
        "snapshots": [r.snapshot for r in results],
    }
    return [_visit_stats(row) for row in scheduler._run(Q_RECORD_VISIT_RESULTS, params)]
