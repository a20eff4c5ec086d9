#!/usr/bin/env python3
"""pgsched benchmark: the real PyPI and npm listings, pgsched beside the
reference backend (swh.scheduler 3.1.0), same run, same PostgreSQL server.

    bench/bench.py                  full listings (about 1.1M origins)
    bench/bench.py --quick          a 50k-origin sample (QUICK=1 in make)
    bench/bench.py --backends pgsched --sample 300 --out /tmp/x   (what the smoke test runs)

The server is PGSCHED_DSN (any database on it: the benchmark creates and
drops its own, bench_<backend>_<tag>). Results: bench/results/<stamp>.json
and .md, plus latest.json / latest.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import attr
import psycopg

from backends import (
    Backend,
    PgschedBackend,
    ReferenceBackend,
    reference_available,
)
from workload import (
    TASK_TYPE,
    batches,
    listed_origin_models,
    load_listings,
    task_models,
    task_rows,
    task_type_model,
    visit_stats_models,
    visit_stats_rows,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"

GRAB_COUNT = 1000
# (visit type, policy): npm has no last_update, so it gets the policy made for that.
GRAB_POLICIES = [
    ("pypi", "already_visited_order_by_lag"),
    ("pypi", "never_visited_oldest_update_first"),
    ("npm", "origins_without_last_update"),
    ("pypi", "first_visits_after_listing"),
    ("pypi", "oldest_scheduled_first"),
]
# Every grab runs this much later than the previous one, so the 12 h absolute
# cooldown keeps the origins already grabbed in this run out of later grabs.
GRAB_STEP = datetime.timedelta(minutes=2)


@dataclass
class Config:
    server_dsn: str
    quick: bool = False
    sample: int | None = None
    seed: int = 20261204
    batch: int = 1000
    grab_calls: int = 20
    tasks: int = 100_000
    task_runs: int = 5_000
    shim_pairs: int = 30
    metrics_calls: int = 3
    backends: list[str] = field(default_factory=lambda: ["pgsched", "reference"])
    data_dir: Path | None = None
    out_dir: Path = RESULTS_DIR
    tag: str = "run"
    keep_db: bool = False
    explain: bool = True
    explain_min_ms: int = 1


# --- progress and timing -----------------------------------------------------


class Progress:
    """Prints a line per phase, and a running count every few seconds."""

    def __init__(self, stream=sys.stderr, every: float = 5.0):
        self.stream = stream
        self.every = every

    def say(self, msg: str) -> None:
        print(msg, file=self.stream, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# --- the workload, shared by every backend ------------------------------------


@dataclass
class Workload:
    now: datetime.datetime
    listings: list
    stats_rows: list
    task_rows: list

    @property
    def origins(self) -> int:
        return sum(len(listing.rows) for listing in self.listings)


def build_workload(cfg: Config, progress: Progress) -> Workload:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    t, listings = timed(lambda: load_listings(cfg.data_dir, cfg.sample, cfg.seed))
    progress.say(
        f"listings: {', '.join(f'{li.lister} {len(li.rows):,}' for li in listings)} "
        f"origins (read in {t:.1f}s)"
    )
    stats = visit_stats_rows(listings, now, cfg.seed)
    total = sum(len(li.rows) for li in listings)
    tasks = task_rows(listings, min(cfg.tasks, total), now, cfg.seed)
    return Workload(now=now, listings=listings, stats_rows=stats, task_rows=tasks)


# --- the backends, side by side ------------------------------------------------


class Clock:
    """Timestamps for grabs, GRAB_STEP apart within a window.

    Window i starts an hour plus i * WINDOW after the run's start: far
    enough apart that the cooldowns set by one policy's grabs are over when
    the next policy starts, so every policy meets the same population
    whatever the order, as when each is measured alone.
    """

    WINDOW = datetime.timedelta(days=8)  # more than the 7-day scheduled cooldown

    def __init__(self, start: datetime.datetime):
        self.start = start + datetime.timedelta(hours=1)
        self.t = self.start

    def window(self, i: int) -> None:
        self.t = self.start + i * self.WINDOW

    def next(self) -> datetime.datetime:
        self.t += GRAB_STEP
        return self.t


@dataclass
class Side:
    """One backend under test and what the run has measured on it."""

    be: Backend
    lister_ids: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    explain: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # models and ids built ahead of timing

    @property
    def name(self) -> str:
        return self.be.name

    @property
    def sched(self):
        return self.be.scheduler


def interleaved(sides, items, call, progress: Progress, label: str, unit: str = "rows") -> dict:
    """Run call(side, item) for every item of items(side), the sides taking
    turns item by item (in alternating order), so that both meet the same
    load on a shared machine.  Seconds spent in each side's calls."""
    spent = {side.name: 0.0 for side in sides}
    lists = {side.name: items(side) for side in sides}
    n = max(len(v) for v in lists.values())
    total = sum(len(x) if isinstance(x, list) else 1 for x in next(iter(lists.values())))
    done, start = 0, time.perf_counter()
    last = start
    for i in range(n):
        for side in sides if i % 2 == 0 else sides[::-1]:
            own = lists[side.name]
            if i < len(own):
                t0 = time.perf_counter()
                call(side, own[i])
                spent[side.name] += time.perf_counter() - t0
        item = lists[sides[0].name][min(i, len(lists[sides[0].name]) - 1)]
        done += len(item) if isinstance(item, list) else 1
        now = time.perf_counter()
        if now - last >= progress.every:
            last = now
            rates = ", ".join(f"{k} {done / v:,.0f}/s" for k, v in spent.items() if v)
            progress.say(f"  {label}: {done:,}/{total:,} {unit} ({rates})")
    return spent


