"""The ``make run`` scenario: pgsched scheduling visits of real PyPI and npm listings.

What happens, on a simulated clock that moves one day at a time:

1. both listings are imported as two listers (``pgsched lister import``);
2. each day, visits are grabbed under the policies that fit each listing
   (npm has no last_update: ``origins_without_last_update``; PyPI: the
   others), a simulated loader visits them, and the outcomes are recorded
   with ``scheduler.record_visit_results``; metrics are updated and shown;
3. each day, the ready tasks of one recurring task type are grabbed, run,
   and ended eventful or uneventful, so that their intervals back off;
4. the metrics are checked against a direct count of the listed origins.

The simulated world (which visits succeed, which snapshots change, which
projects publish a release) is drawn from fixed seeds, so two runs print the
same story.  Every scheduling decision (what to visit, when to come back,
the task intervals) is taken by the database.

A second run continues the clock where the previous one stopped, on the same
origins: re-importing a listing updates it, it never duplicates it.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import random
import re

import click
import psycopg

from . import get_scheduler
from .cli import fmt, fmt_duration, metrics_table, run_import, table
from .model import ListedOrigin, Task, TaskArguments, TaskType
from .visit_results import VisitResult, record_visit_results

DAY = datetime.timedelta(days=1)
SEED = 20261204

# (visit type, policy, origins per day, restricted to the lister)
PLAN = (
    ("pypi", "first_visits_after_listing", 1000, True),
    ("pypi", "never_visited_oldest_update_first", 1500, False),
    ("pypi", "already_visited_order_by_lag", 400, False),
    ("pypi", "oldest_scheduled_first", 400, False),
    ("npm", "origins_without_last_update", 3000, False),
)

TASK_TYPE = TaskType(
    type="refresh-listing",
    description="Re-list one shard of a registry (pgsched demo)",
    backend_name="demo.refresh_listing",
    default_interval=datetime.timedelta(days=1),
    min_interval=datetime.timedelta(hours=12),
    max_interval=datetime.timedelta(days=16),
    backoff_factor=2.0,
    num_retries=1,
    retry_delay=datetime.timedelta(hours=2),
)
# Probability that a run of each shard finds something new: shard 0 changes
# nearly every day, shard 3 never; the intervals drift apart accordingly.
SHARD_EVENTFUL = (0.9, 0.5, 0.2, 0.0)

Q_LISTED_COUNTS = """
SELECT lo.lister_id, lo.visit_type, count(*) AS origins,
       count(DISTINCT lo.url) AS distinct_urls
