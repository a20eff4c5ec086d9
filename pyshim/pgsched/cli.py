"""The ``pgsched`` command line.

Every command that touches the database takes ``--db DSN`` (a libpq
connection string), defaulting to ``$PGSCHED_DB``.  Commands print plain
text on stdout; progress and per-line import errors go to stderr.  Bad
arguments exit with status 2 and a message naming the option; an import
that skipped lines exits with status 1.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from . import exc

DB_HELP = "libpq connection string of the scheduler database [env: PGSCHED_DB]"

VISIT_POLICIES = (
    "oldest_scheduled_first",
    "never_visited_oldest_update_first",
    "already_visited_order_by_lag",
    "origins_without_last_update",
    "first_visits_after_listing",
)
TASK_STATUSES = ("next_run_not_scheduled", "next_run_scheduled", "completed", "disabled")


# --------------------------------------------------------------------------
# Parameter types
# --------------------------------------------------------------------------


class Timestamp(click.ParamType):
    """ISO 8601 with a UTC offset (``2026-12-04T10:00:00+00:00``, ``...Z``), a date
    alone (midnight UTC), or ``now``."""

    name = "TIMESTAMP"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime.datetime):
            return value
        text = value.strip()
        if text == "now":
            return datetime.datetime.now(datetime.UTC)
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 timestamp", param, ctx)
        if parsed.tzinfo is None:
            if len(text) == 10:
                return parsed.replace(tzinfo=datetime.UTC)
            self.fail(f"{value!r} has no UTC offset (add +00:00 or Z)", param, ctx)
        return parsed


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class Duration(click.ParamType):
    """``1d``, ``12h``, ``1d12h``, ``90m``, ``30s``, ``2w``, or a number of seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime.timedelta):
            return value
        text = value.strip().lower().replace(" ", "")
        try:
            return datetime.timedelta(seconds=float(text))
        except ValueError:
            pass
        pos, total = 0, datetime.timedelta()
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            total += datetime.timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
            pos = m.end()
        if pos != len(text) or not text:
            self.fail(f"{value!r} is not a duration (e.g. 1d, 12h, 1d12h, 90m, 3600)", param, ctx)
        return total


TIMESTAMP = Timestamp()
DURATION = Duration()


def db_option(fn):
    return click.option(
        "--db",
        "db",
        envvar="PGSCHED_DB",
        required=True,
        metavar="DSN",
        help=DB_HELP,
    )(fn)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@contextlib.contextmanager
def open_scheduler(db: str) -> Iterator[Any]:
    """The postgresql backend on ``db``; scheduler errors become clean CLI errors."""
    from . import get_scheduler

    scheduler = get_scheduler("postgresql", db=db, min_size=1, max_size=2, timeout=10.0)
    try:
        yield scheduler
    except (ValueError, TypeError, exc.SchedulerException, exc.DatabaseUnavailable) as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
    finally:
        scheduler.close()