def report_rates(progress, label, count, spent, unit="rows") -> dict:
    rates = {name: count / t for name, t in spent.items() if t}
    progress.say(f"{label}: " + ", ".join(f"{k} {v:,.0f} {unit}/s" for k, v in rates.items()))
    return rates


def measure(sides: list[Side], work: Workload, cfg: Config, progress: Progress) -> None:
    clock = Clock(work.now)

    for side in sides:
        model = side.be.model
        side.lister_ids = {
            listing.lister: side.sched.get_or_create_lister(
                name=listing.lister, instance_name="bench"
            ).id
            for listing in work.listings
        }
        t0 = time.perf_counter()
        origins = listed_origin_models(model, side.lister_ids, work.listings)
        side.data["origin_batches"] = list(batches(origins, cfg.batch))
        stats = visit_stats_models(model, work.stats_rows)
        side.data["stats_batches"] = list(batches(stats, cfg.batch))
        progress.say(
            f"[{side.name}] models built ({len(origins):,} origins, {len(stats):,} stats) "
            f"in {time.perf_counter() - t0:.1f}s"
        )

    # record_listed_origins: first load, then the same rows again
    for key, label in (("record_first", "first load"), ("record_again", "re-record")):
        progress.say(f"record_listed_origins, {label}: {work.origins:,} rows per backend")
        spent = interleaved(
            sides,
            lambda side: side.data["origin_batches"],
            lambda side, batch: side.sched.record_listed_origins(batch),
            progress,
            label,
        )
        for name, rate in report_rates(progress, f"  {label}", work.origins, spent).items():
            next(s for s in sides if s.name == name).metrics[key] = rate
        if key == "record_first":
            for side in sides:
                side.metrics["copy_baseline"] = copy_baseline(side, work, progress)
    vacuum(sides, progress)

    # origin_visit_stats_upsert: a fixed-seed 60% of the origins
    progress.say(f"origin_visit_stats_upsert: {len(work.stats_rows):,} rows per backend")
    spent = interleaved(
        sides,
        lambda side: side.data["stats_batches"],
        lambda side, batch: side.sched.origin_visit_stats_upsert(batch),
        progress,
        "stats",
    )
    for name, rate in report_rates(progress, "  stats", len(work.stats_rows), spent).items():
        next(s for s in sides if s.name == name).metrics["stats_upsert"] = rate
    for side in sides:
        side.data.clear()
    vacuum(sides, progress)

    # update_metrics, calls alternating
    times: dict[str, list[float]] = {side.name: [] for side in sides}

    def metrics_call(side, _):
        t0 = time.perf_counter()
        side.extra["metrics_rows"] = len(side.sched.update_metrics(timestamp=work.now))
        times[side.name].append(time.perf_counter() - t0)

    interleaved(
        sides, lambda side: list(range(cfg.metrics_calls)), metrics_call, progress, "metrics"
    )
    for side in sides:
        side.metrics["update_metrics"] = statistics.median(times[side.name])
    progress.say(
        "update_metrics: "
        + ", ".join(f"{k} {statistics.median(v) * 1000:,.0f} ms" for k, v in times.items())
    )

    # the lister finished its listing: first_visits_after_listing needs that
    for side in sides:
        pypi = side.sched.get_lister(name="pypi", instance_name="bench")
        side.sched.update_lister(attr.evolve(pypi, last_listing_finished_at=work.now))

    # grab_next_visits per policy: the same timestamps on every backend
    for i, (visit_type, policy) in enumerate(GRAB_POLICIES):
        clock.window(i)
        stamps = [clock.next() for _ in range(cfg.grab_calls + 1)]
        lat: dict[str, list[float]] = {side.name: [] for side in sides}
        rows: dict[str, list[int]] = {side.name: [] for side in sides}

        def grab(side, ts, visit_type=visit_type, policy=policy, lat=lat, rows=rows):
            kwargs = grab_kwargs(visit_type, policy, side.lister_ids)
            t0 = time.perf_counter()
            got = side.sched.grab_next_visits(**kwargs, timestamp=ts)
            lat[side.name].append(time.perf_counter() - t0)
            rows[side.name].append(len(got))

        interleaved(sides, lambda side, stamps=stamps: stamps[:-1], grab, progress, policy, "calls")
        for side in sides:
            own = lat[side.name]
            side.metrics[f"grab.{policy}.p50"] = pct(own, 50)
            side.metrics[f"grab.{policy}.p95"] = pct(own, 95)
            side.extra.setdefault("grab_rows", {})[policy] = statistics.mean(rows[side.name])
            if cfg.explain:
                kwargs = grab_kwargs(visit_type, policy, side.lister_ids)
                side.explain[f"grab_next_visits.{policy}"] = side.be.explain(
                    "grab_next_visits", {**kwargs, "timestamp": stamps[-1]}
                )
        progress.say(
            f"grab_next_visits {visit_type} {policy}: "
            + "; ".join(
                f"{k} p50 {pct(v, 50) * 1000:,.1f} ms p95 {pct(v, 95) * 1000:,.1f} ms "
                f"({statistics.mean(rows[k]):,.0f} rows/call)"
                for k, v in lat.items()
            )
        )

    run_tasks(sides, work, cfg, progress)

    for side in sides:
        if side.be.has_bare_calls and cfg.shim_pairs and side.data.get("backend_ids"):
            side.extra["shim"] = shim_overhead(side, work, cfg, progress, clock)


