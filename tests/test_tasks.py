"""Task types and tasks: creation, idempotency, status, search, ready queues."""

from __future__ import annotations

import datetime

import pytest

from pgsched.model import Task
from utils import BAD_INPUT, args, at, task_type


def test_create_task_type_is_idempotent(scheduler):
    tt = task_type()
    scheduler.create_task_type(tt)
    scheduler.create_task_type(tt)
    scheduler.create_task_type(tt.evolve(description="changed"))
    assert scheduler.get_task_type("load-git") == tt
    assert scheduler.get_task_types() == [tt]


def test_get_task_type_unknown_is_none(scheduler):
    assert scheduler.get_task_type("nope") is None
    assert scheduler.get_task_types() == []


def test_get_task_types_ordered(scheduler):
    b, a = task_type("b-type"), task_type("a-type", default_interval=None, num_retries=None)
    scheduler.create_task_type(b)
    scheduler.create_task_type(a)
    assert scheduler.get_task_types() == [a, b]


def test_create_tasks_fills_defaults(scheduler):
    scheduler.create_task_type(task_type())
    created = scheduler.create_tasks(
        [
            Task(type="load-git", arguments=args("u1"), next_run=at()),
            Task(type="load-git", arguments=args("u2"), next_run=at(), retries_left=7),
            Task(type="load-git", arguments=args("u3"), next_run=at(), policy="oneshot"),
        ]
    )
    assert [t.arguments.args for t in created] == [["u1"], ["u2"], ["u3"]]
    assert all(t.id is not None for t in created)
    assert [t.retries_left for t in created] == [2, 7, 2]
    assert {t.current_interval for t in created} == {datetime.timedelta(days=8)}
    assert [t.policy for t in created] == ["recurring", "recurring", "oneshot"]
    assert {t.status for t in created} == {"next_run_not_scheduled"}
    assert scheduler.get_tasks([t.id for t in created]) == created


def test_create_tasks_retries_default_to_zero(scheduler):
    scheduler.create_task_type(task_type(num_retries=None))
    (t,) = scheduler.create_tasks([Task(type="load-git", arguments=args(), next_run=at())])
    assert t.retries_left == 0


def test_create_tasks_is_idempotent(scheduler):
    scheduler.create_task_type(task_type())
    batch = [
        Task(type="load-git", arguments=args("u1", depth=1), next_run=at()),
        Task(type="load-git", arguments=args("u1", depth=1), next_run=at(1)),  # same task
        Task(type="load-git", arguments=args("u2"), next_run=at(), priority="high"),
        Task(type="load-git", arguments=args("u2"), next_run=at()),  # other priority
    ]
    first = scheduler.create_tasks(batch)
    assert len(first) == 3
    again = scheduler.create_tasks(batch)
    assert again == first
    assert len(scheduler.search_tasks()) == 3


def test_oneshot_identity_includes_next_run(scheduler):
    scheduler.create_task_type(task_type())
    one = Task(type="load-git", arguments=args("x"), next_run=at(), policy="oneshot")
    created = scheduler.create_tasks([one, one.evolve(next_run=at(5)), one])
    assert len(created) == 2
    assert {t.next_run for t in created} == {at(), at(5)}


def test_policy_argument_and_task_policy(scheduler):
    scheduler.create_task_type(task_type())
    (t,) = scheduler.create_tasks(
        [Task(type="load-git", arguments=args(), next_run=at(), policy="oneshot")],
        policy="recurring",
    )
    assert t.policy == "oneshot"


def test_recurring_task_needs_default_interval(scheduler):
    scheduler.create_task_type(task_type("no-interval", default_interval=None))
    with pytest.raises(BAD_INPUT) as e:
        scheduler.create_tasks([Task(type="no-interval", arguments=args(), next_run=at())])
    assert "default_interval" in str(e.value)
    (t,) = scheduler.create_tasks(
        [Task(type="no-interval", arguments=args(), next_run=at(), policy="oneshot")]
    )
    assert t.current_interval is None


def test_unknown_task_type_rejected_nothing_written(scheduler):
    scheduler.create_task_type(task_type())
    with pytest.raises(BAD_INPUT) as e:
        scheduler.create_tasks(
            [
                Task(type="load-git", arguments=args(1), next_run=at()),
                Task(type="nope", arguments=args(2), next_run=at()),
            ]
        )
    assert "nope" in str(e.value)
    assert scheduler.search_tasks() == []


def test_set_status_and_disable(scheduler):
    scheduler.create_task_type(task_type())
    t1, t2 = scheduler.create_tasks(
        [
            Task(type="load-git", arguments=args(1), next_run=at()),
            Task(type="load-git", arguments=args(2), next_run=at()),
        ]
    )
    scheduler.set_status_tasks([t1.id], status="next_run_scheduled", next_run=at(days=3))
    scheduler.disable_tasks([t2.id])
    got = {t.id: t for t in scheduler.get_tasks([t1.id, t2.id, 999999])}
    assert got[t1.id].status == "next_run_scheduled"
    assert got[t1.id].next_run == at(days=3)
    assert got[t2.id].status == "disabled"
    assert got[t2.id].next_run == at()
    assert len(got) == 2


