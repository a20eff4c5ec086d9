"""Listers, listed origins and their paging, visit statistics, metrics."""

from __future__ import annotations

import datetime
import uuid

import pytest

from pgsched.exc import StaleData
from pgsched.model import LastVisitStatus, ListedOrigin, OriginVisitStats
from utils import BAD_INPUT, at


def test_get_or_create_lister(scheduler):
    a = scheduler.get_or_create_lister("github")
    assert a.instance_name == "" and a.id is not None and a.created is not None
    assert scheduler.get_or_create_lister("github", None) == a
    assert scheduler.get_or_create_lister("github", "") == a
    b = scheduler.get_or_create_lister("gitlab", "inria", first_visits_queue_prefix="large")
    assert b.first_visits_queue_prefix == "large"
    assert scheduler.get_lister("gitlab", "inria") == b
    assert scheduler.get_lister("gitlab") is None
    assert scheduler.get_lister("github") == a
    assert scheduler.get_listers() == [a, b]


def test_get_listers_by_id(scheduler):
    a = scheduler.get_or_create_lister("a")
    b = scheduler.get_or_create_lister("b")
    assert scheduler.get_listers_by_id([str(a.id)]) == [a]
    assert scheduler.get_listers_by_id([a.id, b.id, uuid.uuid4()]) == [a, b]
    assert scheduler.get_listers_by_id([]) == []
    with pytest.raises(BAD_INPUT) as e:
        scheduler.get_listers_by_id(["not-a-uuid"])
    assert "lister_ids" in str(e.value)


def test_update_lister_optimistic(scheduler):
    lister = scheduler.get_or_create_lister("npm")
    new = scheduler.update_lister(lister.evolve(current_state={"page": 3}))
    assert new.current_state == {"page": 3}
    assert new.updated > lister.updated
    assert new.created == lister.created
    with pytest.raises(StaleData):
        scheduler.update_lister(lister.evolve(current_state={"page": 99}))
    assert scheduler.get_lister("npm") == new


def test_listers_with_first_visits_to_schedule(scheduler):
    a = scheduler.get_or_create_lister("a", first_visits_queue_prefix="p")
    b = scheduler.get_or_create_lister("b", first_visits_queue_prefix="p")
    scheduler.get_or_create_lister("c")
    assert scheduler.get_listers(with_first_visits_to_schedule=True) == []
    a = scheduler.update_lister(a.evolve(last_listing_finished_at=at(1)))
    b = scheduler.update_lister(b.evolve(last_listing_finished_at=at(1)))
    b = scheduler.update_lister(b.evolve(first_visits_scheduled_at=at(2)))
    assert scheduler.get_listers(with_first_visits_to_schedule=True) == [a]


def _origin(lister, url, visit_type="git", **kw):
    return ListedOrigin(lister_id=lister.id, url=url, visit_type=visit_type, **kw)


def test_record_listed_origins_upsert(scheduler):
    lister = scheduler.get_or_create_lister("github")
    first = scheduler.record_listed_origins(
        [
            _origin(lister, "https://e/a", extra_loader_arguments={"x": 1}, last_update=at(1)),
            _origin(lister, "https://e/b", is_fork=True, forked_from_url="https://e/a"),
        ]
    )
    assert [o.url for o in first] == ["https://e/a", "https://e/b"]
    assert first[0].extra_loader_arguments == {"x": 1}
    assert first[0].first_seen is not None and first[0].last_seen is not None
    assert first[1].is_fork is True and first[1].forked_from_url == "https://e/a"
    again = scheduler.record_listed_origins(
        [_origin(lister, "https://e/a", extra_loader_arguments={"x": 2}, enabled=False)]
    )
    assert again[0].first_seen == first[0].first_seen
    assert again[0].last_seen >= first[0].last_seen
    assert again[0].extra_loader_arguments == {"x": 2}
    assert again[0].last_update is None and again[0].enabled is False
    page = scheduler.get_listed_origins(lister_id=lister.id, enabled=None)
    assert len(page.results) == 2 and page.next_page_token is None


def test_record_duplicates_in_batch_last_wins(scheduler):
    lister = scheduler.get_or_create_lister("github")
    stored = scheduler.record_listed_origins(
        [
            _origin(lister, "https://e/a", extra_loader_arguments={"v": 1}),
            _origin(lister, "https://e/a", extra_loader_arguments={"v": 2}),
            _origin(lister, "https://e/a", visit_type="svn"),
        ]
    )
    assert [(o.url, o.visit_type, o.extra_loader_arguments) for o in stored] == [
        ("https://e/a", "git", {"v": 2}),
        ("https://e/a", "svn", {}),
    ]