def vacuum(sides: list[Side], progress: Progress) -> None:
    took = [side.be.maintenance() for side in sides]
    progress.say(f"VACUUM ANALYZE ({sum(took):.1f}s, untimed)")


def grab_kwargs(visit_type: str, policy: str, lister_ids: dict) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"visit_type": visit_type, "count": GRAB_COUNT, "policy": policy}
    if policy == "first_visits_after_listing":
        kwargs["lister_uuid"] = str(lister_ids["pypi"])
    return kwargs


def copy_baseline(side: Side, work: Workload, progress: Progress) -> float:
    """rows/s of a bare COPY of the same rows into a table with the same
    indexes, defaults and checks as the backend's listed_origins."""
    be = side.be
    with be.connect() as conn:
        conn.execute(be.copy_create)
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(be.copy_into) as cp:
            for listing in work.listings:
                lister_id = side.lister_ids[listing.lister]
                visit_type = listing.visit_type
                for url, last_update in listing.rows:
                    cp.write_row(be.copy_row(lister_id, url, visit_type, last_update, work.now))
        conn.commit()
        rate = work.origins / (time.perf_counter() - t0)
        conn.execute(be.copy_drop)
        conn.commit()
    progress.say(f"  [{side.name}] bare COPY baseline: {rate:,.0f} rows/s")
    return rate


