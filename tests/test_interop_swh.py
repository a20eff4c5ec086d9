"""Interoperability with the reference implementation, swh.scheduler 3.1.0.

- pgsched's client against the reference server (its Flask app under
  gunicorn, on a database initialised with the reference's own schema);
- the reference client against pgsched's server.

Needs ``swh.scheduler`` installed (test extra) and the test PostgreSQL
server of tests/conftest.py; the two databases are created and dropped here.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import requests

pytest.importorskip("swh.scheduler")
psycopg = pytest.importorskip("psycopg")

from pgsched import exc, model  # noqa: E402
from pgsched.client import RemoteScheduler  # noqa: E402

pytestmark = pytest.mark.interop

UTC = datetime.UTC
NOW = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def admin_dsn(pgsched_server) -> str:
    """The test server's maintenance database (conftest's server settings)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=pgsched_server.host,
        port=pgsched_server.port,
        user=pgsched_server.user,
        password=pgsched_server.password,
        dbname="postgres",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def swh_db(admin_dsn):
    """A fresh database initialised by the reference's own schema set-up."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from swh.core.db.db_utils import initialize_database_for_module
    from swh.scheduler.backend import SchedulerBackend

    admin = admin_dsn
    name = f"pgsched_swh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    try:
        initialize_database_for_module(
            modname="scheduler", version=SchedulerBackend.current_version, **params
        )
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


@pytest.fixture(scope="module")
def swh_server(swh_db, tmp_path_factory):
    """The reference RPC server (gunicorn, one worker) on a free loopback port."""
    config = tmp_path_factory.mktemp("swh") / "scheduler.yml"
    dsn = swh_db.replace("'", "\\'")
    config.write_text(f"scheduler:\n  cls: postgresql\n  db: '{dsn}'\n")
    port = _free_port()
    log = config.with_name("gunicorn.log")
    env = {**os.environ, "SWH_CONFIG_FILENAME": str(config)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "2",
                "swh.scheduler.api.server:make_app_from_configfile()",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"reference server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture
def on_swh(swh_server):
    client = RemoteScheduler(swh_server, timeout=30)
    yield client
    client.close()


# --- pgsched's client against the reference server ----------------------------------


def test_task_types_and_tasks_through_reference_server(on_swh):
    task_type = model.TaskType(
        type=f"load-git-{uuid.uuid4().hex[:6]}",
        description="Update a git repository",
        backend_name="swh.loader.git.tasks.UpdateGitRepository",
        default_interval=datetime.timedelta(days=64),
        min_interval=datetime.timedelta(hours=12),
        max_interval=datetime.timedelta(days=64),
        backoff_factor=2.0,
        max_queue_length=None,
        num_retries=7,
        retry_delay=datetime.timedelta(hours=2),
    )
    assert on_swh.create_task_type(task_type) is None
    assert on_swh.get_task_type(task_type.type) == task_type
    assert task_type in on_swh.get_task_types()
    assert on_swh.get_task_type("no-such-type") is None

    task = model.Task(
        type=task_type.type,
        arguments=model.TaskArguments(args=["a", 1], kwargs={"url": "https://ex.org/ü.git"}),
        next_run=NOW,
        policy="oneshot",
        priority="high",
    )
    (created,) = on_swh.create_tasks([task])
    assert isinstance(created, model.Task)
    assert isinstance(created.id, int)
    assert created.evolve(id=None, retries_left=None, current_interval=None) == task
    assert created.current_interval == task_type.default_interval
    assert on_swh.get_tasks([created.id]) == [created]

    ready = on_swh.peek_ready_priority_tasks(
        task_type.type, timestamp=NOW + datetime.timedelta(seconds=1)
    )
    assert ready == [created]

    # The reference's schedule_task_run cannot store its metadata (a dict given to
    # psycopg without a Jsonb wrapper): its batch form is used instead.
    run = model.TaskRun(task=created.id, backend_id="backend-1", scheduled=NOW, metadata={"k": "v"})
    assert on_swh.mass_schedule_task_runs([run]) is None
    (run,) = on_swh.get_task_runs([created.id])
    assert isinstance(run, model.TaskRun)
    assert (run.task, run.backend_id, run.scheduled, run.metadata, run.status) == (
        created.id,
        "backend-1",
        NOW,
        {"k": "v"},
        "scheduled",
    )
    assert on_swh.get_tasks([created.id])[0].status == "next_run_scheduled"
    started = on_swh.start_task_run("backend-1", timestamp=NOW + datetime.timedelta(minutes=1))
    assert started.status == "started"
    assert started.started == NOW + datetime.timedelta(minutes=1)
    ended = on_swh.end_task_run("backend-1", "eventful", {"x": 2})
    assert ended.status == "eventful"
    assert ended.metadata == {"k": "v", "x": 2}
    assert on_swh.get_task_runs([created.id]) == [ended]
    assert on_swh.start_task_run("no-such-backend-id") is None


def test_listers_origins_and_errors_through_reference_server(on_swh):
    name = f"lister-{uuid.uuid4().hex[:6]}"
    lister = on_swh.get_or_create_lister(name, "main", first_visits_queue_prefix="first")
    assert isinstance(lister, model.Lister)
    assert isinstance(lister.id, uuid.UUID)
    assert on_swh.get_lister(name, "main") == lister
    assert on_swh.get_listers_by_id([str(lister.id)]) == [lister]

    updated = on_swh.update_lister(lister.evolve(current_state={"page": 3}))
    assert updated.current_state == {"page": 3}
    assert updated.updated > lister.updated
    with pytest.raises(exc.StaleData):
        on_swh.update_lister(lister.evolve(current_state={"page": 4}))

    origins = [
        model.ListedOrigin(
            lister_id=lister.id,
            url=f"https://example.org/{i}.git",
            visit_type="git",
            extra_loader_arguments={"i": i},
            last_update=NOW - datetime.timedelta(days=i),
        )
        for i in range(5)
    ]
    recorded = on_swh.record_listed_origins(origins)
    assert [o.evolve(first_seen=None, last_seen=None) for o in recorded] == origins
    assert on_swh.get_visit_types_for_listed_origins(lister) == ["git"]

    page = on_swh.get_listed_origins(lister_id=lister.id, limit=3)
    assert isinstance(page, model.PaginatedListedOriginList)
    assert page.results == recorded[:3]
    assert isinstance(page.next_page_token, tuple)
    rest = on_swh.get_listed_origins(lister_id=lister.id, limit=3, page_token=page.next_page_token)
    assert rest.results == recorded[3:]
    assert rest.next_page_token is None

    with pytest.raises(exc.UnknownPolicy):
        on_swh.grab_next_visits("git", 2, policy="no-such-policy")
    grabbed = on_swh.grab_next_visits(
        "git",
        2,
        policy="never_visited_oldest_update_first",
        lister_uuid=str(lister.id),
        timestamp=NOW,
    )
    assert [o.url for o in grabbed] == [origins[4].url, origins[3].url]

    stats = model.OriginVisitStats(
        url=origins[0].url,
        visit_type="git",
        last_successful=NOW,
        last_visit=NOW,
        last_visit_status=model.LastVisitStatus.successful,
        last_snapshot=bytes(range(20)),
        next_visit_queue_position=2**40,
        next_position_offset=5,
        successive_visits=2,
    )
    assert on_swh.origin_visit_stats_upsert([stats]) is None
    (back,) = on_swh.origin_visit_stats_get([(origins[0].url, "git")])
    assert back == stats

    on_swh.visit_scheduler_queue_position_set("git", 2**40)
    assert on_swh.visit_scheduler_queue_position_get()["git"] == 2**40

    metrics = on_swh.update_metrics(lister_id=lister.id, timestamp=NOW)
    assert [(m.lister_id, m.visit_type, m.origins_known) for m in metrics] == [
        (lister.id, "git", 5)
    ]
    assert all(isinstance(m, model.SchedulerMetrics) for m in metrics)
    assert on_swh.get_metrics(lister_id=lister.id) == metrics


# --- the reference client against pgsched's server -----------------------------------


@pytest.fixture(scope="module")
def pgsched_db(admin_dsn):
    """A fresh pgsched database, migrated."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pgsched.migrate import migrate

    admin = admin_dsn
    name = f"pgsched_rpc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    dsn = make_conninfo(**params)
    try:
        migrate(dsn)
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


