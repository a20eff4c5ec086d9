"""The benchmark's input: real listings turned into rows, then into models.

Everything random here comes from one ``random.Random(seed)``, so two runs with
the same seed and sample size measure the same rows, visit statistics and
tasks on every backend.  Rows are plain tuples; ``*_models`` functions turn
them into the model classes of a given backend (pgsched's or the reference
backend's, which have the same class names and fields).
"""

from __future__ import annotations

import datetime
import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "data"

# Full listings first, then the samples committed in data/.
PYPI_FILES = ("pypi-projects", "pypi-sample")
NPM_FILES = ("npm-packages", "npm-sample")

UTC = datetime.UTC

PYPI_URL = "https://pypi.org/project/{}/"
NPM_URL = "https://www.npmjs.com/package/{}"

# Share of listed origins that get visit statistics before the grabs.
STATS_SHARE = 0.6


def find_listing(data_dir: Path | None, stems: tuple[str, ...]) -> Path:
    """The first of ``stems``.tsv[.gz] found in data_dir, else in
    ../shared/data, else in data/."""
    dirs = [data_dir] if data_dir else [SHARED_DATA, SAMPLE_DATA]
    for d in dirs:
        if not d.is_dir():
            continue
        for stem in stems:
            for name in (f"{stem}.tsv.gz", f"{stem}.tsv"):
                if (d / name).is_file():
                    return d / name
    raise FileNotFoundError(
        f"none of {', '.join(stems)} (.tsv or .tsv.gz) in {', '.join(map(str, dirs))}"
    )


