"""grab_next_visits: every policy, every cooldown, lister filters, sampling."""

from __future__ import annotations

import datetime

import pytest

from pgsched.exc import UnknownPolicy
from pgsched.model import LastVisitStatus, ListedOrigin, OriginVisitStats
from utils import BAD_INPUT, at

H = datetime.timedelta(hours=1)
D = datetime.timedelta(days=1)
NO_COOLDOWNS = dict(
    absolute_cooldown=None, scheduled_cooldown=None, failed_cooldown=None, not_found_cooldown=None
)
SNAP = b"\x03" * 20


def _record(scheduler, lister, specs, visit_type="git"):
    return scheduler.record_listed_origins(
        [ListedOrigin(lister_id=lister.id, url=u, visit_type=visit_type, **kw) for u, kw in specs]
    )


def _stats(scheduler, url, visit_type="git", **kw):
    scheduler.origin_visit_stats_upsert([OriginVisitStats(url=url, visit_type=visit_type, **kw)])


def _urls(origins):
    return [o.url for o in origins]


def test_oldest_scheduled_first(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [(f"u{i}", {}) for i in range(4)])
    # scheduled long ago (past the 7-day scheduled cooldown)
    _stats(scheduler, "u0", last_scheduled=at(-1000))
    _stats(scheduler, "u1", last_scheduled=at(-3000))
    _stats(scheduler, "u2", last_scheduled=at(-2000))
    got = scheduler.grab_next_visits("git", 4, "oldest_scheduled_first", timestamp=at())
    assert _urls(got) == ["u3", "u1", "u2", "u0"]
    # recorded as scheduled: inside the absolute cooldown now
    assert scheduler.grab_next_visits("git", 4, "oldest_scheduled_first", timestamp=at(1)) == []
    stats = scheduler.origin_visit_stats_get([(f"u{i}", "git") for i in range(4)])
    assert {s.last_scheduled for s in stats} == {at()}
    # never backwards
    scheduler.grab_next_visits(
        "git", 4, "oldest_scheduled_first", timestamp=at(-1000), **NO_COOLDOWNS
    )
    stats = scheduler.origin_visit_stats_get([(f"u{i}", "git") for i in range(4)])
    assert {s.last_scheduled for s in stats} == {at()}


def test_count_limits_and_zero(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [(f"u{i}", {}) for i in range(5)])
    assert scheduler.grab_next_visits("git", 0, "oldest_scheduled_first", timestamp=at()) == []
    assert scheduler.origin_visit_stats_get([(f"u{i}", "git") for i in range(5)]) == []
    assert len(scheduler.grab_next_visits("git", 2, "oldest_scheduled_first", timestamp=at())) == 2
    assert len(scheduler.grab_next_visits("git", 9, "oldest_scheduled_first", timestamp=at())) == 3


def test_never_visited_oldest_update_first(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(
        scheduler,
        lister,
        [
            ("a", {"last_update": at(-5)}),
            ("b", {"last_update": at(-9)}),
            ("c", {}),  # no last_update: not this policy's
            ("d", {"last_update": at(-20)}),  # visited: has a snapshot
        ],
    )
    _stats(scheduler, "d", last_snapshot=SNAP, last_successful=at(-30))
    got = scheduler.grab_next_visits("git", 10, "never_visited_oldest_update_first", timestamp=at())
    assert _urls(got) == ["b", "a"]


def test_already_visited_order_by_lag(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(
        scheduler,
        lister,
        [
            ("small-lag", {"last_update": at(-10)}),
            ("big-lag", {"last_update": at(-1)}),
            ("up-to-date", {"last_update": at(-50)}),
            ("never", {"last_update": at(-1)}),
        ],
    )
    _stats(scheduler, "small-lag", last_snapshot=SNAP, last_successful=at(-20))
    _stats(scheduler, "big-lag", last_snapshot=SNAP, last_successful=at(-100))
    _stats(scheduler, "up-to-date", last_snapshot=SNAP, last_successful=at(-40))
    got = scheduler.grab_next_visits("git", 10, "already_visited_order_by_lag", timestamp=at())
    assert _urls(got) == ["big-lag", "small-lag"]


def test_origins_without_last_update_and_queue_position(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(
        scheduler, lister, [("p1", {}), ("p2", {}), ("fresh", {}), ("dated", {"last_update": at()})]
    )
    _stats(scheduler, "p1", next_visit_queue_position=50)
    _stats(scheduler, "p2", next_visit_queue_position=20)
    scheduler.visit_scheduler_queue_position_set("git", 30)
    got = scheduler.grab_next_visits("git", 2, "origins_without_last_update", timestamp=at())
    assert _urls(got) == ["fresh", "p2"]
    # the queue position only moves forward
    assert scheduler.visit_scheduler_queue_position_get() == {"git": 30}
    got = scheduler.grab_next_visits("git", 2, "origins_without_last_update", timestamp=at())
    assert _urls(got) == ["p1"]
    assert scheduler.visit_scheduler_queue_position_get() == {"git": 50}


def test_first_visits_after_listing(scheduler):
    lister = scheduler.get_or_create_lister("l", first_visits_queue_prefix="first")
    other = scheduler.get_or_create_lister("other")
    _record(scheduler, lister, [("new", {}), ("old", {}), ("recent", {})])
    _record(scheduler, other, [("elsewhere", {})])
    _stats(scheduler, "old", last_scheduled=at(-48))
    _stats(scheduler, "recent", last_scheduled=at(-1))
    lister = scheduler.update_lister(lister.evolve(last_listing_finished_at=at(-24)))
    got = scheduler.grab_next_visits(
        "git",
        10,
        "first_visits_after_listing",
        lister_uuid=str(lister.id),
        timestamp=at(),
        scheduled_cooldown=None,
    )
    assert _urls(got) == ["new", "old"]
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_next_visits("git", 10, "first_visits_after_listing", timestamp=at())
    assert "lister" in str(e.value)
    got = scheduler.grab_next_visits(
        "git",
        10,
        "first_visits_after_listing",
        lister_name="other",
        lister_instance_name="",
        timestamp=at(),
        **NO_COOLDOWNS,
    )
    assert _urls(got) == ["elsewhere"]


def test_lister_restriction(scheduler):
    l1 = scheduler.get_or_create_lister("gitlab", "one")
    l2 = scheduler.get_or_create_lister("gitlab", "two")
    _record(scheduler, l1, [("a", {})])
    _record(scheduler, l2, [("b", {})])
    got = scheduler.grab_next_visits(
        "git", 10, "oldest_scheduled_first", lister_uuid=l2.id, timestamp=at()
    )
    assert _urls(got) == ["b"]
    got = scheduler.grab_next_visits(
        "git",
        10,
        "oldest_scheduled_first",
        lister_name="gitlab",
        lister_instance_name="one",
        timestamp=at(),
    )
    assert _urls(got) == ["a"]
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", lister_name="gitlab")
    assert "lister_name" in str(e.value)


def test_enabled_flag(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [("on", {}), ("off", {"enabled": False})])
    assert _urls(
        scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at())
    ) == ["on"]
    got = scheduler.grab_next_visits(
        "git", 10, "oldest_scheduled_first", enabled=False, timestamp=at()
    )
    assert _urls(got) == ["off"]


def test_absolute_cooldown(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [("a", {}), ("b", {})])
    _stats(scheduler, "a", last_scheduled=at(-11), last_visit=at(-10))  # visited since
    _stats(scheduler, "b", last_scheduled=at(-13), last_visit=at(-12))
    kw = dict(scheduled_cooldown=None, failed_cooldown=None, not_found_cooldown=None)
    got = scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at(), **kw)
    assert _urls(got) == ["b"]


def test_scheduled_cooldown(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [("pending", {}), ("visited", {}), ("stale", {})])
    _stats(scheduler, "pending", last_scheduled=at(days=-3))  # scheduled, never visited
    _stats(scheduler, "visited", last_scheduled=at(days=-3), last_visit=at(days=-2))
    _stats(scheduler, "stale", last_scheduled=at(days=-8), last_visit=at(days=-9))
    got = scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at())
    assert _urls(got) == ["stale", "visited"]


