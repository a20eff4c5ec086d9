"""Task runs: scheduling, start, end outcomes (rescheduling), archive."""

from __future__ import annotations

import datetime

import pytest

from pgsched.model import Task, TaskRun
from utils import BAD_INPUT, args, at, task_type

DAY = datetime.timedelta(days=1)


def _task(scheduler, policy="recurring", **tt):
    scheduler.create_task_type(task_type(**tt))
    (t,) = scheduler.create_tasks(
        [Task(type="load-git", arguments=args("u"), next_run=at(), policy=policy)]
    )
    scheduler.grab_ready_tasks("load-git", timestamp=at(1))
    return t


def _run(scheduler, task, status, backend_id="job-1", end=None):
    scheduler.schedule_task_run(task.id, backend_id, timestamp=at(1))
    scheduler.start_task_run(backend_id, timestamp=at(2))
    run = scheduler.end_task_run(backend_id, status, timestamp=end or at(3))
    return run, scheduler.get_tasks([task.id])[0]


def test_schedule_start_end_metadata(scheduler):
    t = _task(scheduler)
    run = scheduler.schedule_task_run(t.id, "job-1", metadata={"a": 1, "b": 1}, timestamp=at(1))
    assert (run.task, run.backend_id, run.status, run.scheduled) == (
        t.id,
        "job-1",
        "scheduled",
        at(1),
    )
    assert run.metadata == {"a": 1, "b": 1}
    started = scheduler.start_task_run("job-1", metadata={"b": 2, "c": 3}, timestamp=at(2))
    assert started.id == run.id
    assert (started.status, started.started) == ("started", at(2))
    assert started.metadata == {"a": 1, "b": 2, "c": 3}
    ended = scheduler.end_task_run("job-1", "uneventful", metadata={"d": 4}, timestamp=at(3))
    assert (ended.status, ended.ended, ended.started) == ("uneventful", at(3), at(2))
    assert ended.metadata == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert scheduler.get_task_runs([t.id]) == [ended]


def test_schedule_default_metadata_and_unknown(scheduler):
    t = _task(scheduler)
    run = scheduler.schedule_task_run(t.id, "job-1")
    assert run.metadata == {}
    assert run.scheduled is not None
    assert scheduler.start_task_run("no-such-job") is None
    assert scheduler.end_task_run("no-such-job", "eventful") is None
    with pytest.raises(BAD_INPUT) as e:
        scheduler.schedule_task_run(999999, "job-2")
    assert "task_id" in str(e.value)


def test_mass_schedule_task_runs(scheduler):
    scheduler.create_task_type(task_type())
    tasks = scheduler.create_tasks(
        [Task(type="load-git", arguments=args(i), next_run=at()) for i in range(5)]
    )
    assert (
        scheduler.mass_schedule_task_runs(
            [
                TaskRun(task=t.id, backend_id=f"job-{t.id}", scheduled=at(1), metadata={"i": i})
                for i, t in enumerate(tasks)
            ]
        )
        is None
    )
    runs = scheduler.get_task_runs([t.id for t in tasks])
    assert [(r.task, r.backend_id, r.scheduled, r.status) for r in runs] == [
        (t.id, f"job-{t.id}", at(1), "scheduled") for t in tasks
    ]
    assert [r.metadata for r in runs] == [{"i": i} for i in range(5)]
    assert len(scheduler.get_task_runs([t.id for t in tasks], limit=2)) == 2


def test_metadata_nul_characters_removed(scheduler):
    t = _task(scheduler)
    run = scheduler.schedule_task_run(
        t.id, "job-nul", metadata={"log": "a\x00b", "k\x00": ["\x00"]}
    )
    assert run.metadata == {"log": "ab", "k": [""]}


def test_permfailed_disables(scheduler):
    t = _task(scheduler)
    _, task = _run(scheduler, t, "permfailed")
    assert task.status == "disabled"


@pytest.mark.parametrize("status", ["eventful", "uneventful"])
def test_oneshot_success_completes(scheduler, status):
    t = _task(scheduler, policy="oneshot")
    _, task = _run(scheduler, t, status)
    assert task.status == "completed"


