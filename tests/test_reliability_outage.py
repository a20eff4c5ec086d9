"""Database outages under a live RPC server.

The test starts its own PostgreSQL cluster (initdb into a temporary folder,
a free loopback port; as root the server runs as the ``postgres`` user), so
that stopping it disturbs nobody; it is skipped only when the PostgreSQL
binaries are missing.  In front of it runs ``pgsched serve`` (a separate
process), under a light, bounded load of three client threads:

- two writers, through pgsched's client with its default retries
  (record_listed_origins and create_tasks, one new row per call), each
  remembering which writes were answered with success;
- a probe, with retries off, timing every call and counting its 503s.

PostgreSQL is stopped twice (a fast shutdown, then an immediate one, which
is a crash: the restart replays the WAL) for less than the client's retry
budget, and started again.  Checked: while it is down the probe gets 503,
each within a few seconds; the same server process serves again afterwards;
the writers never see an error (the client retried transparently); every
write answered with success is in the database at the end.  The figures are
printed (pytest -s).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg
import pytest
import requests

from pgsched.api.client import RemoteScheduler, TransientRemoteException
from pgsched.migrate import migrate
from pgsched.model import ListedOrigin, Task
from utils import args, at, task_type

PGBIN = os.environ.get("PGSCHED_PGBIN", "/usr/lib/postgresql/15/bin")
OUTAGE = 2.0  # seconds PostgreSQL stays down, each time
POOL_TIMEOUT = 1.0  # seconds a call waits for a connection before 503
QUICK = 5.0  # a 503 must come sooner than this
MAX_CALLS = 5000  # per thread, whatever happens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivateCluster:
    """A throw-away PostgreSQL cluster, started and stopped by its data folder."""

    def __init__(self, base: str):
        self.base = base
        self.data = os.path.join(base, "data")
        self.log = os.path.join(base, "postgresql.log")
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def run(self, *cmd: str, timeout: float = 120) -> None:
        # cwd=/: the caller's folder may be one the postgres user cannot enter
        subprocess.run(
            as_postgres([os.path.join(PGBIN, cmd[0]), *cmd[1:]]),
            check=True,
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
        self.run(
            "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "max_connections": "40",
            "shared_buffers": "32MB",
            "timezone": "'UTC'",
        }
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        conf_path = os.path.join(self.data, "postgresql.auto.conf")
        with open(conf_path, "a") as f:
            f.write(conf)

    def start(self) -> None:
        self.run("pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "stop", "-D", self.data, "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        result = subprocess.run(
            as_postgres([os.path.join(PGBIN, "pg_ctl"), "status", "-D", self.data]),
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0


@pytest.fixture(scope="module")
def cluster():
    if not all(os.access(os.path.join(PGBIN, p), os.X_OK) for p in ("initdb", "pg_ctl")):
        pytest.skip(f"no PostgreSQL binaries in {PGBIN} (set PGSCHED_PGBIN)")
    base = tempfile.mkdtemp(prefix="pgsched-outage-", dir="/var/tmp")
    os.chmod(base, 0o755)
    pg = PrivateCluster(base)
    try:
        pg.init()
        pg.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgsched")
        pg.dsn = pg.dsn.replace("dbname=postgres", "dbname=pgsched")
        migrate(pg.dsn)
        yield pg
    finally:
        if os.path.exists(os.path.join(pg.data, "postmaster.pid")) and pg.running():
            pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def pgsched_serve(dsn: str, folder: str):
    """`pgsched serve` in a process of its own; yields (url, process)."""
    port = free_port()
    config = os.path.join(folder, "pgsched.toml")
    with open(config, "w") as f:
        f.write(
            f'db = "{dsn}"\npool_min_size = 2\npool_max_size = 4\npool_timeout = {POOL_TIMEOUT}\n'
        )
    log = open(os.path.join(folder, "serve.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched.cli", "serve", "--port", str(port), "--db", dsn],
        env={**os.environ, "PGSCHED_CONFIG": config},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "site-map", timeout=2).raise_for_status()
                break
            except requests.ConnectionError:
                assert proc.poll() is None, f"pgsched serve exited: {read(log.name)}"
                assert time.monotonic() < deadline, "pgsched serve did not start"
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-3000:]


@dataclasses.dataclass
class Load:
    """What the load threads saw."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    acknowledged_urls: list[str] = dataclasses.field(default_factory=list)
    acknowledged_tasks: list[str] = dataclasses.field(default_factory=list)
    writer_errors: list[str] = dataclasses.field(default_factory=list)
    longest_write: float = 0.0
    calls: int = 0
    # the probe: (start, duration, outcome) with outcome "ok", "503" or an error name
    probes: list[tuple[float, float, str]] = dataclasses.field(default_factory=list)

    def count(self) -> int:
        with self.lock:
            self.calls += 1
            return self.calls


