"""Listing files: parsing, bad lines and their line numbers, import into a real database."""

from __future__ import annotations

import datetime
import gzip
import uuid

import pytest

from pgsched import get_scheduler
from pgsched.listing import ListingError, ListingReader, import_listing

UTC = datetime.UTC
PYPI_HEADER = "name\tlatest_version\tlast_release_month\n"
NPM_HEADER = "name\tlatest_version\tmonthly_downloads\n"


@pytest.fixture
def sched(dsn):
    with get_scheduler("postgresql", db=dsn) as s:
        yield s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write(path, text: str | bytes, gz: bool = False):
    data = text.encode() if isinstance(text, str) else text
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def all_origins(sched, lister_id):
    page = sched.get_listed_origins(lister_id=lister_id, limit=1000)
    assert page.next_page_token is None
    return {o.url: o for o in page.results}


# A PyPI listing with one bad line of each kind, at known line numbers.
BAD_PYPI = (
    PYPI_HEADER
    + "alpha\t1.0\t2024-03\n"  # 2
    + "beta\t2.0\n"  # 3 malformed: 2 fields
    + "\t1.0\t2024-01\n"  # 4 empty name
    + "gamma\t0.1\t2024-13\n"  # 5 bad month
    + "delta\t0.1\tMarch\n"  # 6 bad date
    + "\n"  # 7 empty line
    + "eps\x00ilon\t1\t2024-01\n"  # 8 NUL
    + "zeta\t3.0\t2019-11\n"  # 9
    + "eta\t1\t2024-01\textra\n"  # 10 malformed: 4 fields
    + "theta\t1.2\t2005-04\n"  # 11
).encode() + b"caf\xe9\t1\t2024-01\n"  # 12 not UTF-8