def run_tasks(sides: list[Side], work: Workload, cfg: Config, progress: Progress) -> None:
    """create, grab, then runs: mass schedule, start, end."""
    for side in sides:
        side.sched.create_task_type(task_type_model(side.be.model))
        side.data["task_batches"] = list(
            batches(task_models(side.be.model, work.task_rows), cfg.batch)
        )
    n_tasks = len(work.task_rows)
    progress.say(f"create_tasks: {n_tasks:,} tasks per backend")
    spent = interleaved(
        sides,
        lambda side: side.data["task_batches"],
        lambda side, batch: side.sched.create_tasks(batch),
        progress,
        "create_tasks",
        "tasks",
    )
    for name, rate in report_rates(progress, "  create_tasks", n_tasks, spent, "tasks").items():
        next(s for s in sides if s.name == name).metrics["create_tasks"] = rate
    vacuum(sides, progress)

    # grab 40% of the tasks, 1000 per call (the EXPLAIN takes 1000 more, the
    # shim overhead cases need some left)
    want = n_tasks * 2 // 5
    sizes = [min(GRAB_COUNT, want - k) for k in range(0, want, GRAB_COUNT)]
    lat: dict[str, list[float]] = {side.name: [] for side in sides}

    def grab(side, n):
        t0 = time.perf_counter()
        got = side.sched.grab_ready_tasks(TASK_TYPE, timestamp=work.now, num_tasks=n)
        lat[side.name].append(time.perf_counter() - t0)
        side.data.setdefault("grabbed", []).extend(got)

    spent = interleaved(sides, lambda side: sizes, grab, progress, "grab_ready_tasks", "calls")
    for side in sides:
        grabbed = len(side.data.get("grabbed", []))
        side.metrics["grab_ready_tasks"] = grabbed / spent[side.name]
        side.metrics["grab_ready_tasks.p50"] = pct(lat[side.name], 50)
        if cfg.explain:
            side.explain["grab_ready_tasks"] = side.be.explain(
                "grab_ready_tasks",
                {"task_type": TASK_TYPE, "timestamp": work.now, "num_tasks": GRAB_COUNT},
            )
    progress.say(
        "grab_ready_tasks: "
        + "; ".join(
            f"{s.name} {s.metrics['grab_ready_tasks']:,.0f} tasks/s, "
            f"p50 {s.metrics['grab_ready_tasks.p50'] * 1000:,.1f} ms per call"
            for s in sides
        )
    )

    # runs: mass schedule, then start and end one by one (as workers report)
    for side in sides:
        runs = side.data["grabbed"][: cfg.task_runs]
        side.data["runs"] = [
            side.be.model.TaskRun(
                task=task.id, backend_id=f"bench-{side.name}-{task.id}", scheduled=work.now
            )
            for task in runs
        ]
        side.data["backend_ids"] = [run.backend_id for run in side.data["runs"]]
    n_runs = min(len(side.data["runs"]) for side in sides)
    spent = interleaved(
        sides,
        lambda side: list(batches(side.data["runs"], cfg.batch)),
        lambda side, batch: side.sched.mass_schedule_task_runs(batch),
        progress,
        "mass_schedule_task_runs",
        "runs",
    )
    rates = report_rates(progress, "  mass_schedule_task_runs", n_runs, spent, "runs")
    for name, rate in rates.items():
        next(s for s in sides if s.name == name).metrics["mass_schedule_task_runs"] = rate
    spent = interleaved(
        sides,
        lambda side: side.data["runs"],
        lambda side, run: side.sched.start_task_run(
            run.backend_id, metadata={"worker": "bench"}, timestamp=work.now
        ),
        progress,
        "start_task_run",
        "runs",
    )
    for name, rate in report_rates(progress, "  start_task_run", n_runs, spent, "runs").items():
        next(s for s in sides if s.name == name).metrics["start_task_run"] = rate
    ends = ("eventful", "uneventful", "failed")
    spent = interleaved(
        sides,
        lambda side: list(enumerate(side.data["runs"])),
        lambda side, item: side.sched.end_task_run(
            item[1].backend_id, ends[item[0] % 3], metadata={"done": True}, timestamp=work.now
        ),
        progress,
        "end_task_run",
        "runs",
    )
    for name, rate in report_rates(progress, "  end_task_run", n_runs, spent, "runs").items():
        next(s for s in sides if s.name == name).metrics["end_task_run"] = rate


class ShimCase:
    """One interface call measured through the shim and as its bare SQL call."""

    def __init__(self, method: str, shim_kwargs, bare_kwargs, reset=None):
        self.method = method
        self.shim_kwargs = shim_kwargs  # () -> kwargs of the shim method
        self.bare_kwargs = bare_kwargs  # () -> plain values for backends.BARE_PARAMS
        self.reset = reset  # (ids) -> None: undo a grab, untimed


