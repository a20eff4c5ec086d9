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
        self.prefix = ""

    def say(self, msg: str) -> None:
        print(f"{self.prefix}{msg}", file=self.stream, flush=True)

    def loop(self, label: str, items: list, total: int, unit: str = "rows"):
        """Yield (item, done_before) over items, reporting progress."""
        start = last = time.perf_counter()
        done = 0
        for item in items:
            yield item
            done += len(item) if isinstance(item, list) else 1
            now = time.perf_counter()
            if now - last >= self.every:
                last = now
                rate = done / (now - start)
                self.say(f"  {label}: {done:,}/{total:,} {unit} ({rate:,.0f}/s)")


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


# --- one backend ---------------------------------------------------------------


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


def run_backend(be: Backend, work: Workload, cfg: Config, progress: Progress) -> dict[str, Any]:
    sched = be.scheduler
    model = be.model
    m: dict[str, Any] = {}
    explain: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    clock = Clock(work.now)

    listers = {
        listing.lister: sched.get_or_create_lister(name=listing.lister, instance_name="bench")
        for listing in work.listings
    }
    lister_ids = {name: lister.id for name, lister in listers.items()}

    t, origins = timed(lambda: listed_origin_models(model, lister_ids, work.listings))
    stats = visit_stats_models(model, work.stats_rows)
    progress.say(f"models built ({len(origins):,} origins, {len(stats):,} stats) in {t:.1f}s")
    origin_batches = list(batches(origins, cfg.batch))

    # record_listed_origins: first load, then the same rows again
    for key, label in (("record_first", "first load"), ("record_again", "re-record")):
        progress.say(f"record_listed_origins, {label}: {len(origins):,} rows")
        t0 = time.perf_counter()
        for batch in progress.loop(label, origin_batches, len(origins)):
            sched.record_listed_origins(batch)
        m[key] = len(origins) / (time.perf_counter() - t0)
        progress.say(f"  {m[key]:,.0f} rows/s")
        if key == "record_first":
            m["copy_baseline"] = copy_baseline(be, work, lister_ids, progress)
    progress.say(f"VACUUM ANALYZE ({be.maintenance():.1f}s, untimed)")

    # origin_visit_stats_upsert: a fixed-seed 60% of the origins
    progress.say(f"origin_visit_stats_upsert: {len(stats):,} rows")
    t0 = time.perf_counter()
    for batch in progress.loop("stats", list(batches(stats, cfg.batch)), len(stats)):
        sched.origin_visit_stats_upsert(batch)
    m["stats_upsert"] = len(stats) / (time.perf_counter() - t0)
    progress.say(f"  {m['stats_upsert']:,.0f} rows/s")
    del origins, origin_batches, stats
    progress.say(f"VACUUM ANALYZE ({be.maintenance():.1f}s, untimed)")

    # update_metrics
    times = []
    for _ in range(cfg.metrics_calls):
        t, rows = timed(lambda: sched.update_metrics(timestamp=work.now))
        times.append(t)
    m["update_metrics"] = statistics.median(times)
    extra["metrics_rows"] = len(rows)
    progress.say(f"update_metrics: {m['update_metrics'] * 1000:,.0f} ms (median of {len(times)})")

    # the lister finished its listing: first_visits_after_listing needs that
    pypi = sched.get_lister(name="pypi", instance_name="bench")
    sched.update_lister(attr.evolve(pypi, last_listing_finished_at=work.now))

    # grab_next_visits per policy
    extra["grab_rows"] = {}
    for i, (visit_type, policy) in enumerate(GRAB_POLICIES):
        clock.window(i)
        kwargs = grab_kwargs(visit_type, policy, lister_ids)
        lat, rows = [], []
        for _ in range(cfg.grab_calls):
            ts = clock.next()
            t0 = time.perf_counter()
            got = sched.grab_next_visits(**kwargs, timestamp=ts)
            lat.append(time.perf_counter() - t0)
            rows.append(len(got))
        m[f"grab.{policy}.p50"] = pct(lat, 50)
        m[f"grab.{policy}.p95"] = pct(lat, 95)
        extra["grab_rows"][policy] = statistics.mean(rows)
        progress.say(
            f"grab_next_visits {visit_type} {policy}: p50 {pct(lat, 50) * 1000:,.1f} ms, "
            f"p95 {pct(lat, 95) * 1000:,.1f} ms, {statistics.mean(rows):,.0f} rows/call"
        )
        if cfg.explain:
            ts = clock.next()
            explain[f"grab_next_visits.{policy}"] = be.explain(
                "grab_next_visits", {**kwargs, "timestamp": ts}
            )

    backend_ids = run_tasks(be, work, cfg, progress, m, explain, extra)

    if be.has_bare_calls and cfg.shim_pairs and backend_ids:
        extra["shim"] = shim_overhead(be, work, cfg, progress, clock, lister_ids, backend_ids, m)

    return {"metrics": m, "explain": explain, "extra": extra}