BAD_LINES = {
    3: "malformed line: 2 tab-separated fields, expected 3",
    4: "empty name",
    5: "bad last_release_month '2024-13'",
    6: "bad last_release_month 'March'",
    7: "empty line",
    8: "NUL",
    10: "malformed line: 4 tab-separated fields, expected 3",
    12: "not UTF-8",
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_reader_reports_bad_lines_with_their_numbers(tmp_path, gz):
    path = write(tmp_path / "pypi.tsv", BAD_PYPI, gz=gz)
    with ListingReader(path) as reader:
        entries = list(reader)
        assert reader.format.name == "pypi"
        assert reader.lines_read == 11
    assert [(e.line, e.url, e.last_update) for e in entries] == [
        (2, "https://pypi.org/project/alpha/", datetime.datetime(2024, 3, 1, tzinfo=UTC)),
        (9, "https://pypi.org/project/zeta/", datetime.datetime(2019, 11, 1, tzinfo=UTC)),
        (11, "https://pypi.org/project/theta/", datetime.datetime(2005, 4, 1, tzinfo=UTC)),
    ]
    errors = {e.line: e.message for e in reader.errors}
    assert sorted(errors) == sorted(BAD_LINES)
    for line, expected in BAD_LINES.items():
        assert expected in errors[line], (line, errors[line])


def test_npm_format(tmp_path):
    path = write(
        tmp_path / "npm.tsv.gz",
        NPM_HEADER + "@scope/pkg\t1.0.0\t12\nleft-pad\t1.3.0\t0\nbad\t1\tmany\n",
        gz=True,
    )
    with ListingReader(path) as reader:
        entries = list(reader)
    assert reader.format.name == "npm"
    assert [(e.url, e.last_update) for e in entries] == [
        ("https://www.npmjs.com/package/@scope/pkg", None),
        ("https://www.npmjs.com/package/left-pad", None),
    ]
    assert [(e.line, e.message) for e in reader.errors] == [
        (4, "bad monthly_downloads 'many' (expected a whole number)")
    ]


def test_unknown_header_and_empty_file(tmp_path):
    with pytest.raises(ListingError, match=r"line 1: unknown header 'url\\tdate'"):
        ListingReader(write(tmp_path / "x.tsv", "url\tdate\nhttps://a\t2024\n"))
    with pytest.raises(ListingError, match="empty file"):
        ListingReader(write(tmp_path / "empty.tsv.gz", "", gz=True))
    with pytest.raises(ListingError, match="no such file"):
        ListingReader(tmp_path / "missing.tsv")


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    body = PYPI_HEADER + "".join(f"p{i}\t1\t2024-01\n" for i in range(5000))
    data = gzip.compress(body.encode())
    path = write(tmp_path / "cut.tsv.gz", data[: len(data) // 2])
    with ListingReader(path) as reader:
        entries = list(reader)
    assert 0 < len(entries) < 5000
    assert [e.line for e in entries] == list(range(2, 2 + len(entries)))
    (error,) = reader.errors
    assert "cannot read further" in error.message


def test_import_loads_the_good_lines_only(sched, tmp_path):
    name = unique("pypi")
    path = write(tmp_path / "pypi.tsv.gz", BAD_PYPI, gz=True)
    seen = []
    result = import_listing(
        sched,
        path,
        name,
        "pypi",
        batch_size=2,
        on_error=seen.append,
        finished_at=datetime.datetime(2026, 5, 1, tzinfo=UTC),
    )
    assert result.loaded == 3
    assert result.lines == 11
    assert [e.line for e in result.errors] == sorted(BAD_LINES)
    assert sorted(e.line for e in seen) == sorted(BAD_LINES)
    stored = all_origins(sched, result.lister.id)
    assert {u: o.last_update for u, o in stored.items()} == {
        "https://pypi.org/project/alpha/": datetime.datetime(2024, 3, 1, tzinfo=UTC),
        "https://pypi.org/project/zeta/": datetime.datetime(2019, 11, 1, tzinfo=UTC),
        "https://pypi.org/project/theta/": datetime.datetime(2005, 4, 1, tzinfo=UTC),
    }
    assert all(o.visit_type == "pypi" and o.enabled for o in stored.values())
    lister = sched.get_lister(name)
    assert lister.last_listing_finished_at == datetime.datetime(2026, 5, 1, tzinfo=UTC)


def test_a_line_the_database_refuses_is_reported_and_the_batch_rest_loads(sched, tmp_path):
    # The database caps urls at 16 KiB: that line's batch is refused whole
    # (nothing written), then split until the refused line is isolated.
    name = unique("pypi")
    lines = [f"p{i}\t1\t2024-0{1 + i % 9}\n" for i in range(10)]
    lines[6] = "x" * 17000 + "\t1\t2024-01\n"  # line 8 of the file
    path = write(tmp_path / "long.tsv", PYPI_HEADER + "".join(lines))
    result = import_listing(sched, path, name, "pypi", batch_size=4)
    assert result.loaded == 9
    assert [(e.line, e.message[:8]) for e in result.errors] == [(8, "refused:")]
    assert "16384" in result.errors[0].message
    stored = all_origins(sched, result.lister.id)
    assert sorted(stored) == sorted(f"https://pypi.org/project/p{i}/" for i in range(10) if i != 6)


def test_reimport_updates_and_never_duplicates(sched, tmp_path):
    name = unique("pypi")
    first = write(tmp_path / "a.tsv", PYPI_HEADER + "one\t1\t2020-01\ntwo\t1\t2020-02\n")
    r1 = import_listing(sched, first, name, "pypi")
    before = all_origins(sched, r1.lister.id)
    second = write(
        tmp_path / "b.tsv.gz",
        PYPI_HEADER + "two\t2\t2025-06\none\t1\t2020-01\nthree\t1\t2021-01\ntwo\t2\t2025-07\n",
        gz=True,
    )
    r2 = import_listing(sched, second, name, "pypi")
    assert r2.lister.id == r1.lister.id
    after = all_origins(sched, r1.lister.id)
    assert sorted(after) == [
        "https://pypi.org/project/one/",
        "https://pypi.org/project/three/",
        "https://pypi.org/project/two/",
    ]
    two = after["https://pypi.org/project/two/"]
    # the last line of a name wins, inside a batch too
    assert two.last_update == datetime.datetime(2025, 7, 1, tzinfo=UTC)
    assert two.first_seen == before["https://pypi.org/project/two/"].first_seen
    assert two.last_seen > before["https://pypi.org/project/two/"].last_seen
    assert r2.lister.last_listing_finished_at > r1.lister.last_listing_finished_at


def test_import_arguments_are_checked(sched, tmp_path):
    path = write(tmp_path / "a.tsv", PYPI_HEADER + "one\t1\t2020-01\n")
    with pytest.raises(ValueError, match="lister_name"):
        import_listing(sched, path, "", "pypi")
    with pytest.raises(ValueError, match="visit_type"):
        import_listing(sched, path, "x", "")
    with pytest.raises(ValueError, match="batch_size"):
        import_listing(sched, path, "x", "pypi", batch_size=0)
    with pytest.raises(ValueError, match="finished_at"):
        import_listing(sched, path, "x", "pypi", finished_at=datetime.datetime(2026, 1, 1))
    assert sched.get_lister("x") is None