def shim_cases(side: Side, work: Workload, clock: Clock) -> dict[str, ShimCase]:
    be, lister_ids, backend_id = side.be, side.lister_ids, side.data["backend_ids"][0]
    sched, model = be.scheduler, be.model
    pypi = work.listings[0]
    rows = [(lister_ids[pypi.lister], url, pypi.visit_type, lu) for url, lu in pypi.rows[:1000]]
    origins = [
        model.ListedOrigin(lister_id=lid, url=url, visit_type=vt, last_update=lu)
        for lid, url, vt, lu in rows
    ]
    stats_rows = work.stats_rows[:1000]
    stats = visit_stats_models(model, stats_rows)

    def grab_visits():
        kwargs = grab_kwargs("pypi", "oldest_scheduled_first", lister_ids)
        return {**kwargs, "timestamp": clock.next()}

    def grab_tasks():
        return {"task_type": TASK_TYPE, "timestamp": work.now, "num_tasks": GRAB_COUNT}

    def start_run():
        return {"backend_id": backend_id, "metadata": {"worker": "bench"}, "timestamp": work.now}

    def ready_again(ids):
        sched.set_status_tasks(ids, status="next_run_not_scheduled")

    return {
        "grab_next_visits": ShimCase("grab_next_visits", grab_visits, grab_visits),
        "grab_ready_tasks": ShimCase("grab_ready_tasks", grab_tasks, grab_tasks, ready_again),
        "record_listed_origins": ShimCase(
            "record_listed_origins",
            lambda: {"listed_origins": origins},
            lambda: {"rows": rows},
        ),
        # a small call: the fixed cost of the shim (checks, pool, row to model)
        "start_task_run": ShimCase("start_task_run", start_run, start_run),
        "origin_visit_stats_upsert": ShimCase(
            "origin_visit_stats_upsert",
            lambda: {"origin_visit_stats": stats},
            lambda: {"rows": stats_rows},
        ),
    }


def shim_overhead(side: Side, work: Workload, cfg: Config, progress, clock) -> dict[str, Any]:
    """The same call through the shim and as a bare SQL call over psycopg
    (autocommit, tuple rows), alternately; medians compared."""
    out = {}
    be, sched, m = side.be, side.sched, side.metrics
    clock.window(len(GRAB_POLICIES))
    with be.connect(autocommit=True) as conn:
        cases = shim_cases(side, work, clock)
        for name, case in cases.items():
            shim_t, bare_t = [], []
            for _ in range(cfg.shim_pairs):
                kwargs = case.shim_kwargs()
                t0 = time.perf_counter()
                got = getattr(sched, case.method)(**kwargs)
                shim_t.append(time.perf_counter() - t0)
                if case.reset:
                    case.reset([task.id for task in got])
                query, params = be.bare(case.method, case.bare_kwargs())
                t0 = time.perf_counter()
                cur = conn.execute(query, params)
                got = cur.fetchall()
                bare_t.append(time.perf_counter() - t0)
                if case.reset:
                    col = [d.name for d in cur.description].index("id")
                    case.reset([row[col] for row in got])
            shim, bare = statistics.median(shim_t), statistics.median(bare_t)
            out[name] = {"shim_ms": shim * 1000, "bare_ms": bare * 1000}
            m[f"shim.{name}"] = (shim - bare) / bare * 100
            progress.say(
                f"[{side.name}] shim overhead {name}: shim {shim * 1000:.2f} ms, "
                f"bare {bare * 1000:.2f} ms "
                f"({m[f'shim.{name}']:+.1f}%)"
            )
    return out


# --- report ------------------------------------------------------------------


@dataclass
class Line:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None  # minimum speed-up over the reference
    limit: float | None = None  # pgsched must stay below (same unit as shown)
    scale: float = 1.0  # shown value = stored value * scale