def grab_kwargs(visit_type: str, policy: str, lister_ids: dict) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"visit_type": visit_type, "count": GRAB_COUNT, "policy": policy}
    if policy == "first_visits_after_listing":
        kwargs["lister_uuid"] = str(lister_ids["pypi"])
    return kwargs


def copy_baseline(be: Backend, work: Workload, lister_ids: dict, progress: Progress) -> float:
    """rows/s of a bare COPY of the same rows into a table with the same
    indexes (and generated columns) as the backend's listed_origins."""
    with be.connect() as conn:
        conn.execute(be.copy_create)
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(be.copy_into) as cp:
            for listing in work.listings:
                lister_id = lister_ids[listing.lister]
                for url, last_update in listing.rows:
                    cp.write_row(
                        (lister_id, url, listing.visit_type, "{}", last_update, True,
                         work.now, work.now)
                    )  # fmt: skip
        conn.commit()
        rate = work.origins / (time.perf_counter() - t0)
        conn.execute(be.copy_drop)
        conn.commit()
    progress.say(f"  bare COPY baseline: {rate:,.0f} rows/s")
    return rate


def run_tasks(be, work, cfg, progress, m, explain, extra) -> list[str]:
    """create, grab, then runs: mass schedule, start, end; the runs' backend ids."""
    sched, model = be.scheduler, be.model
    sched.create_task_type(task_type_model(model))
    tasks = task_models(model, work.task_rows)

    progress.say(f"create_tasks: {len(tasks):,} tasks")
    t0 = time.perf_counter()
    task_batches = list(batches(tasks, cfg.batch))
    for batch in progress.loop("create_tasks", task_batches, len(tasks), "tasks"):
        sched.create_tasks(batch)
    m["create_tasks"] = len(tasks) / (time.perf_counter() - t0)
    progress.say(f"  {m['create_tasks']:,.0f} tasks/s")
    progress.say(f"VACUUM ANALYZE ({be.maintenance():.1f}s, untimed)")

    # grab 40% of the tasks, 1000 per call (the EXPLAIN takes 1000 more, the
    # shim overhead cases need some left)
    want = len(tasks) * 2 // 5
    grabbed: list = []
    lat = []
    t0 = time.perf_counter()
    while len(grabbed) < want:
        n = min(GRAB_COUNT, want - len(grabbed))
        t1 = time.perf_counter()
        got = sched.grab_ready_tasks(TASK_TYPE, timestamp=work.now, num_tasks=n)
        if not got:
            break
        lat.append(time.perf_counter() - t1)
        grabbed.extend(got)
    m["grab_ready_tasks"] = len(grabbed) / (time.perf_counter() - t0)
    m["grab_ready_tasks.p50"] = pct(lat, 50) if lat else float("nan")
    progress.say(
        f"grab_ready_tasks: {len(grabbed):,} tasks, {m['grab_ready_tasks']:,.0f} tasks/s, "
        f"p50 {m['grab_ready_tasks.p50'] * 1000:,.1f} ms per call of {GRAB_COUNT}"
    )
    if cfg.explain:
        explain["grab_ready_tasks"] = be.explain(
            "grab_ready_tasks",
            {"task_type": TASK_TYPE, "timestamp": work.now, "num_tasks": GRAB_COUNT},
        )

    # runs: mass schedule, then start and end one by one (as workers report)
    runs = grabbed[: cfg.task_runs]
    when = work.now
    task_runs = [
        model.TaskRun(task=task.id, backend_id=f"bench-{be.name}-{task.id}", scheduled=when)
        for task in runs
    ]
    t0 = time.perf_counter()
    for batch in batches(task_runs, cfg.batch):
        sched.mass_schedule_task_runs(batch)
    m["mass_schedule_task_runs"] = len(task_runs) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for run in progress.loop("start_task_run", task_runs, len(task_runs), "runs"):
        sched.start_task_run(run.backend_id, metadata={"worker": "bench"}, timestamp=when)
    m["start_task_run"] = len(task_runs) / (time.perf_counter() - t0)
    ends = ("eventful", "uneventful", "failed")
    t0 = time.perf_counter()
    for i, run in enumerate(progress.loop("end_task_run", task_runs, len(task_runs), "runs")):
        sched.end_task_run(run.backend_id, ends[i % 3], metadata={"done": True}, timestamp=when)
    m["end_task_run"] = len(task_runs) / (time.perf_counter() - t0)
    progress.say(
        f"task runs: mass_schedule {m['mass_schedule_task_runs']:,.0f}/s, "
        f"start {m['start_task_run']:,.0f}/s, end {m['end_task_run']:,.0f}/s"
    )
    return [run.backend_id for run in task_runs]