@pytest.fixture(scope="module")
def local(pgsched_db):
    """pgsched's in-process backend on that database."""
    import pgsched

    backend = pgsched.get_scheduler("postgresql", db=pgsched_db)
    yield backend
    close = getattr(backend, "close", None)
    if close:
        close()


@pytest.fixture(scope="module")
def pgsched_url(pgsched_db, local):
    from pgsched.api.server import background_server, make_app

    app = make_app({"db": pgsched_db})
    with background_server(app) as url:
        yield url
    app.close()


@pytest.fixture(scope="module")
def swh_client(pgsched_url):
    from swh.scheduler.api.client import RemoteScheduler as SwhRemoteScheduler

    return SwhRemoteScheduler(pgsched_url, timeout=30)


def plain(value):
    """A model-independent view of a value, to compare the two implementations' models."""
    import enum

    import attr

    if attr.has(type(value)):
        fields = {a.name: plain(getattr(value, a.name)) for a in attr.fields(type(value))}
        return (type(value).__name__, fields)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(swh_value, pgsched_value):
    return plain(swh_value) == plain(pgsched_value)


def test_reference_client_task_types_tasks_and_runs(swh_client, local):
    from swh.scheduler import model as swh

    task_type = swh.TaskType(
        type="interop-git",
        description="Update a git repository",
        backend_name="swh.loader.git.tasks.UpdateGitRepository",
        default_interval=datetime.timedelta(days=1),
        min_interval=datetime.timedelta(hours=12),
        max_interval=datetime.timedelta(days=64),
        backoff_factor=2.0,
        max_queue_length=None,
        num_retries=3,
        retry_delay=datetime.timedelta(hours=2),
    )
    assert swh_client.create_task_type(task_type) is None
    assert swh_client.get_task_type("interop-git") == task_type
    assert task_type in swh_client.get_task_types()
    assert same(swh_client.get_task_types(), local.get_task_types())

    tasks = [
        swh.Task(
            type="interop-git",
            arguments=swh.TaskArguments(args=[i], kwargs={"url": f"https://ex.org/{i}ü"}),
            next_run=NOW + datetime.timedelta(minutes=i),
            policy="oneshot" if i % 2 else "recurring",
            priority="high" if i == 3 else None,
        )
        for i in range(4)
    ]
    created = swh_client.create_tasks(tasks)
    assert all(isinstance(t, swh.Task) and isinstance(t.id, int) for t in created)
    assert [t.evolve(id=None, retries_left=None, current_interval=None) for t in created] == tasks
    ids = [t.id for t in created]
    assert swh_client.get_tasks(ids) == created
    assert same(created, local.get_tasks(ids))
    assert same(
        swh_client.search_tasks(task_type="interop-git"),
        local.search_tasks(task_type="interop-git"),
    )

    later = NOW + datetime.timedelta(hours=1)
    assert swh_client.peek_ready_tasks("interop-git", timestamp=later) == created[:3]
    assert swh_client.peek_ready_priority_tasks("interop-git", timestamp=later) == created[3:]
    grabbed = swh_client.grab_ready_tasks("interop-git", timestamp=later, num_tasks=2)
    assert [t.id for t in grabbed] == ids[:2]
    assert {t.status for t in grabbed} == {"next_run_scheduled"}

    run = swh_client.schedule_task_run(ids[0], "interop-1", {"k": "v"}, timestamp=NOW)
    assert isinstance(run, swh.TaskRun)
    assert (run.task, run.backend_id, run.scheduled, run.metadata, run.status) == (
        ids[0],
        "interop-1",
        NOW,
        {"k": "v"},
        "scheduled",
    )
    swh_client.mass_schedule_task_runs(
        [swh.TaskRun(task=ids[1], backend_id="interop-2", scheduled=NOW, metadata={})]
    )
    started = swh_client.start_task_run("interop-1", {"w": 1}, timestamp=later)
    assert (started.status, started.started, started.metadata) == (
        "started",
        later,
        {"k": "v", "w": 1},
    )
    ended = swh_client.end_task_run("interop-1", "eventful", timestamp=later)
    assert (ended.status, ended.ended) == ("eventful", later)
    assert swh_client.start_task_run("interop-none") is None
    assert same(swh_client.get_task_runs(ids), local.get_task_runs(ids))

    swh_client.set_status_tasks([ids[2]], status="disabled")
    swh_client.disable_tasks([ids[3]])
    assert [t.status for t in swh_client.get_tasks(ids[2:])] == ["disabled", "disabled"]

    page = swh_client.filter_task_to_archive(
        (NOW - datetime.timedelta(days=1)).isoformat(),
        (later + datetime.timedelta(days=1)).isoformat(),
    )
    assert same(
        page,
        local.filter_task_to_archive(
            (NOW - datetime.timedelta(days=1)).isoformat(),
            (later + datetime.timedelta(days=1)).isoformat(),
        ),
    )