def test_record_unknown_lister_rejected(scheduler):
    lister = scheduler.get_or_create_lister("github")
    with pytest.raises(BAD_INPUT) as e:
        scheduler.record_listed_origins(
            [
                _origin(lister, "https://e/a"),
                ListedOrigin(lister_id=uuid.uuid4(), url="https://e/b", visit_type="git"),
            ]
        )
    assert "lister_id" in str(e.value)
    assert scheduler.get_listed_origins().results == []


def test_long_and_non_ascii_urls(scheduler):
    lister = scheduler.get_or_create_lister("github")
    long_url = "https://example.org/" + "é" * 4000 + "/" + "x" * 6000  # ~14 KB
    urls = [long_url, long_url + "2", "https://пример.рф/репо", "https://e/日本語"]
    scheduler.record_listed_origins([_origin(lister, u) for u in urls])
    got = scheduler.get_listed_origins(urls=[long_url, "https://пример.рф/репо"])
    assert sorted(o.url for o in got.results) == sorted([long_url, "https://пример.рф/репо"])
    visits = scheduler.grab_next_visits("git", 10, "oldest_scheduled_first", timestamp=at())
    assert sorted(o.url for o in visits) == sorted(urls)
    stats = scheduler.origin_visit_stats_get([(long_url, "git")])
    assert stats[0].url == long_url and stats[0].last_scheduled == at()
    with pytest.raises(BAD_INPUT) as e:
        scheduler.record_listed_origins([_origin(lister, "https://e/" + "y" * 17000)])
    assert "url" in str(e.value)


def test_get_listed_origins_filters(scheduler):
    l1 = scheduler.get_or_create_lister("one")
    l2 = scheduler.get_or_create_lister("two")
    scheduler.record_listed_origins(
        [
            _origin(l1, "https://e/a"),
            _origin(l1, "https://e/b", enabled=False),
            _origin(l2, "https://e/a"),
        ]
    )

    def urls(**kw):
        return [(str(o.lister_id), o.url) for o in scheduler.get_listed_origins(**kw).results]

    assert len(urls()) == 2
    assert len(urls(enabled=None)) == 3
    assert urls(enabled=False) == [(str(l1.id), "https://e/b")]
    assert urls(lister_id=l2.id) == [(str(l2.id), "https://e/a")]
    assert sorted(urls(url="https://e/a")) == sorted(
        [(str(l1.id), "https://e/a"), (str(l2.id), "https://e/a")]
    )
    assert urls(urls=["https://e/b"], enabled=None) == [(str(l1.id), "https://e/b")]
    assert urls(urls=["https://e/zzz"]) == []


def test_get_listed_origins_paging_visits_every_row_once(scheduler):
    listers = [scheduler.get_or_create_lister(f"l{i}") for i in range(2)]
    expected = []
    for lister in listers:
        origins = [
            _origin(lister, f"https://e/{i:03d}", visit_type=vt)
            for i in range(7)
            for vt in ("git", "hg", "svn")[: 1 + i % 3]
        ]
        scheduler.record_listed_origins(origins)
        expected += [(lister.id, o.url, o.visit_type) for o in origins]
    expected.sort(key=lambda k: (str(k[0]), k[1], k[2]))
    for limit in (1, 2, 3, 4, 5, 100):
        seen, token = [], None
        while True:
            page = scheduler.get_listed_origins(limit=limit, page_token=token)
            assert len(page.results) <= limit
            seen += [(o.lister_id, o.url, o.visit_type) for o in page.results]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(seen, key=lambda k: (str(k[0]), k[1], k[2])) == expected
        assert len(seen) == len(set(seen))


def test_get_listed_origins_bad_paging(scheduler):
    with pytest.raises(BAD_INPUT) as e:
        scheduler.get_listed_origins(limit=0)
    assert "limit" in str(e.value)
    with pytest.raises(BAD_INPUT) as e:
        scheduler.get_listed_origins(page_token=["x"])
    assert "page_token" in str(e.value)


def test_visit_types_for_lister(scheduler):
    lister = scheduler.get_or_create_lister("github")
    other = scheduler.get_or_create_lister("other")
    scheduler.record_listed_origins(
        [_origin(lister, f"https://e/{i}", visit_type=vt) for i, vt in enumerate("gghsg")]
        + [_origin(other, "https://e/x", visit_type="bzr")]
    )
    assert scheduler.get_visit_types_for_listed_origins(lister) == ["g", "h", "s"]
    assert (
        scheduler.get_visit_types_for_listed_origins(scheduler.get_or_create_lister("empty")) == []
    )