def test_recurring_eventful_divides_interval(scheduler):
    t = _task(scheduler)  # 8 days, factor 2, within [12h, 32d]
    _, task = _run(scheduler, t, "eventful")
    assert task.current_interval == 4 * DAY
    assert task.next_run == at(3) + 4 * DAY
    assert task.status == "next_run_not_scheduled"
    assert task.retries_left == 2


def test_recurring_uneventful_multiplies_interval(scheduler):
    t = _task(scheduler)
    _, task = _run(scheduler, t, "uneventful")
    assert task.current_interval == 16 * DAY
    assert task.next_run == at(3) + 16 * DAY


def test_interval_clamped(scheduler):
    t = _task(scheduler, min_interval=6 * DAY, max_interval=10 * DAY)
    _, task = _run(scheduler, t, "eventful", "j1")
    assert task.current_interval == 6 * DAY
    _, task = _run(scheduler, t, "uneventful", "j2")
    assert task.current_interval == 10 * DAY  # 12 days clamped


def test_no_backoff_factor_keeps_interval(scheduler):
    t = _task(scheduler, backoff_factor=None)
    _, task = _run(scheduler, t, "eventful")
    assert task.current_interval == 8 * DAY


@pytest.mark.parametrize("status", ["failed", "lost"])
def test_failure_with_retries_left(scheduler, status):
    t = _task(scheduler)
    _, task = _run(scheduler, t, status)
    assert task.retries_left == 1
    assert task.next_run == at(3) + datetime.timedelta(minutes=30)
    assert task.status == "next_run_not_scheduled"
    assert task.current_interval == 8 * DAY


def test_failure_default_retry_delay_one_hour(scheduler):
    t = _task(scheduler, retry_delay=None)
    _, task = _run(scheduler, t, "failed")
    assert task.next_run == at(4)


def test_failure_without_retries_oneshot_disabled(scheduler):
    t = _task(scheduler, policy="oneshot", num_retries=0)
    _, task = _run(scheduler, t, "failed")
    assert task.status == "disabled"


def test_failure_without_retries_recurring_reschedules(scheduler):
    t = _task(scheduler, num_retries=1)
    _, task = _run(scheduler, t, "failed", "j1")
    assert task.retries_left == 0
    _, task = _run(scheduler, t, "lost", "j2", end=at(10))
    assert task.status == "next_run_not_scheduled"
    assert task.next_run == at(10) + 8 * DAY
    assert task.retries_left == 1  # reset to the type's num_retries


def test_success_resets_retries(scheduler):
    t = _task(scheduler)
    _run(scheduler, t, "failed", "j1")
    _, task = _run(scheduler, t, "uneventful", "j2")
    assert task.retries_left == 2


def test_end_twice_reschedules_once(scheduler):
    t = _task(scheduler)
    _run(scheduler, t, "eventful")
    scheduler.end_task_run("job-1", "eventful", timestamp=at(5))
    task = scheduler.get_tasks([t.id])[0]
    assert task.current_interval == 4 * DAY
    assert task.next_run == at(3) + 4 * DAY


def test_end_task_run_bad_status(scheduler):
    t = _task(scheduler)
    scheduler.schedule_task_run(t.id, "job-1")
    with pytest.raises(BAD_INPUT) as e:
        scheduler.end_task_run("job-1", "exploded")
    assert "status" in str(e.value)
    assert scheduler.get_task_runs([t.id])[0].status == "scheduled"