def fmt(value: Any) -> str:
    """A value as a table cell."""
    if value is None:
        return "-"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime.timedelta):
        return fmt_duration(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        return str(value.value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def fmt_duration(value: datetime.timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out=None) -> None:
    """Print rows under headers, columns aligned (numbers to the right)."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))
    ]

    def line(values):
        return "  ".join(
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ).rstrip()

    echo = (lambda s: click.echo(s, file=out)) if out else click.echo
    echo(line(headers))
    echo(line(["-" * w for w in widths]))
    for row in cells:
        echo(line(row))


def lister_names(scheduler) -> dict:
    """{lister id: "name" or "name/instance"}."""
    return {
        lister.id: lister.name + (f"/{lister.instance_name}" if lister.instance_name else "")
        for lister in scheduler.get_listers()
    }


def metrics_table(scheduler, metrics, out=None) -> None:
    names = lister_names(scheduler)
    rows = [
        (
            names.get(m.lister_id, str(m.lister_id)),
            m.visit_type,
            m.origins_known,
            m.origins_enabled,
            m.origins_never_visited,
            m.origins_with_pending_changes,
            m.last_update,
        )
        for m in sorted(metrics, key=lambda m: (names.get(m.lister_id, ""), m.visit_type))
    ]
    table(
        ("lister", "visit type", "known", "enabled", "never visited", "pending changes", "as of"),
        rows,
        out=out,
    )


def task_table(tasks, out=None) -> None:
    rows = [
        (
            t.id,
            t.type,
            t.policy,
            t.status,
            t.priority,
            t.next_run,
            t.current_interval,
            t.retries_left,
            json.dumps({"args": list(t.arguments.args), "kwargs": t.arguments.kwargs}),
        )
        for t in tasks
    ]
    table(
        (
            "id",
            "type",
            "policy",
            "status",
            "priority",
            "next run",
            "interval",
            "retries",
            "arguments",
        ),
        rows,
        out=out,
    )


def run_import(
    scheduler,
    file: str,
    name: str,
    visit_type: str,
    instance: str | None = None,
    batch_size: int | None = None,
    finished_at: datetime.datetime | None = None,
):
    """``pgsched lister import``: progress bar and errors on stderr, summary on stdout."""
    import os

    from .listing import DEFAULT_BATCH_SIZE, import_listing

    def on_error(error):
        click.echo(f"{file}:{error.line}: {error.message}", err=True)

    label = f"{name}: {os.path.basename(file)}"
    with click.progressbar(
        length=os.path.getsize(file),
        label=label,
        file=sys.stderr,
        show_percent=True,
        show_eta=True,
        width=30,
    ) as bar:
        result = import_listing(
            scheduler,
            file,
            lister_name=name,
            visit_type=visit_type,
            instance_name=instance,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            finished_at=finished_at,
            progress=bar.update,
            on_error=on_error,
        )
    click.echo(
        f"{name}: {result.loaded:,} origins loaded ({result.format} format, visit type "
        f"{visit_type}) from {result.lines:,} lines of {file} in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s, {result.batches} batches)"
        + (f"; {len(result.errors)} lines skipped" if result.errors else "")
    )
    return result


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pgsched")
def main() -> None:
    """pgsched: a SQL-first scheduler for large archive crawlers.

    Every command that uses the database takes --db DSN (or $PGSCHED_DB).
    """


# --- db -----------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema migrations."""


@db.command("migrate")
@db_option
def db_migrate(db: str) -> None:
    """Apply pending migrations, then (re)install the SQL functions."""
    from .migrate import MigrationError, migrate

    try:
        applied = migrate(db)
    except MigrationError as e:
        raise click.ClickException(str(e)) from e
    except Exception as e:  # psycopg errors: connection refused, no such database
        raise click.ClickException(f"cannot migrate: {e}") from e
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("schema up to date")
    click.echo("functions installed")


@db.command("status")
@db_option
def db_status(db: str) -> None:
    """Show every migration and whether it is applied."""
    from .migrate import status

    try:
        rows = status(db)
    except Exception as e:
        raise click.ClickException(f"cannot read migrations: {e}") from e
    table(("migration", "state"), rows)
    pending = sum(1 for _, state in rows if state != "applied")
    click.echo(f"{pending} pending" if pending else "all applied")


# --- listers ----------------------------------------------------------------


@main.group()
def lister() -> None:
    """Listers and their listings."""


@lister.command("import")
@click.option("--name", required=True, help="lister name (created if absent)")
@click.option("--instance", default=None, help="lister instance name [default: '']")
@click.option("--visit-type", required=True, help="visit type of the origins (e.g. pypi, npm)")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100000),
    default=None,
    help="origins per record_listed_origins call [default: 2000]",
)
@click.option(
    "--finished-at",
    type=TIMESTAMP,
    default=None,
    help="the lister's last_listing_finished_at after the import [default: now]",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option
def lister_import(db, name, instance, visit_type, batch_size, finished_at, file) -> None:
    """Load a listing FILE (TSV with a header; gzipped or not) as the origins of a lister.

    \b
    Formats, detected by the header:
      name latest_version last_release_month  PyPI: https://pypi.org/project/NAME/,
                                              last_update = first day of the month (UTC)
      name latest_version monthly_downloads   npm: https://www.npmjs.com/package/NAME

    Re-importing updates the stored origins, never duplicates them. Lines that
    cannot be read are reported with their line number and skipped.
    """
    from .listing import ListingError

    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    if not visit_type.strip():
        raise click.BadParameter("must not be empty", param_hint="--visit-type")
    with open_scheduler(db) as scheduler:
        try:
            result = run_import(
                scheduler, file, name, visit_type, instance, batch_size, finished_at
            )
        except ListingError as e:
            raise click.ClickException(str(e)) from e
    if result.errors:
        sys.exit(1)


@lister.command("list")
@db_option
def lister_list(db) -> None:
    """Show every lister."""
    with open_scheduler(db) as scheduler:
        listers = scheduler.get_listers()
        rows = []
        for lst in listers:
            rows.append(
                (
                    lst.name,
                    lst.instance_name or "-",
                    str(lst.id),
                    ",".join(scheduler.get_visit_types_for_listed_origins(lst)) or "-",
                    lst.last_listing_finished_at,
                    lst.updated,
                )
            )
    table(("name", "instance", "id", "visit types", "listing finished", "updated"), rows)


# --- visits -------------------------------------------------------------------


@main.group()
def visits() -> None:
    """Choosing origins to visit, and recording what visits found."""


@visits.command("grab")
@click.option("--visit-type", required=True)
@click.option("--policy", required=True, type=click.Choice(VISIT_POLICIES))
@click.option("--count", required=True, type=click.IntRange(min=0))
@click.option("--lister", "lister_name", default=None, help="only origins of this lister")
@click.option("--instance", default=None, help="the lister's instance name")
@click.option("--timestamp", type=TIMESTAMP, default=None, help="the time of the grab [now]")
@click.option(
    "--no-cooldowns", is_flag=True, help="ignore the absolute/scheduled/failed/not_found cooldowns"
)
@click.option("--long", "long_", is_flag=True, help="print a table, not just the urls")
@db_option
def visits_grab(
    db, visit_type, policy, count, lister_name, instance, timestamp, no_cooldowns, long_
) -> None:
    """Choose and claim the next COUNT origins to visit under a POLICY; print them.

    Their last_scheduled becomes the timestamp, so the same origins are not
    handed out again before the cooldowns pass.
    """
    if policy == "first_visits_after_listing" and not lister_name:
        raise click.BadParameter(
            "the first_visits_after_listing policy needs a lister", param_hint="--lister"
        )
    kwargs = {}
    if no_cooldowns:
        kwargs = dict.fromkeys(
            ("absolute_cooldown", "scheduled_cooldown", "failed_cooldown", "not_found_cooldown")
        )
    with open_scheduler(db) as scheduler:
        origins = scheduler.grab_next_visits(
            visit_type=visit_type,
            count=count,
            policy=policy,
            lister_name=lister_name,
            lister_instance_name=instance,
            timestamp=timestamp,
            **kwargs,
        )
        if long_:
            names = lister_names(scheduler)
            table(
                ("url", "lister", "last update", "first seen"),
                [(o.url, names.get(o.lister_id), o.last_update, o.first_seen) for o in origins],
            )
        else:
            for o in origins:
                click.echo(o.url)
    click.echo(f"{len(origins)} origin(s) grabbed ({policy})", err=True)


@visits.command("record")
@click.option("--visit-type", required=True)
@click.option("--status", required=True, type=click.Choice(("successful", "failed", "not_found")))
@click.option(
    "--snapshot", default=None, help="hex of the 20-byte snapshot found (required if successful)"
)
@click.option("--date", "visit_date", type=TIMESTAMP, default=None, help="visit date [now]")
@click.argument("urls", nargs=-1, required=True)
@db_option
def visits_record(db, visit_type, status, snapshot, visit_date, urls) -> None:
    """Record the outcome of a visit of each URL.

    The database works out the new visit statistics: last visit and status,
    last successful visit and snapshot, and when to visit again (the queue
    position offset falls after a new snapshot and rises otherwise).
    """
    from .visit_results import VisitResult, record_visit_results

    if snapshot is not None:
        try:
            raw = bytes.fromhex(snapshot)
        except ValueError:
            raise click.BadParameter(
                f"{snapshot!r} is not hexadecimal", param_hint="--snapshot"
            ) from None
        if len(raw) != 20:
            raise click.BadParameter(
                f"must be 20 bytes (40 hex digits), got {len(raw)}", param_hint="--snapshot"
            )
    elif status == "successful":
        raise click.BadParameter(
            "a successful visit needs the snapshot it found", param_hint="--snapshot"
        )
    with open_scheduler(db) as scheduler:
        stats = record_visit_results(
            scheduler,
            [VisitResult(u, visit_type, status, visit_date, snapshot) for u in urls],
        )
    table(
        (
            "url",
            "status",
            "last visit",
            "last successful",
            "offset",
            "successive",
            "next queue position",
        ),
        [
            (
                s.url,
                s.last_visit_status,
                s.last_visit,
                s.last_successful,
                s.next_position_offset,
                s.successive_visits,
                s.next_visit_queue_position,
            )
            for s in stats
        ],
    )


@visits.command("stats")
@click.option("--visit-type", required=True)
@click.argument("urls", nargs=-1, required=True)
@db_option
def visits_stats(db, visit_type, urls) -> None:
    """Show the visit statistics of each URL."""
    with open_scheduler(db) as scheduler:
        stats = scheduler.origin_visit_stats_get([(u, visit_type) for u in urls])
        positions = scheduler.visit_scheduler_queue_position_get()
    table(
        ("url", "status", "last scheduled", "last visit", "snapshot", "offset", "next position"),
        [
            (
                s.url,
                s.last_visit_status,
                s.last_scheduled,
                s.last_visit,
                s.last_snapshot.hex()[:12] if s.last_snapshot else None,
                s.next_position_offset,
                s.next_visit_queue_position,
            )
            for s in stats
        ],
    )
    click.echo(f"queue position of {visit_type}: {positions.get(visit_type, '-')}")


# --- metrics ----------------------------------------------------------------


def _lister_id(scheduler, name: str | None, instance: str | None):
    if name is None:
        return None
    found = scheduler.get_lister(name, instance)
    if found is None:
        raise click.BadParameter(f"no lister named {name!r}", param_hint="--lister")
    return found.id


@main.group()
def metrics() -> None:
    """Counts of origins per lister and visit type."""


@metrics.command("update")
@click.option("--lister", "lister_name", default=None, help="only this lister [all]")
@click.option("--instance", default=None)
@click.option("--timestamp", type=TIMESTAMP, default=None, help="as-of time [now]")
@db_option
def metrics_update(db, lister_name, instance, timestamp) -> None:
    """Recount the origins and store the metrics; print them."""
    with open_scheduler(db) as scheduler:
        rows = scheduler.update_metrics(
            lister_id=_lister_id(scheduler, lister_name, instance), timestamp=timestamp
        )
        metrics_table(scheduler, rows)


@metrics.command("show")
@click.option("--lister", "lister_name", default=None, help="only this lister [all]")
@click.option("--instance", default=None)
@click.option("--visit-type", default=None)
@db_option
def metrics_show(db, lister_name, instance, visit_type) -> None:
    """Print the stored metrics (as of their last update)."""
    with open_scheduler(db) as scheduler:
        rows = scheduler.get_metrics(
            lister_id=_lister_id(scheduler, lister_name, instance), visit_type=visit_type
        )
        metrics_table(scheduler, rows)
    if not rows:
        click.echo("no metrics yet: run `pgsched metrics update`", err=True)


# --- task types and tasks -----------------------------------------------------


@main.group("task-type")
def task_type() -> None:
    """Task types."""


@task_type.command("add")
@click.argument("type_name", metavar="TYPE")
@click.option("--description", default="", help="free text")
@click.option("--backend-name", default=None, help="name of the worker task [TYPE]")
@click.option("--default-interval", type=DURATION, default=None, help="e.g. 1d")
@click.option("--min-interval", type=DURATION, default=None, help="e.g. 12h")
@click.option("--max-interval", type=DURATION, default=None, help="e.g. 7d")
@click.option("--backoff-factor", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--max-queue-length", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--num-retries", type=click.IntRange(min=0), default=None)
@click.option("--retry-delay", type=DURATION, default=None, help="e.g. 1h")
@db_option
def task_type_add(
    db,
    type_name,
    description,
    backend_name,
    default_interval,
    min_interval,
    max_interval,
    backoff_factor,
    max_queue_length,
    num_retries,
    retry_delay,
) -> None:
    """Create a task type (an existing one is left as it is)."""
    from .model import TaskType

    if not type_name.strip():
        raise click.BadParameter("must not be empty", param_hint="TYPE")
    with open_scheduler(db) as scheduler:
        scheduler.create_task_type(
            TaskType(
                type=type_name,
                description=description,
                backend_name=backend_name or type_name,
                default_interval=default_interval,
                min_interval=min_interval,
                max_interval=max_interval,
                backoff_factor=backoff_factor,
                max_queue_length=max_queue_length,
                num_retries=num_retries,
                retry_delay=retry_delay,
            )
        )
        stored = scheduler.get_task_type(type_name)
    _task_type_table([stored])


def _task_type_table(types) -> None:
    table(
        ("type", "default", "min", "max", "backoff", "retries", "retry delay", "description"),
        [
            (
                t.type,
                t.default_interval,
                t.min_interval,
                t.max_interval,
                t.backoff_factor,
                t.num_retries,
                t.retry_delay,
                t.description,
            )
            for t in types
        ],
    )


@task_type.command("list")
@db_option
def task_type_list(db) -> None:
    """Show every task type."""
    with open_scheduler(db) as scheduler:
        _task_type_table(scheduler.get_task_types())


@main.group()
def task() -> None:
    """Tasks."""


def _task_arguments(values: Sequence[str]) -> tuple[list, dict]:
    """ARGS: ``key=value`` goes to kwargs, anything else to args; values that
    read as JSON (numbers, true, [..], {..}, "..") are taken as such."""

    def value(text: str):
        try:
            return json.loads(text)
        except ValueError:
            return text

    args, kwargs = [], {}
    for item in values:
        key, sep, rest = item.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = value(rest)
        else:
            args.append(value(item))
    return args, kwargs


@task.command("add")
@click.argument("type_name", metavar="TYPE")
@click.argument("arguments", nargs=-1, metavar="[ARG|KEY=VALUE]...")
@click.option("--policy", type=click.Choice(("recurring", "oneshot")), default="recurring")
@click.option("--next-run", type=TIMESTAMP, default="now", show_default=True)
@click.option("--priority", type=click.Choice(("high", "normal", "low")), default=None)
@click.option("--retries", "retries_left", type=click.IntRange(min=0), default=None)
@db_option
def task_add(db, type_name, arguments, policy, next_run, priority, retries_left) -> None:
    """Create a task of TYPE (adding the same task twice stores it once)."""
    from .model import Task, TaskArguments

    args, kwargs = _task_arguments(arguments)
    with open_scheduler(db) as scheduler:
        tasks = scheduler.create_tasks(
            [
                Task(
                    type=type_name,
                    arguments=TaskArguments(args=args, kwargs=kwargs),
                    next_run=next_run,
                    policy=policy,
                    priority=priority,
                    retries_left=retries_left,
                )
            ]
        )
    task_table(tasks)


@task.command("list")
@click.option("--type", "task_type_name", default=None)
@click.option("--status", type=click.Choice(TASK_STATUSES), multiple=True)
@click.option("--policy", type=click.Choice(("recurring", "oneshot")), default=None)
@click.option("--before", type=TIMESTAMP, default=None, help="next_run at or before")
@click.option("--after", type=TIMESTAMP, default=None, help="next_run at or after")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@db_option
def task_list(db, task_type_name, status, policy, before, after, limit) -> None:
    """Show tasks (every filter optional)."""
    with open_scheduler(db) as scheduler:
        tasks = scheduler.search_tasks(
            task_type=task_type_name,
            status=list(status) or None,
            policy=policy,
            before=before,
            after=after,
            limit=limit,
        )
    task_table(tasks)


@task.command("grab")
@click.argument("type_name", metavar="TYPE")
@click.option("--count", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--timestamp", type=TIMESTAMP, default=None, help="ready at [now]")
@click.option("--priority", "with_priority", is_flag=True, help="grab tasks that have a priority")
@db_option
def task_grab(db, type_name, count, timestamp, with_priority) -> None:
    """Claim the ready tasks of TYPE (they become next_run_scheduled) and print them."""
    with open_scheduler(db) as scheduler:
        grab = scheduler.grab_ready_priority_tasks if with_priority else scheduler.grab_ready_tasks
        tasks = grab(type_name, timestamp=timestamp, num_tasks=count)
    task_table(tasks)
    click.echo(f"{len(tasks)} task(s) grabbed", err=True)


@task.command("runs")
@click.argument("task_ids", nargs=-1, type=int, required=True)
@click.option("--limit", type=click.IntRange(min=1), default=None)
@db_option
def task_runs(db, task_ids, limit) -> None:
    """Show the runs of tasks."""
    with open_scheduler(db) as scheduler:
        runs = scheduler.get_task_runs(list(task_ids), limit=limit)
    table(
        ("run", "task", "backend id", "status", "scheduled", "started", "ended"),
        [(r.id, r.task, r.backend_id, r.status, r.scheduled, r.started, r.ended) for r in runs],
    )


# --- demo ---------------------------------------------------------------------


@main.command()
@click.option("--pypi", "pypi_file", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--npm", "npm_file", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--days", type=click.IntRange(min=1, max=60), default=5, show_default=True)
@click.option("--seed", type=int, default=None, help="seed of the simulated world")
@db_option
def demo(db, pypi_file, npm_file, days, seed) -> None:
    """The `make run` scenario: import two listings, simulate DAYS of scheduling."""
    import os
    import shutil

    from .demo import SEED, run_demo

    me = sys.argv[0] if os.path.basename(sys.argv[0]) == "pgsched" else "pgsched"
    if os.path.isabs(me) and me.startswith(os.getcwd() + os.sep):
        me = os.path.relpath(me)
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    try:
        ok = run_demo(
            db, pypi_file, npm_file, days, SEED if seed is None else seed, pgsched=me, psql=psql
        )
    except (ValueError, TypeError, exc.SchedulerException, exc.DatabaseUnavailable) as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
    if not ok:
        sys.exit(1)


# --- serve --------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(min=0, max=65535), default=5008, show_default=True)
@db_option
def serve(db, host, port) -> None:
    """Serve the RPC API (development server; use gunicorn in production)."""
    import logging

    from .api.server import serve as serve_api

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    click.echo(f"pgsched API on http://{host}:{port}/  (Ctrl-C to stop)", err=True)
    serve_api(host=host, port=port, db=db)


if __name__ == "__main__":
    main()