@pytest.mark.parametrize(
    "status,cooldown_days",
    [(LastVisitStatus.failed, 14), (LastVisitStatus.not_found, 31)],
)
def test_failed_and_not_found_cooldowns(scheduler, status, cooldown_days):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [("recent", {}), ("old", {}), ("ok", {})])
    _stats(
        scheduler,
        "recent",
        last_visit=at(days=-(cooldown_days - 1)),
        last_visit_status=status,
        last_scheduled=at(days=-(cooldown_days)),
    )
    _stats(
        scheduler,
        "old",
        last_visit=at(days=-(cooldown_days + 1)),
        last_visit_status=status,
        last_scheduled=at(days=-(cooldown_days + 2)),
    )
    _stats(
        scheduler,
        "ok",
        last_visit=at(days=-1),
        last_visit_status=LastVisitStatus.successful,
        last_scheduled=at(days=-2),
    )
    got = scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at())
    assert _urls(got) == ["old", "ok"]
    # with that cooldown off, the recent failure comes back too
    key = "failed_cooldown" if status == LastVisitStatus.failed else "not_found_cooldown"
    got = scheduler.grab_next_visits(
        "git", 10, "oldest_scheduled_first", timestamp=at(days=1), **{key: None}
    )
    assert _urls(got) == ["recent"]


def test_tablesample(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [(f"u{i:04d}", {}) for i in range(2000)])
    full = scheduler.grab_next_visits(
        "git", 5000, "oldest_scheduled_first", tablesample=100, timestamp=at()
    )
    assert len(full) == 2000
    part = scheduler.grab_next_visits(
        "git", 5000, "oldest_scheduled_first", tablesample=20, timestamp=at(days=30)
    )
    assert 0 < len(part) < 2000
    for bad in (0, -5, 101):
        with pytest.raises(BAD_INPUT) as e:
            scheduler.grab_next_visits("git", 5, "oldest_scheduled_first", tablesample=bad)
        assert "tablesample" in str(e.value)


def test_same_origin_in_two_listers_once(scheduler):
    l1 = scheduler.get_or_create_lister("one")
    l2 = scheduler.get_or_create_lister("two")
    _record(scheduler, l1, [("shared", {}), ("only1", {})])
    _record(scheduler, l2, [("shared", {}), ("only2", {})])
    got = scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at())
    assert sorted(_urls(got)) == ["only1", "only2", "shared"]
    # both listers' rows carry the scheduling now
    assert scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at(1)) == []


def test_unknown_policy_and_bad_arguments(scheduler):
    lister = scheduler.get_or_create_lister("l")
    _record(scheduler, lister, [("a", {})])
    with pytest.raises(UnknownPolicy):
        scheduler.grab_next_visits("git", 1, "random_first")
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_next_visits("git", -1, "oldest_scheduled_first")
    assert "count" in str(e.value)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.grab_next_visits(
            "git", 1, "oldest_scheduled_first", timestamp=datetime.datetime(2026, 1, 1)
        )
    assert "timestamp" in str(e.value)
    assert scheduler.origin_visit_stats_get([("a", "git")]) == []