def report_lines() -> list[Line]:
    lines = [
        Line("record_first", "record_listed_origins, first load", "rows/s", True, 3),
        Line("record_again", "record_listed_origins, re-record", "rows/s", True, 3),
        Line("copy_baseline", "bare COPY, same rows, same indexes", "rows/s", True),
        Line("stats_upsert", "origin_visit_stats_upsert", "rows/s", True, 2),
        Line("update_metrics", "update_metrics", "ms", False, 3, scale=1000),
    ]
    for _vt, policy in GRAB_POLICIES:
        lines.append(
            Line(f"grab.{policy}.p50", f"grab_next_visits {policy} p50", "ms", False, 2, 20, 1000)
        )
        lines.append(
            Line(f"grab.{policy}.p95", f"grab_next_visits {policy} p95", "ms", False, 2, None, 1000)
        )
    lines += [
        Line("create_tasks", "create_tasks", "tasks/s", True, 3),
        Line("grab_ready_tasks", "grab_ready_tasks", "tasks/s", True, 3),
        Line("grab_ready_tasks.p50", "grab_ready_tasks(1000) p50", "ms", False, 2, None, 1000),
        Line("mass_schedule_task_runs", "mass_schedule_task_runs", "runs/s", True, 2),
        Line("start_task_run", "start_task_run", "runs/s", True, 2),
        Line("end_task_run", "end_task_run", "runs/s", True, 2),
    ]
    return lines