def test_visit_stats_upsert_and_get(scheduler):
    s1 = OriginVisitStats(
        url="https://e/a",
        visit_type="git",
        last_successful=at(1),
        last_visit=at(1),
        last_visit_status=LastVisitStatus.successful,
        last_snapshot=b"\x01" * 20,
        next_visit_queue_position=10,
        next_position_offset=5,
        successive_visits=2,
    )
    scheduler.origin_visit_stats_upsert([s1])
    assert scheduler.origin_visit_stats_get([("https://e/a", "git"), ("https://e/z", "git")]) == [
        s1
    ]
    # None keeps, values replace
    scheduler.origin_visit_stats_upsert(
        [
            OriginVisitStats(
                url="https://e/a",
                visit_type="git",
                last_visit=at(2),
                last_visit_status=LastVisitStatus.failed,
                last_scheduled=at(1.5),
            )
        ]
    )
    (got,) = scheduler.origin_visit_stats_get([("https://e/a", "git")])
    assert got == s1.evolve(
        last_visit=at(2),
        last_visit_status=LastVisitStatus.failed,
        last_scheduled=at(1.5),
        next_position_offset=4,
        successive_visits=1,
    )
    with pytest.raises(BAD_INPUT) as e:
        scheduler.origin_visit_stats_upsert(
            [OriginVisitStats(url="https://e/b", visit_type="git", last_snapshot=b"short")]
        )
    assert "last_snapshot" in str(e.value)
    assert scheduler.origin_visit_stats_get([("https://e/b", "git")]) == []


def test_queue_positions(scheduler):
    assert scheduler.visit_scheduler_queue_position_get() == {}
    scheduler.visit_scheduler_queue_position_set("git", 42)
    scheduler.visit_scheduler_queue_position_set("npm", 2**62)
    scheduler.visit_scheduler_queue_position_set("git", 7)
    assert scheduler.visit_scheduler_queue_position_get() == {"git": 7, "npm": 2**62}
    with pytest.raises(BAD_INPUT) as e:
        scheduler.visit_scheduler_queue_position_set("git", 2**64)
    assert "position" in str(e.value)
    assert scheduler.visit_scheduler_queue_position_get()["git"] == 7


def test_metrics(scheduler):
    l1 = scheduler.get_or_create_lister("one")
    l2 = scheduler.get_or_create_lister("two")
    scheduler.record_listed_origins(
        [
            _origin(l1, "https://e/a", last_update=at(10)),  # visited, pending changes
            _origin(l1, "https://e/b", last_update=at(1)),  # visited, up to date
            _origin(l1, "https://e/c"),  # never visited
            _origin(l1, "https://e/d", enabled=False),
            _origin(l1, "https://e/e", visit_type="svn"),
            _origin(l2, "https://e/a"),
        ]
    )
    snap = b"\x02" * 20
    scheduler.origin_visit_stats_upsert(
        [
            OriginVisitStats(
                url="https://e/a", visit_type="git", last_successful=at(5), last_snapshot=snap
            ),
            OriginVisitStats(
                url="https://e/b", visit_type="git", last_successful=at(5), last_snapshot=snap
            ),
        ]
    )
    metrics = scheduler.update_metrics(timestamp=at(20))
    by_key = {(m.lister_id, m.visit_type): m for m in metrics}
    m = by_key[(l1.id, "git")]
    assert (m.origins_known, m.origins_enabled, m.origins_never_visited) == (4, 3, 1)
    assert m.origins_with_pending_changes == 1
    assert m.last_update == at(20)
    assert by_key[(l1.id, "svn")].origins_known == 1
    m2 = by_key[(l2.id, "git")]
    assert (m2.origins_known, m2.origins_never_visited, m2.origins_with_pending_changes) == (
        1,
        0,
        0,
    )
    assert len(metrics) == 3
    assert sorted(scheduler.get_metrics(), key=str) == sorted(metrics, key=str)
    assert scheduler.get_metrics(lister_id=l2.id) == [m2]
    assert scheduler.get_metrics(visit_type="svn") == [by_key[(l1.id, "svn")]]
    only = scheduler.update_metrics(lister_id=l2.id)
    assert len(only) == 1 and only[0].last_update > at(20)
    assert scheduler.get_metrics(lister_id=l1.id, visit_type="git")[0].last_update == at(20)


def test_naive_datetimes_rejected(scheduler):
    with pytest.raises(ValueError):
        OriginVisitStats(url="u", visit_type="git", last_visit=datetime.datetime(2026, 1, 1))