def writer(url: str, load: Load, kind: str, lister_id) -> None:
    client = RemoteScheduler(url, timeout=60)  # default retries: 5 attempts
    try:
        for i in range(MAX_CALLS):
            if load.stop.is_set():
                return
            name = f"{kind}-{i}"
            start = time.monotonic()
            try:
                if kind == "origin":
                    client.record_listed_origins(
                        [
                            ListedOrigin(
                                lister_id=lister_id,
                                url=f"https://o.example/{name}",
                                visit_type="git",
                            )
                        ]
                    )
                else:
                    client.create_tasks(
                        [Task(type="load-git", arguments=args(name), next_run=at())]
                    )
            except Exception as e:  # counted, and fails the test
                with load.lock:
                    load.writer_errors.append(f"{name}: {type(e).__name__}: {e}")
            else:
                with load.lock:
                    (
                        load.acknowledged_urls if kind == "origin" else load.acknowledged_tasks
                    ).append(name)
            finally:
                load.count()
                with load.lock:
                    load.longest_write = max(load.longest_write, time.monotonic() - start)
            time.sleep(0.05)
    finally:
        client.close()


def probe(url: str, load: Load, t0: float) -> None:
    client = RemoteScheduler(url, timeout=60, enable_requests_retry=False)
    try:
        for _ in range(MAX_CALLS):
            if load.stop.is_set():
                return
            start = time.monotonic()
            try:
                client.get_listers()
                outcome = "ok"
            except TransientRemoteException as e:
                outcome = str(e.response.status_code)
            except Exception as e:
                outcome = type(e).__name__
            load.count()
            with load.lock:
                load.probes.append((start - t0, time.monotonic() - start, outcome))
            time.sleep(0.05)
    finally:
        client.close()