def build_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    pg = results["backends"].get("pgsched", {}).get("metrics", {})
    ref = results["backends"].get("reference", {}).get("metrics", {})
    rows = []
    for line in report_lines():
        a, b = pg.get(line.key), ref.get(line.key)
        ratio = None
        if a and b:
            ratio = a / b if line.higher_is_better else b / a
        ok = None
        if line.target is not None and ratio is not None:
            ok = ratio >= line.target
        if line.limit is not None and a is not None:
            ok = (ok is not False) and a * line.scale < line.limit
        rows.append(
            {
                "key": line.key,
                "label": line.label,
                "unit": line.unit,
                "pgsched": a * line.scale if a is not None else None,
                "reference": b * line.scale if b is not None else None,
                "speedup": ratio,
                "target": line.target,
                "limit": line.limit,
                "ok": ok,
            }
        )
    if pg.get("record_first") and pg.get("copy_baseline"):
        at = 1 + next(i for i, r in enumerate(rows) if r["key"] == "copy_baseline")
        rows.insert(
            at,
            {
                "key": "record_first_vs_copy",
                "label": "record_listed_origins first load / bare COPY",
                "unit": "% of COPY",
                "pgsched": pg["record_first"] / pg["copy_baseline"] * 100,
                "reference": (
                    ref["record_first"] / ref["copy_baseline"] * 100
                    if ref.get("record_first") and ref.get("copy_baseline")
                    else None
                ),
                "speedup": None,
                "target": None,
                "limit": None,
                "ok": None,
            },
        )
    for key, value in sorted(pg.items()):
        if key.startswith("shim."):
            rows.append(
                {
                    "key": key,
                    "label": f"shim overhead, {key[5:]} (vs bare SQL call)",
                    "unit": "%",
                    "pgsched": value,
                    "reference": None,
                    "speedup": None,
                    "target": None,
                    "limit": 10,
                    "ok": value < 10,
                }
            )
    return rows


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:+.1f}%"
    if unit.startswith("%"):
        return f"{value:.0f}%"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def text_table(rows: list[dict[str, Any]]) -> str:
    head = ("line", "unit", "pgsched", "reference", "speed-up", "target", "")
    body = []
    for r in rows:
        target = []
        if r["target"]:
            target.append(f">={r['target']:g}x")
        if r["limit"] is not None:
            target.append(f"<{r['limit']:g}")
        mark = {True: "ok", False: "MISS", None: ""}[r["ok"]]
        body.append(
            (
                r["label"],
                r["unit"],
                fmt(r["pgsched"], r["unit"]),
                fmt(r["reference"], r["unit"]),
                f"{r['speedup']:.1f}x" if r["speedup"] else "-",
                " ".join(target),
                mark,
            )
        )
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    out = []
    for j, row in enumerate([head, *body]):
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    rows = results["table"]
    out = [
        "# pgsched benchmark",
        "",
        f"- mode: {meta['mode']}, {meta['origins']:,} origins "
        f"({', '.join(f'{k} {v:,}' for k, v in meta['listings'].items())}), "
        f"{meta['stats_rows']:,} visit stats, {meta['tasks']:,} tasks, batches of {meta['batch']}",
        f"- server: {meta['server_version']}; {meta['cpus']} CPUs; python {meta['python']}",
        f"- started {meta['started']}, took {meta['duration_s']:.0f} s",
        "- speed-up: pgsched / reference for rates, reference / pgsched for times",
        "",
        "| line | unit | pgsched | reference | speed-up | target | |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        target = []
        if r["target"]:
            target.append(f"≥ {r['target']:g}×")
        if r["limit"] is not None:
            target.append(f"< {r['limit']:g} {r['unit']}")
        mark = {True: "ok", False: "**MISS**", None: ""}[r["ok"]]
        speed = f"{r['speedup']:.1f}×" if r["speedup"] else "-"
        out.append(
            f"| {r['label']} | {r['unit']} | {fmt(r['pgsched'], r['unit'])} | "
            f"{fmt(r['reference'], r['unit'])} | {speed} | {' '.join(target)} | {mark} |"
        )
    for name, be in results["backends"].items():
        grab_rows = be.get("extra", {}).get("grab_rows", {})
        if grab_rows:
            out += ["", f"Rows per grab call ({name}): "
                    + ", ".join(f"{k} {v:,.0f}" for k, v in grab_rows.items())]  # fmt: skip
    out += misses(results)
    out += ["", "## Plans", ""]
    for name, be in results["backends"].items():
        for what, ex in be.get("explain", {}).items():
            flags = []
            if ex["seq_scans_on_big_tables"]:
                flags.append("Seq Scan on " + ", ".join(ex["seq_scans_on_big_tables"]))
            if ex["disk_spill"]:
                flags.append("on-disk sort or hash (temp files)")
            out.append(f"### {name}: {what} — {'; '.join(flags) or 'no seq scan on big tables'}")
            out.append("")
            out.append("| ms | statement (nested ones first, the call last) | flags |")
            out.append("| ---: | --- | --- |")
            for st in ex.get("statements", []):
                flag = ", ".join(
                    [f"Seq Scan on {t}" for t in st["seq_scans"]]
                    + (["on-disk sort or hash (temp files)"] if st["disk_spill"] else [])
                )
                text = st["statement"].replace("|", "\\|")
                ms = f"{st['ms']:.1f}" if st["ms"] is not None else "?"
                out.append(f"| {ms} | `{text}` | {flag} |")
            out.append("")
            out.append("```")
            out.extend(ex["plans"])
            out.append("```")
            out.append("")
    return "\n".join(out) + "\n"


def misses(results: dict[str, Any]) -> list[str]:
    """The lines that miss their target, with the slowest statements of the
    explained call behind each grab line (the evidence to start from)."""
    missed = [r for r in results["table"] if r["ok"] is False]
    if not missed:
        return []
    explain = results["backends"].get("pgsched", {}).get("explain", {})
    out = [
        "",
        "## Misses",
        "",
        "With the slowest statements inside the explained call (a trigger's statement runs",
        "inside the one that fired it, so their times overlap).",
        "",
    ]
    for r in missed:
        unit = "" if r["unit"].startswith("%") else f" {r['unit']}"
        shown = f"pgsched {fmt(r['pgsched'], r['unit'])}{unit}"
        if r["reference"] is not None:
            shown += f", reference {fmt(r['reference'], r['unit'])}{unit}"
        out.append(f"- {r['label']}: {shown}")
        key = r["key"]
        if key.startswith("grab."):
            ex = explain.get(f"grab_next_visits.{key.split('.')[1]}")
        elif key.startswith("grab_ready_tasks"):
            ex = explain.get("grab_ready_tasks")
        else:
            ex = None
        if ex and ex.get("statements"):
            nested = sorted(ex["statements"][:-1], key=lambda st: -(st["ms"] or 0))[:3]
            for st in nested:
                out.append(f"  - {st['ms']:.1f} ms in `{st['statement'][:100]}`")
    return out


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started"].replace(":", "").replace("-", "")[:15]
    js = out_dir / f"{stamp}-{results['meta']['mode']}.json"
    md = js.with_suffix(".md")
    js.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md.write_text(markdown(results))
    for src, name in ((js, "latest.json"), (md, "latest.md")):
        (out_dir / name).write_text(src.read_text())
    return js, md


# --- main --------------------------------------------------------------------


BACKENDS = {"pgsched": PgschedBackend, "reference": ReferenceBackend}


def run(cfg: Config, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or Progress()
    started = datetime.datetime.now(datetime.UTC)
    t_start = time.perf_counter()
    work = build_workload(cfg, progress)
    with psycopg.connect(cfg.server_dsn) as conn:
        server_version = conn.execute("SELECT version()").fetchone()[0]
    results: dict[str, Any] = {
        "meta": {
            "mode": "quick" if cfg.quick else ("full" if cfg.sample is None else "sample"),
            "started": started.isoformat(timespec="seconds"),
            "origins": work.origins,
            "listings": {li.lister: len(li.rows) for li in work.listings},
            "stats_rows": len(work.stats_rows),
            "tasks": len(work.task_rows),
            "batch": cfg.batch,
            "grab_calls": cfg.grab_calls,
            "task_runs": cfg.task_runs,
            "seed": cfg.seed,
            "server_version": server_version,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "config": {k: str(v) for k, v in asdict(cfg).items() if k != "server_dsn"},
        },
        "backends": {},
    }
    sides: list[Side] = []
    try:
        for name in cfg.backends:
            t0 = time.perf_counter()
            be = BACKENDS[name](cfg.server_dsn, f"bench_{name}_{cfg.tag}", cfg.explain_min_ms)
            sides.append(Side(be))
            progress.say(f"[{name}] fresh database {be.dbname} in {time.perf_counter() - t0:.1f}s")
        measure(sides, work, cfg, progress)
    finally:
        for side in sides:
            if cfg.keep_db:
                side.be.close()
            else:
                side.be.drop()
    for side in sides:
        results["backends"][side.name] = {
            "metrics": side.metrics,
            "explain": side.explain,
            "extra": side.extra,
        }
    results["meta"]["duration_s"] = time.perf_counter() - t_start
    results["table"] = build_table(results)
    return results


def parse_args(argv: Iterable[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dsn", default=os.environ.get("PGSCHED_DSN"), help="server (PGSCHED_DSN)")
    p.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("QUICK", "") not in ("", "0"),
        help="50k-origin sample, fewer calls (QUICK=1)",
    )
    p.add_argument("--sample", type=int, help="origins to sample (default: all, 50000 quick)")
    p.add_argument("--backends", default="pgsched,reference", help="comma-separated")
    p.add_argument("--batch", type=int, default=1000, help="rows per call when loading")
    p.add_argument("--grab-calls", type=int, help="grab_next_visits calls per policy")
    p.add_argument("--tasks", type=int, help="tasks to create")
    p.add_argument("--task-runs", type=int, help="task runs to schedule, start and end")
    p.add_argument("--shim-pairs", type=int, help="shim/bare call pairs per case")
    p.add_argument("--seed", type=int, default=20261204)
    p.add_argument("--data-dir", type=Path, help="folder of the listings")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    p.add_argument("--tag", default="run", help="database name suffix")
    p.add_argument("--keep-db", action="store_true", help="keep the databases afterwards")
    p.add_argument("--no-explain", action="store_true")
    p.add_argument(
        "--explain-min-ms", type=int, default=1, help="plans of quicker statements are left out"
    )
    a = p.parse_args(list(argv) if argv is not None else None)
    if not a.dsn:
        p.error("no server: set PGSCHED_DSN or pass --dsn")
    quick = a.quick
    cfg = Config(
        server_dsn=a.dsn,
        quick=quick,
        sample=a.sample if a.sample is not None else (50_000 if quick else None),
        seed=a.seed,
        batch=a.batch,
        grab_calls=a.grab_calls or (10 if quick else 20),
        tasks=a.tasks or (20_000 if quick else 100_000),
        task_runs=a.task_runs or (2_000 if quick else 5_000),
        shim_pairs=a.shim_pairs or (20 if quick else 30),
        backends=[b for b in a.backends.split(",") if b],
        data_dir=a.data_dir,
        out_dir=a.out,
        tag=a.tag,
        keep_db=a.keep_db,
        explain=not a.no_explain,
        explain_min_ms=a.explain_min_ms,
    )
    unknown = set(cfg.backends) - set(BACKENDS)
    if unknown:
        p.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return cfg


def main(argv: Iterable[str] | None = None) -> int:
    cfg = parse_args(argv)
    # the reference backend's schema set-up warns about a role this server lacks
    logging.getLogger("swh").setLevel(logging.ERROR)
    if "reference" in cfg.backends:
        why = reference_available()
        if why:
            print(f"bench: {why}; running pgsched only", file=sys.stderr)
            cfg.backends = [b for b in cfg.backends if b != "reference"]
    results = run(cfg)
    js, md = write_results(results, cfg.out_dir)
    print(text_table(results["table"]))
    print(f"\nresults: {js}\n         {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
