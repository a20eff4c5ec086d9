"""The pgsched command line, through click's test runner, against a real database."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from click.testing import CliRunner

from pgsched import get_scheduler
from pgsched.cli import main
from pgsched.model import LastVisitStatus
from pgsched.visit_results import VisitResult, record_visit_results

UTC = datetime.UTC
PYPI_HEADER = "name\tlatest_version\tlast_release_month\n"
NPM_HEADER = "name\tlatest_version\tmonthly_downloads\n"
SNAP_A = "aa" * 20
SNAP_B = "bb" * 20


@pytest.fixture
def cli(dsn):
    """Run ``pgsched ARGS`` with PGSCHED_DB pointing at the test database."""
    runner = CliRunner()

    def run(*args, env=None):
        return runner.invoke(main, list(args), env={"PGSCHED_DB": dsn, **(env or {})})

    return run


@pytest.fixture
def sched(dsn):
    with get_scheduler("postgresql", db=dsn) as s:
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def expected_position(queue: int, offset: int, url: str) -> int:
    """next_visit_queue_position as documented in sql/functions/80_visit_results.sql."""
    days = 1 if offset < 2 else 2 if offset < 5 else 4 ** (min(offset, 8) - 4)
    byte = hashlib.sha256(url.encode()).digest()[0]
    factor = Decimal("0.9") + Decimal("0.2") * byte / Decimal("255.0")
    return queue + int((days * 86400 * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- db -----------------------------------------------------------------------


def test_db_migrate_and_status(cli):
    out = ok(cli("db", "migrate"))
    assert "schema up to date" in out
    assert "functions installed" in out
    out = ok(cli("db", "status"))
    assert "0001_schema  applied" in out
    assert out.rstrip().endswith("all applied")


def test_the_database_is_required(dsn):
    env = {k: v for k, v in os.environ.items() if k != "PGSCHED_DB"}
    result = CliRunner().invoke(main, ["db", "status"], env={**env, "PGSCHED_DB": None})
    assert result.exit_code == 2
    assert "Missing option '--db'" in result.output
    # --db on the command line
    out = ok(CliRunner().invoke(main, ["db", "status", "--db", dsn], env={"PGSCHED_DB": None}))
    assert "0001_schema" in out


def test_unreachable_database_is_a_clean_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(
        main, ["db", "migrate", "--db", f"host=127.0.0.1 port={port} dbname=x connect_timeout=2"]
    )
    assert result.exit_code == 1
    assert "cannot migrate" in result.output


# --- lister import ------------------------------------------------------------


def test_lister_import_pypi_and_reimport(cli, sched, tmp_path):
    name = unique("pypi")
    path = tmp_path / "pypi.tsv.gz"
    path.write_bytes(
        gzip.compress((PYPI_HEADER + "requests\t2.32\t2024-05\nx\t1\t1999-12\n").encode())
    )
    out = ok(
        cli(
            "lister", "import", "--name", name, "--instance", "main", "--visit-type", "pypi",
            "--finished-at", "2026-06-01T12:00:00+00:00", str(path),
        )
    )  # fmt: skip
    assert f"{name}: 2 origins loaded (pypi format, visit type pypi) from 2 lines" in out
    assert "rows/s" in out
    lister = sched.get_lister(name, "main")
    assert lister.last_listing_finished_at == datetime.datetime(2026, 6, 1, 12, tzinfo=UTC)
    page = sched.get_listed_origins(lister_id=lister.id)
    assert [(o.url, o.last_update) for o in page.results] == [
        ("https://pypi.org/project/requests/", datetime.datetime(2024, 5, 1, tzinfo=UTC)),
        ("https://pypi.org/project/x/", datetime.datetime(1999, 12, 1, tzinfo=UTC)),
    ]

    # Again, with one project updated and one new: updated, not duplicated.
    path.write_bytes(
        gzip.compress((PYPI_HEADER + "requests\t2.33\t2026-01\ny\t1\t2026-02\n").encode())
    )
    ok(
        cli(
            "lister",
            "import",
            "--name",
            name,
            "--instance",
            "main",
            "--visit-type",
            "pypi",
            str(path),
        )
    )
    page = sched.get_listed_origins(lister_id=lister.id)
    assert [(o.url, o.last_update.date()) for o in page.results] == [
        ("https://pypi.org/project/requests/", datetime.date(2026, 1, 1)),
        ("https://pypi.org/project/x/", datetime.date(1999, 12, 1)),
        ("https://pypi.org/project/y/", datetime.date(2026, 2, 1)),
    ]
    out = ok(cli("lister", "list"))
    assert name in out and "main" in out


def test_lister_import_npm_plain_text(cli, sched, tmp_path):
    name = unique("npm")
    path = tmp_path / "npm.tsv"
    path.write_text(NPM_HEADER + "@types/node\t22.0.0\t100\nleft-pad\t1.3.0\t7\n")
    out = ok(cli("lister", "import", "--name", name, "--visit-type", "npm", str(path)))
    assert "2 origins loaded (npm format" in out
    page = sched.get_listed_origins(lister_id=sched.get_lister(name).id)
    assert [(o.url, o.visit_type, o.last_update) for o in page.results] == [
        ("https://www.npmjs.com/package/@types/node", "npm", None),
        ("https://www.npmjs.com/package/left-pad", "npm", None),
    ]


def test_lister_import_bad_lines(dsn, sched, tmp_path):
    name = unique("pypi")
    path = tmp_path / "bad.tsv"
    path.write_text(
        PYPI_HEADER
        + "good\t1\t2024-01\n"  # 2
        + "broken line\n"  # 3
        + "\t1\t2024-01\n"  # 4
        + "late\t1\t2024-1x\n"  # 5
        + "fine\t1\t2023-12\n"  # 6
    )
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "lister",
            "import",
            "--name",
            name,
            "--visit-type",
            "pypi",
            "--batch-size",
            "1",
            str(path),
        ],
        env={"PGSCHED_DB": dsn},
    )
    assert result.exit_code == 1
    assert f"{path}:3: malformed line: 1 tab-separated fields, expected 3" in result.stderr
    assert f"{path}:4: empty name" in result.stderr
    assert f"{path}:5: bad last_release_month '2024-1x' (expected YYYY-MM)" in result.stderr
    assert "2 origins loaded" in result.stdout
    assert "3 lines skipped" in result.stdout
    page = sched.get_listed_origins(lister_id=sched.get_lister(name).id)
    assert [o.url for o in page.results] == [
        "https://pypi.org/project/fine/",
        "https://pypi.org/project/good/",
    ]


def test_lister_import_refuses_bad_files_and_options(cli, sched, tmp_path):
    odd = tmp_path / "odd.tsv"
    odd.write_text("url\tvisit_type\nhttps://x\tgit\n")
    name = unique("x")
    result = cli("lister", "import", "--name", name, "--visit-type", "git", str(odd))
    assert result.exit_code == 1
    assert "line 1: unknown header" in result.output
    assert sched.get_lister(name) is None  # nothing written, not even the lister
    result = cli("lister", "import", "--name", name, "--visit-type", "git", str(tmp_path / "no"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = cli("lister", "import", "--name", " ", "--visit-type", "git", str(odd))
    assert result.exit_code == 2 and "--name" in result.output
    result = cli(
        "lister", "import", "--name", "a", "--visit-type", "t", "--batch-size", "0", str(odd)
    )
    assert result.exit_code == 2 and "--batch-size" in result.output
    result = cli(
        "lister", "import", "--name", "a", "--visit-type", "t", "--finished-at", "2026-01-01T10:00",
        str(odd),
    )  # fmt: skip
    assert (
        result.exit_code == 2 and "--finished-at" in result.output and "UTC offset" in result.output
    )


# --- visits -------------------------------------------------------------------


def _listed(cli, tmp_path, names, month="2020-01"):
    lister = unique("pypi")
    path = tmp_path / f"{lister}.tsv"
    path.write_text(PYPI_HEADER + "".join(f"{n}\t1\t{month}\n" for n in names))
    ok(cli("lister", "import", "--name", lister, "--visit-type", lister, str(path)))
    return lister  # also the visit type: the test's origins alone


def test_visits_grab(cli, tmp_path):
    vt = _listed(cli, tmp_path, ["a", "b", "c"])
    result = cli(
        "visits", "grab", "--visit-type", vt, "--policy", "first_visits_after_listing",
        "--count", "2", "--lister", vt, "--timestamp", "2030-01-01T00:00:00Z",
    )  # fmt: skip
    urls = ok(result).split()
    assert len(urls) == 2 and all(u.startswith("https://pypi.org/project/") for u in urls)
    assert "2 origin(s) grabbed (first_visits_after_listing)" in result.stderr
    # the two are held back by the cooldowns: the third comes, then nothing
    args = ["visits", "grab", "--visit-type", vt, "--policy", "oldest_scheduled_first"]
    third = ok(cli(*args, "--count", "5", "--timestamp", "2030-01-01T01:00:00Z")).split()
    assert len(third) == 1 and third[0] not in urls
    assert ok(cli(*args, "--count", "5", "--timestamp", "2030-01-01T02:00:00Z")).split() == []
    # unless the cooldowns are switched off
    out = ok(cli(*args, "--count", "5", "--no-cooldowns", "--long"))
    assert out.splitlines()[0].split() == ["url", "lister", "last", "update", "first", "seen"]
    assert len(out.splitlines()) == 5


def test_visits_grab_bad_arguments(cli):
    base = ["visits", "grab", "--visit-type", "pypi"]
    result = cli(*base, "--policy", "newest", "--count", "1")
    assert result.exit_code == 2 and "--policy" in result.output
    result = cli(*base, "--policy", "oldest_scheduled_first", "--count", "-1")
    assert result.exit_code == 2 and "--count" in result.output
    result = cli(*base, "--policy", "first_visits_after_listing", "--count", "1")
    assert result.exit_code == 2 and "--lister" in result.output
    result = cli(
        *base, "--policy", "first_visits_after_listing", "--count", "1", "--lister", unique("no")
    )
    assert result.exit_code == 1 and "lister_name" in result.output


def test_visits_record_computes_the_stats_in_the_database(cli, sched, tmp_path):
    vt = _listed(cli, tmp_path, ["one"])
    url = "https://pypi.org/project/one/"
    sched.visit_scheduler_queue_position_set(vt, 1_000_000)
    rec = ["visits", "record", "--visit-type", vt]

    out = ok(cli(*rec, "--status", "successful", "--snapshot", SNAP_A, "--date", "2030-01-01", url))
    assert url in out
    (s,) = sched.origin_visit_stats_get([(url, vt)])
    assert s.last_visit_status == LastVisitStatus.successful
    assert s.last_visit == s.last_successful == datetime.datetime(2030, 1, 1, tzinfo=UTC)
    assert s.last_snapshot == bytes.fromhex(SNAP_A)
    # a first snapshot is news: offset 4 -> 3, two days ahead of the queue
    assert (s.next_position_offset, s.successive_visits) == (3, 1)
    assert s.next_visit_queue_position == expected_position(1_000_000, 3, url)

    ok(cli(*rec, "--status", "failed", "--date", "2030-01-02", url))
    ok(cli(*rec, "--status", "failed", "--date", "2030-01-03", url))
    (s,) = sched.origin_visit_stats_get([(url, vt)])
    assert s.last_visit_status == LastVisitStatus.failed
    assert s.last_successful == datetime.datetime(2030, 1, 1, tzinfo=UTC)
    assert s.last_snapshot == bytes.fromhex(SNAP_A)
    assert (s.next_position_offset, s.successive_visits) == (5, 2)
    assert s.next_visit_queue_position == expected_position(1_000_000, 5, url)

    # same snapshot again: uneventful, comes back later still
    ok(cli(*rec, "--status", "successful", "--snapshot", SNAP_A, "--date", "2030-01-04", url))
    (s,) = sched.origin_visit_stats_get([(url, vt)])
    assert (s.last_visit_status, s.next_position_offset, s.successive_visits) == (
        LastVisitStatus.successful,
        6,
        1,
    )
    assert s.next_visit_queue_position == expected_position(1_000_000, 6, url)
    # a new one: sooner
    ok(cli(*rec, "--status", "successful", "--snapshot", SNAP_B, "--date", "2030-01-05", url))
    (s,) = sched.origin_visit_stats_get([(url, vt)])
    assert (s.last_snapshot, s.next_position_offset) == (bytes.fromhex(SNAP_B), 5)
    position = s.next_visit_queue_position

    # an older result than the last one only tells of a success
    ok(cli(*rec, "--status", "successful", "--snapshot", SNAP_A, "--date", "2029-06-01", url))
    ok(cli(*rec, "--status", "not_found", "--date", "2029-06-02", url))
    (s,) = sched.origin_visit_stats_get([(url, vt)])
    assert (s.last_snapshot, s.next_position_offset) == (bytes.fromhex(SNAP_B), 5)
    assert s.last_visit == datetime.datetime(2030, 1, 5, tzinfo=UTC)
    assert s.next_visit_queue_position == position

    out = ok(cli("visits", "stats", "--visit-type", vt, url))
    assert "successful" in out and SNAP_B[:12] in out
    assert f"queue position of {vt}: 1000000" in out


def test_visits_record_bad_arguments(cli):
    rec = ["visits", "record", "--visit-type", "pypi"]
    result = cli(*rec, "--status", "successful", "https://x")
    assert result.exit_code == 2 and "--snapshot" in result.output
    result = cli(*rec, "--status", "successful", "--snapshot", "zz" * 20, "https://x")
    assert result.exit_code == 2 and "not hexadecimal" in result.output
    result = cli(*rec, "--status", "successful", "--snapshot", "ab" * 19, "https://x")
    assert result.exit_code == 2 and "20 bytes" in result.output
    result = cli(*rec, "--status", "gone", "https://x")
    assert result.exit_code == 2 and "--status" in result.output
    result = cli(*rec, "--status", "failed")
    assert result.exit_code == 2 and "URLS" in result.output


def test_record_visit_results_folds_a_batch_in_date_order(sched):
    vt = unique("vt")
    url = f"https://example.org/{vt}"
    d = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    stats = record_visit_results(
        sched,
        [
            VisitResult(url, vt, "successful", d + datetime.timedelta(days=2), SNAP_A),
            VisitResult(url, vt, "failed", d),
            VisitResult(url, vt, "successful", d + datetime.timedelta(days=1), SNAP_A),
            VisitResult(f"{url}/2", vt, "not_found", d),
        ],
    )
    assert [(s.url, s.last_visit_status.value) for s in stats] == sorted(
        [(url, "successful"), (f"{url}/2", "not_found")],
        key=lambda p: hashlib.sha256(p[0].encode()).digest(),
    )
    (s,) = [s for s in stats if s.url == url]
    # failed (4 -> 5), new snapshot (5 -> 4), same snapshot (4 -> 5, 2 in a row)
    assert (s.next_position_offset, s.successive_visits) == (5, 2)
    assert s.last_visit == d + datetime.timedelta(days=2)
    assert s.last_successful == d + datetime.timedelta(days=2)
    assert s.next_visit_queue_position == expected_position(0, 5, url)
    with pytest.raises(ValueError, match="visit_results.snapshot"):
        record_visit_results(sched, [VisitResult(url, vt, "successful", d, "ab" * 10)])
    with pytest.raises(ValueError, match="last_visit_status"):
        VisitResult(url, vt, "gone")
    with pytest.raises(ValueError, match=r"results\[0\].visit_date"):
        record_visit_results(sched, [VisitResult(url, vt, "failed", datetime.datetime(2030, 1, 1))])
    assert record_visit_results(sched, []) == []


# --- metrics ------------------------------------------------------------------


def test_metrics_update_and_show(cli, sched, dsn, tmp_path):
    vt = _listed(cli, tmp_path, ["m1", "m2", "m3"], month="2030-01")
    ok(cli("visits", "record", "--visit-type", vt, "--status", "successful", "--snapshot", SNAP_A,
           "--date", "2020-01-01", "https://pypi.org/project/m1/"))  # fmt: skip
    out = ok(cli("metrics", "update", "--lister", vt, "--timestamp", "2031-01-01"))
    (row,) = [line.split() for line in out.splitlines() if line.startswith(vt)]
    # lister, type, known, enabled, never visited, pending changes, as of
    assert row == [vt, vt, "3", "3", "2", "1", "2031-01-01", "00:00:00"]
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM scheduler.listed_origins WHERE visit_type = %s", [vt]
        ).fetchone()
    assert count == 3
    out = ok(cli("metrics", "show", "--lister", vt))
    assert [line.split() for line in out.splitlines() if line.startswith(vt)] == [row]
    out = ok(cli("metrics", "show", "--visit-type", vt))
    assert [line.split() for line in out.splitlines() if line.startswith(vt)] == [row]
    result = cli("metrics", "show", "--lister", unique("none"))
    assert result.exit_code == 2 and "--lister" in result.output


# --- task types and tasks -----------------------------------------------------


def test_task_type_and_tasks(cli, sched):
    tt = unique("load")
    out = ok(
        cli(
            "task-type", "add", tt, "--description", "load things", "--default-interval", "1d",
            "--min-interval", "12h", "--max-interval", "2w", "--backoff-factor", "2",
            "--num-retries", "1", "--retry-delay", "1h30m",
        )
    )  # fmt: skip
    assert tt in out
    stored = sched.get_task_type(tt)
    assert stored.default_interval == datetime.timedelta(days=1)
    assert stored.min_interval == datetime.timedelta(hours=12)
    assert stored.max_interval == datetime.timedelta(days=14)
    assert stored.retry_delay == datetime.timedelta(hours=1, minutes=30)
    assert (stored.backoff_factor, stored.num_retries, stored.backend_name) == (2.0, 1, tt)
    assert tt in ok(cli("task-type", "list"))

    add = ["task", "add", tt, "url=https://example.org/repo", "depth=3", "first"]
    first = ok(cli(*add, "--next-run", "2030-01-01T00:00:00Z"))
    again = ok(cli(*add, "--next-run", "2030-01-01T00:00:00Z"))
    assert first == again  # stored once
    (task,) = sched.search_tasks(task_type=tt)
    assert task.arguments.args == ["first"]
    assert task.arguments.kwargs == {"url": "https://example.org/repo", "depth": 3}
    assert (task.policy, task.status, task.current_interval) == (
        "recurring",
        "next_run_not_scheduled",
        datetime.timedelta(days=1),
    )
    ok(cli("task", "add", tt, "other", "--policy", "oneshot", "--next-run", "2031-01-01"))

    out = ok(cli("task", "list", "--type", tt))
    assert len([line for line in out.splitlines() if tt in line]) == 2
    out = ok(cli("task", "list", "--type", tt, "--policy", "oneshot"))
    assert len([line for line in out.splitlines() if tt in line]) == 1

    result = cli("task", "grab", tt, "--timestamp", "2030-06-01T00:00:00Z")
    assert "1 task(s) grabbed" in result.stderr
    assert str(task.id) in ok(result)
    assert sched.get_tasks([task.id])[0].status == "next_run_scheduled"
    result = cli("task", "grab", tt, "--timestamp", "2030-06-01T00:00:00Z")
    assert "0 task(s) grabbed" in result.stderr

    run = sched.schedule_task_run(task.id, f"b-{tt}")
    sched.start_task_run(f"b-{tt}")
    sched.end_task_run(f"b-{tt}", "uneventful")
    out = ok(cli("task", "runs", str(task.id)))
    assert f"b-{tt}" in out and "uneventful" in out and str(run.id) in out
    assert sched.get_tasks([task.id])[0].current_interval == datetime.timedelta(days=2)


def test_task_bad_arguments(cli):
    tt = unique("load")
    result = cli("task-type", "add", tt, "--default-interval", "soon")
    assert result.exit_code == 2 and "--default-interval" in result.output
    result = cli("task-type", "add", tt, "--backoff-factor", "0")
    assert result.exit_code == 2 and "--backoff-factor" in result.output
    result = cli("task", "add", unique("none"), "x")
    assert result.exit_code == 1 and "unknown task type" in result.output
    result = cli("task", "add", tt, "--next-run", "tomorrow")
    assert result.exit_code == 2 and "--next-run" in result.output
    result = cli("task", "list", "--status", "sleeping")
    assert result.exit_code == 2 and "--status" in result.output
    result = cli("task", "grab", tt, "--count", "-1")
    assert result.exit_code == 2 and "--count" in result.output


# --- serve and demo -------------------------------------------------------------


def test_serve(dsn):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pgsched = os.path.join(os.path.dirname(sys.executable), "pgsched")
    proc = subprocess.Popen(
        [pgsched, "serve", "--port", str(port), "--db", dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, "pgsched serve exited"
                assert time.monotonic() < deadline, "pgsched serve did not answer"
                time.sleep(0.2)
        remote = get_scheduler("remote", url=f"http://127.0.0.1:{port}/")
        assert isinstance(remote.get_task_types(), list)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_demo_runs_twice_without_duplicating(cli, dsn, tmp_path):
    pypi = tmp_path / "pypi.tsv.gz"
    pypi.write_bytes(
        gzip.compress(
            (
                PYPI_HEADER
                + "".join(f"p{i}\t1\t20{10 + i % 15}-0{1 + i % 9}\n" for i in range(300))
            ).encode()
        )
    )
    npm = tmp_path / "npm.tsv"
    npm.write_text(NPM_HEADER + "".join(f"n{i}\t1.0.0\t{i}\n" for i in range(200)))
    args = ["demo", "--pypi", str(pypi), "--npm", str(npm), "--days", "2"]
    first = ok(cli(*args))
    second = ok(cli(*args))
    for out in (first, second):
        assert "Day 2" in out and "What to try next" in out
        assert "metrics agree with select count(*)" in out
    assert "(continuing the previous run)" in second
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT l.name, count(*), count(DISTINCT lo.url) FROM scheduler.listed_origins AS lo "
            "JOIN scheduler.lister AS l ON l.id = lo.lister_id "
            "WHERE l.name IN ('pypi', 'npm') GROUP BY l.name ORDER BY l.name"
        ).fetchall()
    assert rows == [("npm", 200, 200), ("pypi", 300, 300)]