class ShimCase:
    """One interface call measured through the shim and as its bare SQL call."""

    def __init__(self, method: str, shim_kwargs, bare_kwargs, reset=None):
        self.method = method
        self.shim_kwargs = shim_kwargs  # () -> kwargs of the shim method
        self.bare_kwargs = bare_kwargs  # () -> plain values for backends.BARE_PARAMS
        self.reset = reset  # (ids) -> None: undo a grab, untimed


def shim_cases(be: Backend, work: Workload, clock: Clock, lister_ids: dict, backend_id: str):
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


def shim_overhead(be, work, cfg, progress, clock, lister_ids, backend_ids, m) -> dict[str, Any]:
    """The same call through the shim and as a bare SQL call over psycopg
    (autocommit, tuple rows), alternately; medians compared."""
    out = {}
    sched = be.scheduler
    clock.window(len(GRAB_POLICIES))
    with be.connect(autocommit=True) as conn:
        cases = shim_cases(be, work, clock, lister_ids, backend_ids[0])
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
                f"shim overhead {name}: shim {shim * 1000:.2f} ms, bare {bare * 1000:.2f} ms "
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
    out += ["", "## Plans", ""]
    for name, be in results["backends"].items():
        for what, ex in be.get("explain", {}).items():
            flags = []
            if ex["seq_scans_on_big_tables"]:
                flags.append("Seq Scan on " + ", ".join(ex["seq_scans_on_big_tables"]))
            if ex["disk_sort"]:
                flags.append("on-disk sort")
            out.append(f"### {name}: {what} — {'; '.join(flags) or 'no seq scan on big tables'}")
            out.append("")
            out.append("```")
            out.extend(ex["plans"])
            out.append("```")
            out.append("")
    return "\n".join(out) + "\n"


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
    for name in cfg.backends:
        progress.prefix = ""
        progress.say(f"== {name} ==")
        progress.prefix = f"[{name}] "
        t0 = time.perf_counter()
        be = BACKENDS[name](cfg.server_dsn, f"bench_{name}_{cfg.tag}", cfg.explain_min_ms)
        progress.say(f"fresh database {be.dbname} ready in {time.perf_counter() - t0:.1f}s")
        try:
            results["backends"][name] = run_backend(be, work, cfg, progress)
        finally:
            if cfg.keep_db:
                be.close()
            else:
                be.drop()
        progress.say(f"done in {time.perf_counter() - t0:.0f}s")
    progress.prefix = ""
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