def read_tsv(path: Path) -> Iterator[list[str]]:
    """Rows of a tab-separated file with a header line (gzipped or not)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) != len(header) or not cols[0]:
                continue
            yield cols


@dataclass
class Listing:
    """Origins of one lister: (url, last_update or None) in file order."""

    lister: str
    visit_type: str
    rows: list[tuple[str, datetime.datetime | None]] = field(default_factory=list)


def month_start(value: str) -> datetime.datetime | None:
    """'2024-09' -> 2024-09-01T00:00:00+00:00; anything else -> None."""
    try:
        year, month = value.split("-")
        return datetime.datetime(int(year), int(month), 1, tzinfo=UTC)
    except ValueError:
        return None


def load_pypi(path: Path) -> Listing:
    listing = Listing("pypi", "pypi")
    for name, _version, month in read_tsv(path):
        listing.rows.append((PYPI_URL.format(name), month_start(month)))
    return listing


def load_npm(path: Path) -> Listing:
    listing = Listing("npm", "npm")
    for cols in read_tsv(path):
        listing.rows.append((NPM_URL.format(cols[0]), None))
    return listing


def sample_rows(rows: list, keep: int, rng: random.Random) -> list:
    """``keep`` rows drawn without replacement, kept in file order."""
    if keep >= len(rows):
        return rows
    picked = sorted(rng.sample(range(len(rows)), keep))
    return [rows[i] for i in picked]


def load_listings(data_dir: Path | None, sample: int | None, seed: int) -> list[Listing]:
    """The PyPI and npm listings; with ``sample``, that many origins in all,
    split between the two in proportion to their sizes."""
    pypi = load_pypi(find_listing(data_dir, PYPI_FILES))
    npm = load_npm(find_listing(data_dir, NPM_FILES))
    if sample:
        rng = random.Random(seed)
        total = len(pypi.rows) + len(npm.rows)
        keep_pypi = round(sample * len(pypi.rows) / total)
        pypi.rows = sample_rows(pypi.rows, keep_pypi, rng)
        npm.rows = sample_rows(npm.rows, sample - keep_pypi, rng)
    return [pypi, npm]


# --- visit statistics --------------------------------------------------------

# (url, visit_type, last_successful, last_visit, last_visit_status, last_scheduled,
#  last_snapshot, next_visit_queue_position, next_position_offset, successive_visits)
StatsRow = tuple


def visit_stats_rows(listings: list[Listing], now: datetime.datetime, seed: int) -> list[StatsRow]:
    """Visit statistics for a fixed-seed STATS_SHARE of the origins.

    A mix an archive would hold: 55% last visited successfully (with a
    snapshot) some time in the last 400 days, 15% failed and 10% not found
    (half of those with an older success), 20% scheduled but never visited.
    Every time lies before ``now``.
    """
    rng = random.Random(seed + 1)
    hour = datetime.timedelta(hours=1)
    out: list[StatsRow] = []
    for listing in listings:
        picked = sample_rows(listing.rows, round(len(listing.rows) * STATS_SHARE), rng)
        queue = listing.visit_type == "npm"
        for url, _last_update in picked:
            r = rng.random()
            successful = visit = status = scheduled = snapshot = None
            if r < 0.55:
                visit = now - hour * rng.uniform(2, 400 * 24)
                successful, status = visit, "successful"
                snapshot = rng.randbytes(20)
            elif r < 0.80:
                visit = now - hour * rng.uniform(2, 60 * 24)
                status = "failed" if r < 0.70 else "not_found"
                if rng.random() < 0.5:
                    successful = visit - hour * rng.uniform(24, 300 * 24)
                    snapshot = rng.randbytes(20)
            else:
                scheduled = now - hour * rng.uniform(2, 30 * 24)
            if visit is not None:
                scheduled = visit - datetime.timedelta(minutes=rng.uniform(1, 600))
            position = offset = None
            if queue and visit is not None:
                position = rng.randrange(0, 1 << 40)
                offset = rng.randint(1, 10)
            out.append(
                (
                    url,
                    listing.visit_type,
                    successful,
                    visit,
                    status,
                    scheduled,
                    snapshot,
                    position,
                    offset if offset is not None else 4,
                    rng.randint(1, 5) if visit is not None else 1,
                )
            )
    rng.shuffle(out)
    return out


# --- tasks -------------------------------------------------------------------

TASK_TYPE = "load-bench-origin"


def task_rows(listings: list[Listing], count: int, now: datetime.datetime, seed: int) -> list:
    """``count`` recurring tasks (origin url, next_run in the last 10 days)."""
    rng = random.Random(seed + 2)
    urls = [url for listing in listings for url, _ in listing.rows]
    picked = sample_rows(urls, count, rng)
    hour = datetime.timedelta(hours=1)
    return [(url, now - hour * rng.uniform(1, 240)) for url in picked]


# --- models ------------------------------------------------------------------


def listed_origin_models(model, lister_ids: dict[str, object], listings: list[Listing]) -> list:
    """ListedOrigin models of every listing, in file order (PyPI first)."""
    cls = model.ListedOrigin
    return [
        cls(lister_id=lister_ids[listing.lister], url=url, visit_type=listing.visit_type,
            last_update=last_update)
        for listing in listings
        for url, last_update in listing.rows
    ]  # fmt: skip


def visit_stats_models(model, rows: list[StatsRow]) -> list:
    cls = model.OriginVisitStats
    status = model.LastVisitStatus
    return [
        cls(
            url=url,
            visit_type=visit_type,
            last_successful=successful,
            last_visit=visit,
            last_visit_status=status(vstatus) if vstatus else None,
            last_scheduled=scheduled,
            last_snapshot=snapshot,
            next_visit_queue_position=position,
            next_position_offset=offset,
            successive_visits=successive,
        )
        for (
            url,
            visit_type,
            successful,
            visit,
            vstatus,
            scheduled,
            snapshot,
            position,
            offset,
            successive,
        ) in rows
    ]


def task_type_model(model):
    return model.TaskType(
        type=TASK_TYPE,
        description="Load an origin (benchmark)",
        backend_name="bench.tasks.load_origin",
        default_interval=datetime.timedelta(days=1),
        min_interval=datetime.timedelta(hours=12),
        max_interval=datetime.timedelta(days=64),
        backoff_factor=2.0,
        num_retries=1,
        retry_delay=datetime.timedelta(hours=1),
    )


def task_models(model, rows: list) -> list:
    args = model.TaskArguments
    return [
        model.Task(
            type=TASK_TYPE,
            arguments=args(args=[], kwargs={"url": url}),
            next_run=next_run,
            policy="recurring",
        )
        for url, next_run in rows
    ]


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