def test_search_tasks_filters(scheduler):
    scheduler.create_task_type(task_type("a"))
    scheduler.create_task_type(task_type("b"))
    tasks = scheduler.create_tasks(
        [
            Task(type="a", arguments=args(1), next_run=at(days=1)),
            Task(type="a", arguments=args(2), next_run=at(days=2), priority="high"),
            Task(type="b", arguments=args(3), next_run=at(days=3), policy="oneshot"),
            Task(type="b", arguments=args(4), next_run=at(days=4), priority="low"),
        ]
    )
    ids = [t.id for t in tasks]
    scheduler.disable_tasks([ids[3]])

    def found(**kw):
        return [t.id for t in scheduler.search_tasks(**kw)]

    assert found() == ids
    assert found(task_id=ids[1]) == [ids[1]]
    assert found(task_id=[ids[0], ids[2]]) == [ids[0], ids[2]]
    assert found(task_type="b") == ids[2:]
    assert found(task_type=["a", "b"], status="disabled") == [ids[3]]
    assert found(priority=["high", "low"]) == [ids[1], ids[3]]
    assert found(policy="oneshot") == [ids[2]]
    assert found(before=at(days=2)) == ids[:2]
    assert found(after=at(days=2)) == ids[1:]
    assert found(after=at(days=2), before=at(days=3)) == ids[1:3]
    assert found(limit=3) == ids[:3]
    assert found(task_type="a", status="next_run_not_scheduled", limit=1) == [ids[0]]


def _ready_setup(scheduler):
    scheduler.create_task_type(task_type())
    scheduler.create_task_type(task_type("other"))
    return scheduler.create_tasks(
        [
            Task(type="load-git", arguments=args(1), next_run=at(3)),
            Task(type="load-git", arguments=args(2), next_run=at(1)),
            Task(type="load-git", arguments=args(3), next_run=at(2)),
            Task(type="load-git", arguments=args(4), next_run=at(50)),  # not due
            Task(type="other", arguments=args(5), next_run=at(0)),  # other type
            Task(type="load-git", arguments=args(6), next_run=at(1), priority="low"),
            Task(type="load-git", arguments=args(7), next_run=at(2), priority="high"),
            Task(type="load-git", arguments=args(8), next_run=at(0), priority="normal"),
        ]
    )


def test_peek_ready_tasks(scheduler):
    t = _ready_setup(scheduler)
    ready = scheduler.peek_ready_tasks("load-git", timestamp=at(10))
    assert [x.id for x in ready] == [t[1].id, t[2].id, t[0].id]
    assert [x.id for x in scheduler.peek_ready_tasks("load-git", at(10), 2)] == [t[1].id, t[2].id]
    # read only
    assert scheduler.peek_ready_tasks("load-git", timestamp=at(10)) == ready
    assert scheduler.peek_ready_tasks("load-git", timestamp=at(0.5)) == []


def test_grab_ready_tasks(scheduler):
    t = _ready_setup(scheduler)
    grabbed = scheduler.grab_ready_tasks("load-git", timestamp=at(10), num_tasks=2)
    assert [x.id for x in grabbed] == [t[1].id, t[2].id]
    assert {x.status for x in grabbed} == {"next_run_scheduled"}
    rest = scheduler.grab_ready_tasks("load-git", timestamp=at(10))
    assert [x.id for x in rest] == [t[0].id]
    assert scheduler.grab_ready_tasks("load-git", timestamp=at(10)) == []
    stored = scheduler.get_tasks([t[1].id])[0]
    assert stored.status == "next_run_scheduled"


def test_priority_queues(scheduler):
    t = _ready_setup(scheduler)
    peeked = scheduler.peek_ready_priority_tasks("load-git", timestamp=at(10))
    # highest priority first, then oldest
    assert [x.id for x in peeked] == [t[6].id, t[7].id, t[5].id]
    assert all(x.priority for x in peeked)
    grabbed = scheduler.grab_ready_priority_tasks("load-git", timestamp=at(10), num_tasks=2)
    assert [x.id for x in grabbed] == [t[6].id, t[7].id]
    assert [x.id for x in scheduler.peek_ready_priority_tasks("load-git", at(10))] == [t[5].id]
    # the ordinary queue never sees them
    assert t[5].id not in [x.id for x in scheduler.peek_ready_tasks("load-git", at(10))]


def test_ready_tasks_bad_arguments(scheduler):
    _ready_setup(scheduler)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_ready_tasks("nope", timestamp=at(10))
    assert "task_type" in str(e.value)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_ready_tasks("load-git", timestamp=at(10), num_tasks=-1)
    assert "num_tasks" in str(e.value)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.peek_ready_tasks("load-git", timestamp=datetime.datetime(2026, 1, 1))
    assert "timestamp" in str(e.value)
    assert len(scheduler.peek_ready_tasks("load-git", timestamp=at(10))) == 3