FROM scheduler.listed_origins AS lo
GROUP BY lo.lister_id, lo.visit_type
ORDER BY lo.lister_id, lo.visit_type
"""


# --------------------------------------------------------------------------
# The simulated world
# --------------------------------------------------------------------------

SNAPSHOT_PERIODS = (1, 2, 3, 7, 30, 1_000_000)


def _digest(url: str) -> bytes:
    return hashlib.sha1(url.encode()).digest()


def world_snapshot(url: str, when: datetime.datetime) -> bytes:
    """The snapshot a loader would find at ``url`` on that day.

    Each origin changes every 1, 2, 3, 7 or 30 days, or never (by its hash).
    """
    h = _digest(url)
    period = SNAPSHOT_PERIODS[h[0] % len(SNAPSHOT_PERIODS)]
    day = int(when.timestamp() // 86400)
    return hashlib.sha1(f"{url}\0{(day + h[1]) // period}".encode()).digest()


def world_outcome(url: str, rng: random.Random) -> str:
    """successful, failed (10%), or not_found (about 2% of origins, always)."""
    if _digest(url)[2] < 5:
        return "not_found"
    return "failed" if rng.random() < 0.10 else "successful"


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def heading(text: str) -> None:
    click.echo()
    click.secho(text, bold=True)
    click.secho("=" * len(text), bold=True)


def subheading(text: str) -> None:
    click.echo()
    click.secho(text, bold=True)


def safe_dsn(dsn: str) -> str:
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def when(ts: datetime.datetime) -> str:
    return ts.astimezone(datetime.UTC).strftime("%a %Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------


def start_time(scheduler) -> tuple[datetime.datetime, bool]:
    """Now (to the hour), or the day after the previous run's last day."""
    now = datetime.datetime.now(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    previous = [m.last_update for m in scheduler.get_metrics() if m.last_update]
    if previous:
        after = max(previous) + datetime.timedelta(hours=6)
        if after > now:
            return after, True
    return now, False


def simulate_day(scheduler, day: int, t: datetime.datetime, listers, visited_ok, rng) -> None:
    """One day: new releases, grabs under every policy, visits, results."""
    pypi = listers["pypi"]
    # New releases on PyPI: some projects visited earlier publish a version;
    # the lister reports them with a newer last_update.
    if visited_ok:
        released = rng.sample(sorted(visited_ok), k=max(1, len(visited_ok) // 12))
        scheduler.record_listed_origins(
            [
                ListedOrigin(
                    lister_id=pypi.id,
                    url=url,
                    visit_type="pypi",
                    last_update=t - datetime.timedelta(hours=rng.randint(1, 20)),
                )
                for url in released
            ]
        )
        click.echo(
            f"{len(released)} PyPI projects visited earlier published a release today "
            "(re-listed with a newer last_update)."
        )

    subheading("Visits chosen by the scheduler")
    grabbed: dict[str, list[ListedOrigin]] = collections.defaultdict(list)
    rows = []
    for visit_type, policy, count, by_lister in PLAN:
        origins = scheduler.grab_next_visits(
            visit_type=visit_type,
            count=count,
            policy=policy,
            lister_name=visit_type if by_lister else None,
            timestamp=t,
        )
        grabbed[visit_type].extend(origins)
        rows.append(
            (
                visit_type,
                policy,
                count,
                len(origins),
                origins[0].url if origins else "-",
                fmt(origins[0].last_update) if origins else "-",
            )
        )
    table(("type", "policy", "asked", "got", "first chosen", "its last_update"), rows)
    if day == 0:
        click.echo(
            "(each row is one call, like `pgsched visits grab --visit-type pypi\n"
            " --policy never_visited_oldest_update_first --count 1500`; the cooldowns keep\n"
            " an origin from being handed out again before it is visited)"
        )

    subheading("Visits done by the (simulated) loaders, results recorded")
    rows = []
    for visit_type, origins in grabbed.items():
        results = []
        for origin in origins:
            status = world_outcome(origin.url, rng)
            visit_date = t + datetime.timedelta(minutes=rng.randint(5, 360))
            snapshot = world_snapshot(origin.url, t) if status == "successful" else None
            results.append(VisitResult(origin.url, visit_type, status, visit_date, snapshot))
        stats = []
        for i in range(0, len(results), 2000):
            stats.extend(record_visit_results(scheduler, results[i : i + 2000]))
        outcome = collections.Counter(r.status.value for r in results)
        eventful = sum(
            1
            for s in stats
            if s.last_visit_status.value == "successful" and s.successive_visits == 1
        )
        for s in stats:
            if visit_type == "pypi" and s.last_visit_status.value == "successful":
                visited_ok.add(s.url)
        offsets = collections.Counter(s.next_position_offset for s in stats)
        rows.append(
            (
                visit_type,
                len(results),
                outcome["successful"],
                eventful,
                outcome["successful"] - eventful,
                outcome["failed"],
                outcome["not_found"],
                " ".join(f"{k}:{v}" for k, v in sorted(offsets.items())),
            )
        )
    table(
        (
            "type",
            "visits",
            "successful",
            "new snapshot",
            "same snapshot",
            "failed",
            "not found",
            "queue offsets (offset:origins)",
        ),
        rows,
    )
    positions = scheduler.visit_scheduler_queue_position_get()
    if positions:
        click.echo(
            "queue positions (origins_without_last_update): "
            + ", ".join(f"{k}={v:,}" for k, v in sorted(positions.items()))
        )


def run_tasks(scheduler, t: datetime.datetime, rng) -> None:
    """Two rounds (morning and evening): grab the ready tasks, run each, end it
    eventful or uneventful.  The simulated worker takes no time."""
    subheading(f"Tasks of type {TASK_TYPE.type} (recurring, backoff factor 2, 12h..16d)")
    rows = []
    for ts in (t, t + DAY / 2):
        for task in scheduler.grab_ready_tasks(TASK_TYPE.type, timestamp=ts, num_tasks=100):
            backend_id = f"demo-{ts:%Y%m%d%H%M}-{task.id}"
            scheduler.schedule_task_run(task.id, backend_id, timestamp=ts)
            scheduler.start_task_run(backend_id, timestamp=ts)
            shard = task.arguments.kwargs.get("shard", 0)
            status = "eventful" if rng.random() < SHARD_EVENTFUL[shard] else "uneventful"
            scheduler.end_task_run(
                backend_id, status, metadata={"origins_seen": rng.randint(0, 500)}, timestamp=ts
            )
            after = scheduler.get_tasks([task.id])[0]
            rows.append(
                (
                    task.id,
                    f"{task.arguments.kwargs['lister']}/{shard}",
                    ts,
                    status,
                    fmt_duration(task.current_interval),
                    fmt_duration(after.current_interval),
                    after.next_run,
                )
            )
    if rows:
        table(
            ("task", "shard", "ran at", "run ended", "interval was", "interval now", "next run"),
            [(*r[:2], f"{r[2]:%a %H:%M}", *r[3:]) for r in sorted(rows, key=lambda r: r[:3])],
        )
    ran = {r[0] for r in rows}
    waiting = [
        task for task in scheduler.search_tasks(task_type=TASK_TYPE.type) if task.id not in ran
    ]
    if waiting:
        click.echo(
            f"not due today ({len(waiting)}): "
            + ", ".join(
                f"#{w.id} {w.arguments.kwargs['lister']}/{w.arguments.kwargs.get('shard')} "
                f"on {w.next_run:%a %d %H:%M}"
                for w in sorted(waiting, key=lambda w: w.id)
            )
        )


def check_counts(scheduler, db: str, listers) -> bool:
    """Metrics against a direct count of listed origins; True when they agree."""
    names = {lst.id: name for name, lst in listers.items()}
    metrics = {(m.lister_id, m.visit_type): m for m in scheduler.get_metrics()}
    with psycopg.connect(db) as conn:
        counted = conn.execute(Q_LISTED_COUNTS).fetchall()
    rows, ok = [], True
    for lister_id, visit_type, origins, distinct_urls in counted:
        if lister_id not in names:
            continue
        m = metrics.get((lister_id, visit_type))
        known = m.origins_known if m else None
        agree = known == origins == distinct_urls
        ok = ok and agree
        rows.append(
            (names[lister_id], visit_type, known, origins, distinct_urls, "yes" if agree else "NO")
        )
    table(
        ("lister", "type", "metrics: known", "count(*)", "distinct urls", "match"),
        rows,
    )
    return ok


def next_steps(db: str, pgsched: str, psql: str, after: datetime.datetime) -> None:
    heading("What to try next")
    quoted = safe_dsn(db).replace("'", "'\\''")
    # The simulated clock may be ahead of the real one: what was scheduled
    # "today" in the simulation is still in its cooldown now.  The commands
    # below ask as of the end of the simulation.
    ts = after.isoformat()
    click.echo(
        f"""
The database stays as it is (`make stop` stops the embedded cluster).
The simulation ended at {ts}: the commands below ask as of that time
(without --timestamp / ts, "now" is used, and origins the simulation
scheduled later than now are still in their cooldowns).

  export PGSCHED_DB='{quoted}'

Serve the API (msgpack/JSON RPC, the Software Heritage scheduler protocol):

  {pgsched} serve --port 5008
  # then, from another shell:
  .venv/bin/python -c "from pgsched import get_scheduler; \\
s = get_scheduler('remote', url='http://127.0.0.1:5008/'); \\
print([(m.visit_type, m.origins_known, m.origins_never_visited) for m in s.get_metrics()])"

Ask the database directly, as a DBA would (every function is commented: \\df+ scheduler.*):

  {psql} "$PGSCHED_DB" -c "select url, last_update from scheduler.grab_next_visits(\\
visit_type => 'pypi', count => 5, policy => 'never_visited_oldest_update_first', \\
ts => '{ts}')"
  {psql} "$PGSCHED_DB" -c "select * from scheduler.get_metrics()"

The command line:

  {pgsched} visits grab --visit-type npm --policy origins_without_last_update --count 5 \\
      --long --timestamp {ts}
  {pgsched} visits record --visit-type npm --status failed https://www.npmjs.com/package/left-pad
  {pgsched} metrics update --timestamp {ts}
  {pgsched} task list --type {TASK_TYPE.type}
  {pgsched} --help

Run again: `make run` continues the simulated clock on the same origins;
`make run FULL=1` imports the full listings (886k PyPI projects, 227k npm
packages) from ../shared/data/ when they are there."""
    )


def run_demo(
    db: str,
    pypi_file: str,
    npm_file: str,
    days: int = 5,
    seed: int = SEED,
    pgsched: str = "pgsched",
    psql: str = "psql",
) -> bool:
    """The whole scenario; returns False when the final check fails."""
    with get_scheduler("postgresql", db=db, min_size=1, max_size=2) as scheduler:
        t0, continued = start_time(scheduler)
        heading("pgsched demo")
        click.echo(f"database:  {safe_dsn(db)}")
        click.echo(f"listings:  {pypi_file}, {npm_file}")
        click.echo(
            f"clock:     {days} simulated days from {when(t0)}"
            + (" (continuing the previous run)" if continued else "")
        )

        heading("1. Listings")
        listers = {}
        for name, path in (("pypi", pypi_file), ("npm", npm_file)):
            click.echo(f"$ pgsched lister import --name {name} --visit-type {name} {path}")
            result = run_import(scheduler, path, name, name, finished_at=t0)
            listers[name] = result.lister

        scheduler.create_task_type(TASK_TYPE)
        tasks = scheduler.create_tasks(
            [
                Task(
                    type=TASK_TYPE.type,
                    arguments=TaskArguments(kwargs={"lister": name, "shard": shard}),
                    next_run=t0,
                )
                for name in ("pypi", "npm")
                for shard in range(len(SHARD_EVENTFUL))
            ]
        )
        click.echo(
            f"task type {TASK_TYPE.type}: {len(tasks)} recurring tasks "
            f"(ids {min(t.id for t in tasks)}..{max(t.id for t in tasks)})"
        )

        visited_ok: set[str] = set()
        for day in range(days):
            t = t0 + day * DAY
            rng = random.Random(f"{seed}:{t.date().isoformat()}")
            heading(f"2.{day + 1} Day {day + 1}: {when(t)}")
            simulate_day(scheduler, day, t, listers, visited_ok, rng)
            run_tasks(scheduler, t, rng)
            subheading("Metrics (pgsched metrics update)")
            metrics_table(scheduler, scheduler.update_metrics(timestamp=t + 18 * DAY / 24))

        heading("3. Check: metrics against a direct count of listed origins")
        ok = check_counts(scheduler, db, listers)
        click.echo(
            "metrics agree with select count(*) from scheduler.listed_origins; no url is listed "
            "twice"
            if ok
            else "MISMATCH between metrics and listed origins"
        )
    next_steps(db, pgsched, psql, after=t0 + days * DAY)
    return ok