def _archive_setup(scheduler):
    scheduler.create_task_type(task_type())
    tasks = scheduler.create_tasks(
        [
            Task(type="load-git", arguments=args(i), next_run=at(), policy=p)
            for i, p in enumerate(["oneshot", "oneshot", "recurring", "recurring", "oneshot"])
        ]
    )
    # task 0: oneshot completed, two runs; task 1: oneshot disabled, never started;
    # task 2: recurring disabled; task 3: recurring active (not archived);
    # task 4: oneshot still pending (not archived)
    scheduler.schedule_task_run(tasks[0].id, "a1", timestamp=at(1))
    scheduler.start_task_run("a1", timestamp=at(2))
    scheduler.end_task_run("a1", "failed", timestamp=at(3))
    scheduler.schedule_task_run(tasks[0].id, "a2", timestamp=at(4))
    scheduler.start_task_run("a2", timestamp=at(5))
    scheduler.end_task_run("a2", "eventful", timestamp=at(6))
    scheduler.schedule_task_run(tasks[1].id, "b1", timestamp=at(1))
    scheduler.disable_tasks([tasks[1].id])
    scheduler.schedule_task_run(tasks[2].id, "c1", timestamp=at(1))
    scheduler.start_task_run("c1", timestamp=at(1.5))
    scheduler.disable_tasks([tasks[2].id])
    scheduler.schedule_task_run(tasks[3].id, "d1", timestamp=at(1))
    scheduler.start_task_run("d1", timestamp=at(2))
    scheduler.schedule_task_run(tasks[4].id, "e1", timestamp=at(1))
    scheduler.start_task_run("e1", timestamp=at(2))
    scheduler.start_task_run("c1", timestamp=at(40))  # c1 restarted: now outside the window
    scheduler.schedule_task_run(tasks[2].id, "c2", timestamp=at(2))
    scheduler.start_task_run("c2", timestamp=at(2))
    return tasks


def test_filter_task_to_archive_pages(scheduler):
    tasks = _archive_setup(scheduler)
    after, before = at(0).isoformat(), at(24).isoformat()
    expected = [
        (tasks[0].id, "a1"),
        (tasks[0].id, "a2"),
        (tasks[1].id, "b1"),
        (tasks[2].id, "c2"),
    ]
    whole = scheduler.filter_task_to_archive(after, before, limit=100)
    assert "next_page_token" not in whole
    assert [(e["task_id"], e["backend_id"]) for e in whole["tasks"]] == expected
    first = whole["tasks"][0]
    assert first["task_policy"] == "oneshot" and first["task_status"] == "completed"
    assert first["type"] == "load-git" and first["arguments"] == {"args": [0], "kwargs": {}}
    assert first["task_run_status"] == "failed"
    assert first["started"] == at(2) and first["ended"] == at(3) and first["scheduled"] == at(1)
    for limit in (1, 2, 3):
        seen, token = [], None
        while True:
            page = scheduler.filter_task_to_archive(after, before, limit=limit, page_token=token)
            assert len(page["tasks"]) <= limit
            seen += [(e["task_id"], e["backend_id"]) for e in page["tasks"]]
            token = page.get("next_page_token")
            if token is None:
                break
        assert seen == expected
    narrow = scheduler.filter_task_to_archive(at(4.5).isoformat(), at(5.5).isoformat())
    assert [e["backend_id"] for e in narrow["tasks"]] == ["a2"]


def test_filter_task_to_archive_bad_token(scheduler):
    _archive_setup(scheduler)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.filter_task_to_archive(
            at(0).isoformat(), at(24).isoformat(), page_token="garbage"
        )
    assert "page_token" in str(e.value)


def test_delete_archived_tasks(scheduler):
    tasks = _archive_setup(scheduler)
    runs = {r.backend_id: r for r in scheduler.get_task_runs([t.id for t in tasks])}
    scheduler.delete_archived_tasks(
        [
            {"task_id": tasks[0].id, "task_run_id": runs["a1"].id},
            {"task_id": tasks[1].id, "task_run_id": runs["b1"].id},
            {"task_id": tasks[2].id, "task_run_id": runs["a2"].id},  # wrong pair: nothing
        ]
    )
    left = {r.backend_id for r in scheduler.get_task_runs([t.id for t in tasks])}
    assert left == {"a2", "c1", "c2", "d1", "e1"}
    # task 1 lost its only run: deleted; task 0 keeps a2; task 2 untouched
    assert [t.id for t in scheduler.get_tasks([t.id for t in tasks])] == [
        tasks[0].id,
        tasks[2].id,
        tasks[3].id,
        tasks[4].id,
    ]
