"""The SQL functions called directly, as a DBA would from psql."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsched.migrate import migrate, status

UTC = datetime.UTC


@pytest.fixture
def db(dsn):
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET timezone TO 'UTC'")
        yield conn


def test_every_function_has_a_comment(db):
    rows = db.execute(
        """
        SELECT p.oid::regprocedure::text AS fn, obj_description(p.oid, 'pg_proc') AS doc
        FROM pg_proc AS p
        WHERE p.pronamespace = 'scheduler'::regnamespace
        """
    ).fetchall()
    assert len(rows) >= 40
    assert [r["fn"] for r in rows if not r["doc"]] == []


def test_interface_methods_have_functions(db):
    names = {
        r["proname"]
        for r in db.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'scheduler'::regnamespace"
        )
    }
    for fn in (
        "create_task_type",
        "get_task_types",
        "create_tasks",
        "set_status_tasks",
        "search_tasks",
        "get_tasks",
        "peek_ready_tasks",
        "grab_ready_tasks",
        "peek_ready_priority_tasks",
        "grab_ready_priority_tasks",
        "schedule_task_runs",
        "start_task_run",
        "end_task_run",
        "get_task_runs",
        "filter_task_to_archive",
        "delete_archived_tasks",
        "get_listers",
        "get_or_create_lister",
        "update_lister",
        "get_visit_types_for_listed_origins",
        "record_listed_origins",
        "get_listed_origins",
        "grab_next_visits",
        "origin_visit_stats_upsert",
        "origin_visit_stats_get",
        "visit_scheduler_queue_position_get",
        "visit_scheduler_queue_position_set",
        "update_metrics",
        "get_metrics",
    ):
        assert fn in names


def test_dba_session(db):
    """A psql session: a lister, a listing, visits chosen by named arguments."""
    lister = db.execute("SELECT * FROM scheduler.get_or_create_lister(name => 'pypi')").fetchone()
    assert lister["instance_name"] == ""
    stored = db.execute(
        """
        SELECT * FROM scheduler.record_listed_origins(
            lister_ids => array_fill(%s::uuid, ARRAY[3]),
            urls => ARRAY['https://pypi.org/project/a/', 'https://pypi.org/project/b/',
                          'https://pypi.org/project/c/'],
            visit_types => ARRAY['pypi', 'pypi', 'pypi'],
            last_updates => ARRAY['2024-01-01', '2023-01-01', NULL]::timestamptz[])
        """,
        [lister["id"]],
    ).fetchall()
    assert [r["url"] for r in stored] == [
        "https://pypi.org/project/a/",
        "https://pypi.org/project/b/",
        "https://pypi.org/project/c/",
    ]
    chosen = db.execute(
        """
        SELECT url FROM scheduler.grab_next_visits(
            visit_type => 'pypi', count => 10, policy => 'never_visited_oldest_update_first',
            ts => '2026-01-01 00:00+00')
        """
    ).fetchall()
    assert [r["url"] for r in chosen] == [
        "https://pypi.org/project/b/",
        "https://pypi.org/project/a/",
    ]
    stats = db.execute(
        "SELECT url, last_scheduled FROM scheduler.origin_visit_stats ORDER BY url"
    ).fetchall()
    assert [s["last_scheduled"] for s in stats] == [datetime.datetime(2026, 1, 1, tzinfo=UTC)] * 2
    # the copy in listed_origins follows the statistics
    copies = db.execute(
        "SELECT count(*) AS n FROM scheduler.listed_origins WHERE last_scheduled IS NOT NULL"
    ).fetchone()
    assert copies["n"] == 2
    metrics = db.execute("SELECT * FROM scheduler.update_metrics()").fetchall()
    assert [(m["origins_known"], m["origins_never_visited"]) for m in metrics] == [(3, 3)]


def test_dba_task_cycle(db):
    db.execute(
        """
        SELECT scheduler.create_task_type(
            type => 'list-npm', description => 'List npm', backend_name => 'lister.npm',
            default_interval => '1 day', backoff_factor => 2, max_interval => '4 days')
        """
    )
    (task,) = db.execute(
        """
        SELECT * FROM scheduler.create_tasks(
            types => ARRAY['list-npm'],
            arguments => ARRAY['{"args": [], "kwargs": {"page": 1}}'::jsonb],
            next_runs => ARRAY['2026-01-01 00:00+00'::timestamptz])
        """
    ).fetchall()
    assert task["current_interval"] == datetime.timedelta(days=1)
    grabbed = db.execute(
        "SELECT * FROM scheduler.grab_ready_tasks(task_type => 'list-npm', ts => '2026-01-02Z')"
    ).fetchall()
    assert [g["id"] for g in grabbed] == [task["id"]]
    db.execute(
        "SELECT scheduler.schedule_task_runs(ARRAY[%s]::bigint[], ARRAY['celery-1'])", [task["id"]]
    )
    db.execute("SELECT scheduler.start_task_run('celery-1', ts => '2026-01-02 01:00Z')")
    (run,) = db.execute(
        "SELECT * FROM scheduler.end_task_run('celery-1', 'uneventful', ts => '2026-01-02 02:00Z')"
    ).fetchall()
    assert run["status"] == "uneventful"
    after = db.execute("SELECT * FROM scheduler.task WHERE id = %s", [task["id"]]).fetchone()
    assert after["current_interval"] == datetime.timedelta(days=2)
    assert after["next_run"] == datetime.datetime(2026, 1, 4, 2, 0, tzinfo=UTC)
    assert after["status"] == "next_run_not_scheduled"


def test_backoff_interval_function(db):
    def backoff(current, factor, lo, hi, eventful):
        return db.execute(
            "SELECT scheduler.backoff_interval(%s::interval, %s, %s::interval, %s::interval, %s)"
            " AS i",
            [current, factor, lo, hi, eventful],
        ).fetchone()["i"]

    assert backoff("8 days", 2, "1 day", "32 days", True) == datetime.timedelta(days=4)
    assert backoff("8 days", 2, "1 day", "32 days", False) == datetime.timedelta(days=16)
    assert backoff("8 days", 2, "6 days", "32 days", True) == datetime.timedelta(days=6)
    assert backoff("8 days", 2, "1 day", "10 days", False) == datetime.timedelta(days=10)
    assert backoff("8 days", None, None, None, False) == datetime.timedelta(days=8)


def test_cooldown_function(db):
    def passed(last_scheduled, last_visit, status, cooldowns):
        return db.execute(
            """
            SELECT scheduler.visit_cooldown_passed(
                %s, %s, %s::scheduler.last_visit_status, '2026-01-10Z',
                %s, %s, %s, %s) AS ok
            """,
            [last_scheduled, last_visit, status, *cooldowns],
        ).fetchone()["ok"]

    default = ["12 hours", "7 days", "14 days", "31 days"]
    assert passed(None, None, None, default) is True
    assert passed("2026-01-09 18:00Z", "2026-01-09 19:00Z", "successful", default) is False
    assert passed("2026-01-09 06:00Z", "2026-01-09 07:00Z", "successful", default) is True
    assert passed("2026-01-08Z", None, None, default) is False  # scheduled, not visited
    assert passed("2026-01-08Z", None, None, ["12 hours", None, None, None]) is True
    assert passed("2026-01-01Z", "2026-01-02Z", "failed", default) is False
    assert passed("2025-12-01Z", "2025-12-02Z", "failed", default) is True
    assert passed("2025-12-20Z", "2025-12-21Z", "not_found", default) is False


def test_errors_name_the_argument(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="count"):
        db.execute(
            "SELECT * FROM scheduler.grab_next_visits(visit_type => 'git', count => -1,"
            " policy => 'oldest_scheduled_first')"
        )
    with pytest.raises(psycopg.Error) as e:
        db.execute(
            "SELECT * FROM scheduler.grab_next_visits(visit_type => 'git', count => 1,"
            " policy => 'nope')"
        )
    assert e.value.sqlstate == "PGS02"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="num_tasks"):
        db.execute(
            "SELECT scheduler.create_task_type('t', 'd', 'b');"
            "SELECT * FROM scheduler.peek_ready_tasks('t', num_tasks => -3)"
        )


def test_migrate_twice_applies_nothing(dsn):
    assert migrate(dsn) == []
    assert all(state == "applied" for _, state in status(dsn))


def test_edited_migration_is_an_error(dsn, tmp_path, monkeypatch):
    import shutil

    from pgsched import migrate as m

    copy = tmp_path / "sql"
    shutil.copytree(m.sql_dir(), copy)
    first = sorted((copy / "migrations").glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    monkeypatch.setenv("PGSCHED_SQL_DIR", str(copy))
    with pytest.raises(m.MigrationError, match="edited"):
        m.migrate(dsn)


def test_unknown_newer_migration_refused(dsn):
    from pgsched import migrate as m

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO scheduler.schema_migration (name, checksum) VALUES ('9999_future', 'x')"
        )
    with pytest.raises(m.MigrationError, match="newer"):
        m.migrate(dsn)


def test_grab_plans_use_indexes(db):
    """The grab paths are index scans that stop early, not sorts of the table."""
    lister = db.execute("SELECT * FROM scheduler.get_or_create_lister('big')").fetchone()
    db.execute(
        """
        INSERT INTO scheduler.listed_origins (lister_id, url, url_digest, visit_type, last_update)
        SELECT %s, 'https://e/' || i, scheduler.url_digest('https://e/' || i), 'git',
               CASE WHEN i %% 2 = 0 THEN '2020-01-01Z'::timestamptz + i * interval '1 min' END
        FROM generate_series(1, 20000) AS i
        """,
        [lister["id"]],
    )
    db.execute("ANALYZE scheduler.listed_origins")
    plans = {}
    for policy, index in [
        ("oldest_scheduled_first", "listed_origins_oldest_scheduled_idx"),
        ("never_visited_oldest_update_first", "listed_origins_never_visited_idx"),
        ("already_visited_order_by_lag", "listed_origins_lag_idx"),
        ("origins_without_last_update", "listed_origins_without_update_idx"),
    ]:
        db.execute("LOAD 'auto_explain'")
        db.execute("SET auto_explain.log_min_duration = 0")
        db.execute("SET auto_explain.log_nested_statements = on")
        db.execute("SET client_min_messages = log")
        notices = []
        db.add_notice_handler(lambda d, n=notices: n.append(d.message_primary or ""))
        db.execute(
            "SELECT * FROM scheduler.grab_next_visits(visit_type => 'git', count => 100,"
            " policy => %s, ts => '2026-01-01Z')",
            [policy],
        )
        plan = "\n".join(notices)
        plans[policy] = plan
        assert index in plan, (policy, plan)
        db.execute("RESET client_min_messages")
    for policy, plan in plans.items():
        assert "Seq Scan on listed_origins" not in plan, (policy, plan)
        if policy != "oldest_scheduled_first":
            # the cooldowns are checked inside the index, not on fetched rows
            conditions = [line for line in plan.splitlines() if "Index Cond" in line]
            assert any("COALESCE(last_scheduled" in line for line in conditions), (policy, plan)


def test_least_privilege_roles(dsn, db):
    """The API role runs the functions but cannot touch the tables; read-only reads."""
    import os

    api, ro = f"pgsched_test_api_{os.getpid()}", f"pgsched_test_ro_{os.getpid()}"
    db.execute(f"DROP ROLE IF EXISTS {api}")
    db.execute(f"DROP ROLE IF EXISTS {ro}")
    db.execute(f"CREATE ROLE {api} LOGIN IN ROLE pgsched_api")
    db.execute(f"CREATE ROLE {ro} LOGIN IN ROLE pgsched_readonly")
    try:
        base = psycopg.conninfo.conninfo_to_dict(dsn)
        as_api = psycopg.conninfo.make_conninfo(**{**base, "user": api})
        as_ro = psycopg.conninfo.make_conninfo(**{**base, "user": ro})
        with psycopg.connect(as_api, autocommit=True) as conn:
            (lister_id,) = conn.execute(
                "SELECT id FROM scheduler.get_or_create_lister('via-api')"
            ).fetchone()
            assert lister_id is not None
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM scheduler.lister")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM scheduler.task")
        with psycopg.connect(as_ro, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM scheduler.lister").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM scheduler.get_listers()").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM scheduler.get_or_create_lister('nope')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE scheduler.lister SET name = 'x'")
    finally:
        db.execute(f"DROP ROLE IF EXISTS {api}")
        db.execute(f"DROP ROLE IF EXISTS {ro}")


def test_json_maps_must_be_objects(db):
    """A non-object map would make the row unreadable as a model: refused."""
    lister = db.execute("SELECT * FROM scheduler.get_or_create_lister('poison')").fetchone()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="extra_loader_arguments"):
        db.execute(
            """
            SELECT * FROM scheduler.record_listed_origins(
                lister_ids => ARRAY[%s, %s]::uuid[], urls => ARRAY['u1', 'u2'],
                visit_types => ARRAY['git', 'git'],
                extra_loader_arguments => ARRAY['"just a string"', '{}']::jsonb[])
            """,
            [lister["id"], lister["id"]],
        )
    assert db.execute("SELECT count(*) AS n FROM scheduler.listed_origins").fetchone()["n"] == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="current_state"):
        db.execute(
            "SELECT * FROM scheduler.update_lister(%s, %s, '[1, 2]'::jsonb)",
            [lister["id"], lister["updated"]],
        )


def test_paging_plans_use_the_page_index(db):
    """Every page, first or after a token, is an ordered index scan that stops early."""
    lister = db.execute("SELECT * FROM scheduler.get_or_create_lister('pages')").fetchone()
    db.execute(
        """
        INSERT INTO scheduler.listed_origins (lister_id, url, url_digest, visit_type)
        SELECT %s, u, scheduler.url_digest(u), 'git'
        FROM (SELECT 'https://e/' || i AS u FROM generate_series(1, 20000) AS i) AS g
        """,
        [lister["id"]],
    )
    db.execute("ANALYZE scheduler.listed_origins")
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET client_min_messages = log")
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    for token in [(None, None, None), (lister["id"], "https://e/5000", "git")]:
        for only_lister in (None, lister["id"]):
            notices.clear()
            rows = db.execute(
                """
                SELECT * FROM scheduler.get_listed_origins(
                    lister_id => %s, max_rows => 100, after_lister_id => %s,
                    after_url => %s, after_visit_type => %s)
                """,
                [only_lister, *token],
            ).fetchall()
            assert len(rows) == 100 and rows[-1]["has_more"] is True
            plan = "\n".join(notices)
            assert "listed_origins_page_idx" in plan, plan
            assert "Seq Scan on listed_origins" not in plan, plan
    db.execute("RESET client_min_messages")