def test_reference_client_listers_origins_visits_and_metrics(swh_client, local):
    from swh.scheduler import exc as swh_exc
    from swh.scheduler import model as swh

    lister = swh_client.get_or_create_lister("interop", "main", first_visits_queue_prefix="first")
    assert isinstance(lister, swh.Lister)
    assert swh_client.get_lister("interop", "main") == lister
    assert same(lister, local.get_lister("interop", "main"))
    assert swh_client.get_listers_by_id([str(lister.id)]) == [lister]

    updated = swh_client.update_lister(
        lister.evolve(current_state={"page": 1}, last_listing_finished_at=NOW)
    )
    assert updated.current_state == {"page": 1}
    with pytest.raises(swh_exc.StaleData):
        swh_client.update_lister(lister.evolve(current_state={"page": 2}))
    assert same(swh_client.get_listers(), local.get_listers())
    assert swh_client.get_listers(with_first_visits_to_schedule=True) == [updated]

    origins = [
        swh.ListedOrigin(
            lister_id=lister.id,
            url=f"https://example.org/r{i}-é.git",
            visit_type="git",
            extra_loader_arguments={"i": i},
            last_update=(NOW - datetime.timedelta(days=i)) if i < 6 else None,
            is_fork=bool(i % 2),
            forked_from_url="https://example.org/up.git" if i % 2 else None,
        )
        for i in range(8)
    ]
    recorded = swh_client.record_listed_origins(origins)
    assert all(isinstance(o, swh.ListedOrigin) for o in recorded)
    assert sorted(o.evolve(first_seen=None, last_seen=None) for o in recorded) == sorted(origins)
    assert swh_client.get_visit_types_for_listed_origins(updated) == ["git"]

    seen, token = [], None
    while True:
        page = swh_client.get_listed_origins(lister_id=lister.id, limit=3, page_token=token)
        seen += page.results
        token = page.next_page_token
        if token is None:
            break
    assert sorted(o.url for o in seen) == sorted(o.url for o in origins)
    assert same(
        swh_client.get_listed_origins(lister_id=lister.id).results,
        local.get_listed_origins(lister_id=lister.id).results,
    )

    stats = [
        swh.OriginVisitStats(
            url=origins[i].url,
            visit_type="git",
            last_successful=NOW - datetime.timedelta(days=30),
            last_visit=NOW - datetime.timedelta(days=30),
            last_visit_status=swh.LastVisitStatus.successful,
            last_snapshot=bytes([i]) * 20,
            next_visit_queue_position=None,
        )
        for i in (0, 1)
    ]
    swh_client.origin_visit_stats_upsert(stats)
    back = swh_client.origin_visit_stats_get([(s.url, "git") for s in stats])
    assert sorted(back, key=lambda s: s.url) == sorted(stats, key=lambda s: s.url)

    with pytest.raises(swh_exc.UnknownPolicy):
        swh_client.grab_next_visits("git", 2, policy="no-such-policy")

    policies = [
        "oldest_scheduled_first",
        "never_visited_oldest_update_first",
        "already_visited_order_by_lag",
        "origins_without_last_update",
        "first_visits_after_listing",
    ]
    grabbed_urls = []
    for i, policy in enumerate(policies):
        kwargs = {"lister_uuid": str(lister.id)} if policy == "first_visits_after_listing" else {}
        grabbed = swh_client.grab_next_visits(
            "git", 1, policy=policy, timestamp=NOW + datetime.timedelta(seconds=i), **kwargs
        )
        assert all(isinstance(o, swh.ListedOrigin) for o in grabbed), policy
        assert len(grabbed) <= 1
        grabbed_urls += [o.url for o in grabbed]
    assert grabbed_urls, "no policy returned anything"
    assert len(set(grabbed_urls)) == len(grabbed_urls)
    stats_after = swh_client.origin_visit_stats_get([(u, "git") for u in grabbed_urls])
    assert all(s.last_scheduled is not None for s in stats_after)

    swh_client.visit_scheduler_queue_position_set("git", 2**40)
    assert (
        swh_client.visit_scheduler_queue_position_get()
        == local.visit_scheduler_queue_position_get()
    )

    metrics = swh_client.update_metrics(lister_id=lister.id, timestamp=NOW)
    assert all(isinstance(m, swh.SchedulerMetrics) for m in metrics)
    assert [(m.lister_id, m.visit_type, m.origins_known, m.origins_enabled) for m in metrics] == [
        (lister.id, "git", 8, 8)
    ]
    assert swh_client.get_metrics(lister_id=lister.id) == metrics
    assert same(metrics, local.get_metrics(lister_id=lister.id))


def test_reference_client_site_map_and_bad_requests(pgsched_url):
    from swh.core.api import RemoteException as SwhRemoteException
    from swh.scheduler.api.client import RemoteScheduler as SwhRemoteScheduler

    site_map = requests.get(pgsched_url + "site-map", timeout=10).json()
    assert len(site_map) == 34
    client = SwhRemoteScheduler(pgsched_url, timeout=10)
    with pytest.raises(SwhRemoteException) as info:
        client._post("task/get", {"task_ids": [1], "bogus": 2})
    assert info.value.response.status_code == 400
    assert "bogus" in info.value.args[0]["message"]