class RetryLog(logging.Handler):
    """Counts the client's "retrying" log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.retries = 0

    def emit(self, record):
        if "retrying in" in record.getMessage():
            self.retries += 1


@pytest.mark.slow
def test_outages_answer_503_quickly_and_lose_no_acknowledged_write(cluster):
    from pgsched import get_scheduler

    with get_scheduler("postgresql", db=cluster.dsn) as s:
        s.create_task_type(task_type())
        lister = s.get_or_create_lister("outage")

    retry_log = RetryLog()
    client_logger = logging.getLogger("pgsched.api.client")
    client_logger.addHandler(retry_log)
    old_level = client_logger.level
    client_logger.setLevel(logging.INFO)
    load = Load()
    outages = []
    try:
        with pgsched_serve(cluster.dsn, cluster.base) as (url, proc):
            t0 = time.monotonic()
            threads = [
                threading.Thread(target=writer, args=(url, load, "origin", lister.id)),
                threading.Thread(target=writer, args=(url, load, "task", lister.id)),
                threading.Thread(target=probe, args=(url, load, t0)),
            ]
            for t in threads:
                t.start()
            try:
                time.sleep(1.5)
                for mode in ("fast", "immediate"):
                    down = time.monotonic()
                    cluster.stop(mode)
                    time.sleep(OUTAGE)
                    cluster.start()
                    up = time.monotonic()
                    outages.append((mode, down - t0, up - t0, up - down))
                    # until the probe has succeeded again, then a little more load
                    deadline = up + 30
                    while time.monotonic() < deadline:
                        with load.lock:
                            back = [p for p in load.probes if p[0] > up - t0 and p[2] == "ok"]
                        if back:
                            break
                        time.sleep(0.1)
                    time.sleep(1.0)
            finally:
                load.stop.set()
                for t in threads:
                    t.join(timeout=120)
            assert not any(t.is_alive() for t in threads), "a load thread hung"
            # the same process serves on
            assert proc.poll() is None
            final = RemoteScheduler(url, timeout=30, enable_requests_retry=False)
            assert final.get_lister("outage").id == lister.id
            final.close()
    finally:
        client_logger.removeHandler(retry_log)
        client_logger.setLevel(old_level)

    # --- while down: 503, quickly --------------------------------------------
    report = []
    for mode, down, up, length in outages:
        during = [p for p in load.probes if down <= p[0] <= up]
        unavailable = [p for p in during if p[2] == "503"]
        assert unavailable, f"no 503 while the database was down ({mode}): {during}"
        assert all(p[2] in ("503", "ok") for p in during), during
        slowest = max(p[1] for p in unavailable)
        assert slowest < QUICK, f"a 503 took {slowest:.2f} s"
        recovered = min(
            (p[0] + p[1] for p in load.probes if p[0] > up and p[2] == "ok"), default=None
        )
        assert recovered is not None, f"the server did not serve again after the {mode} outage"
        report.append(
            f"{mode} stop: down {length:.1f} s, {len(during)} probe calls meanwhile, "
            f"{len(unavailable)} answered 503 (slowest {slowest:.2f} s), served again "
            f"{recovered - up:.2f} s after PostgreSQL was up"
        )
    # every probe answer was either a success or a 503 (never a hang or another error)
    assert {p[2] for p in load.probes} <= {"ok", "503"}, {p[2] for p in load.probes}
    assert max(p[1] for p in load.probes) < QUICK

    # --- the writers: retried transparently, nothing acknowledged was lost -----
    # The client's retry budget: each attempt answered 503 after POOL_TIMEOUT,
    # then waits of retry_wait * 2**n between attempts.
    attempts, wait = RemoteScheduler.retry_attempts, RemoteScheduler.retry_wait
    budget = attempts * POOL_TIMEOUT + sum(wait * 2**n for n in range(attempts - 1))
    assert max(o[3] for o in outages) < budget  # the scenario: shorter than the budget
    assert load.writer_errors == []
    assert retry_log.retries > 0, "the outages were not seen by the writers"
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        stored_urls = {r[0] for r in conn.execute("SELECT url FROM scheduler.listed_origins")}
        stored_tasks = {
            r[0] for r in conn.execute("SELECT arguments->'args'->>0 FROM scheduler.task")
        }
    lost = [u for u in load.acknowledged_urls if f"https://o.example/{u}" not in stored_urls]
    lost += [t for t in load.acknowledged_tasks if t not in stored_tasks]
    assert lost == []
    writes = len(load.acknowledged_urls) + len(load.acknowledged_tasks)
    assert writes > 20
    probes_503 = sum(p[2] == "503" for p in load.probes)
    print(
        "\noutage figures: "
        + "; ".join(report)
        + f"; client retry budget {budget:.1f} s; {load.calls} calls in all, "
        f"{probes_503} 503s seen by the probe, {retry_log.retries} client retries, "
        f"longest write {load.longest_write:.2f} s, 0 writer errors, "
        f"{writes} acknowledged writes checked, {len(lost)} lost"
    )
