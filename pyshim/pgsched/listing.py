"""Listing files: read a registry listing (TSV, gzipped or not) and load it as listed origins.

A listing file is tab-separated with a header line; the header tells the format:

========================================  ==========================================
header                                    origins
========================================  ==========================================
``name latest_version last_release_month``  PyPI: ``https://pypi.org/project/NAME/``,
                                          last_update = first day of the month, UTC
``name latest_version monthly_downloads``   npm: ``https://www.npmjs.com/package/NAME``,
                                          no last_update
========================================  ==========================================

A line that cannot be read (wrong number of fields, empty name, bad date or
count, invalid UTF-8, a NUL character) is reported with its line number and
skipped; the others load.  Origins go to ``record_listed_origins`` in batches,
one atomic call each: a batch the database refuses writes nothing, and is
split until the refused lines are found and reported, so the rest still
loads.
"""

from __future__ import annotations

import datetime
import gzip
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .exc import StaleData
from .model import ListedOrigin, Lister

DEFAULT_BATCH_SIZE = 2000


class ListingError(ValueError):
    """The file as a whole cannot be read (missing, empty, unknown header)."""


@dataclass(frozen=True)
class LineError:
    """One line that was not loaded, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Entry:
    """One readable line: the origin it stands for."""

    line: int
    url: str
    last_update: datetime.datetime | None


def _pypi(fields: list[str]) -> tuple[str, datetime.datetime | None]:
    name, _version, month = fields
    try:
        if len(month) != 7 or month[4] != "-":
            raise ValueError
        last_update = datetime.datetime(int(month[:4]), int(month[5:]), 1, tzinfo=datetime.UTC)
    except ValueError:
        raise ValueError(f"bad last_release_month {month!r} (expected YYYY-MM)") from None
    return f"https://pypi.org/project/{name}/", last_update


def _npm(fields: list[str]) -> tuple[str, datetime.datetime | None]:
    name, _version, downloads = fields
    if not downloads.isascii() or not downloads.isdigit():
        raise ValueError(f"bad monthly_downloads {downloads!r} (expected a whole number)")
    return f"https://www.npmjs.com/package/{name}", None


@dataclass(frozen=True)
class ListingFormat:
    name: str
    columns: tuple[str, ...]
    parse: Callable[[list[str]], tuple[str, datetime.datetime | None]]


FORMATS = (
    ListingFormat("pypi", ("name", "latest_version", "last_release_month"), _pypi),
    ListingFormat("npm", ("name", "latest_version", "monthly_downloads"), _npm),
)


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(lines, raw): ``lines`` yields the file's lines, ``raw.tell()`` its progress in bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


class ListingReader:
    """Iterate over the entries of a listing file; bad lines land in ``errors``.

    ``position`` is how far into the file (in bytes, compressed when the file
    is) the reading got; ``size`` is the file size.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ListingError(f"{self.path}: no such file")
        self.size = self.path.stat().st_size
        self.errors: list[LineError] = []
        self.lines_read = 0
        self._lines, self._raw = _open(self.path)
        try:
            header = self._lines.readline()
        except (OSError, EOFError) as e:
            self.close()
            raise ListingError(f"{self.path}: cannot read: {e}") from None
        if not header:
            self.close()
            raise ListingError(f"{self.path}: empty file (expected a header line)")
        columns = tuple(header.decode("utf-8", "replace").rstrip("\r\n").split("\t"))
        for fmt in FORMATS:
            if columns == fmt.columns:
                self.format = fmt
                break
        else:
            self.close()
            expected = " or ".join(repr("\t".join(f.columns)) for f in FORMATS)
            found = "\t".join(columns)
            raise ListingError(
                f"{self.path}: line 1: unknown header {found!r}; expected {expected}"
            )

    @property
    def position(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._lines.close()
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self) -> Iterator[Entry]:
        width = len(self.format.columns)
        lineno = 1
        try:
            for raw_line in self._lines:
                lineno += 1
                self.lines_read += 1
                try:
                    text = raw_line.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.errors.append(
                        LineError(lineno, f"not UTF-8 ({e.reason} at byte {e.start})")
                    )
                    continue
                text = text.rstrip("\r\n")
                if not text.strip():
                    self.errors.append(LineError(lineno, "empty line"))
                    continue
                if "\x00" in text:
                    self.errors.append(LineError(lineno, "contains a NUL character"))
                    continue
                fields = text.split("\t")
                if len(fields) != width:
                    self.errors.append(
                        LineError(
                            lineno,
                            f"malformed line: {len(fields)} tab-separated fields, expected "
                            f"{width} ({', '.join(self.format.columns)})",
                        )
                    )
                    continue
                name = fields[0]
                if not name.strip():
                    self.errors.append(LineError(lineno, "empty name"))
                    continue
                if name != name.strip():
                    self.errors.append(LineError(lineno, f"name {name!r} has surrounding spaces"))
                    continue
                try:
                    url, last_update = self.format.parse(fields)
                except ValueError as e:
                    self.errors.append(LineError(lineno, str(e)))
                    continue
                yield Entry(lineno, url, last_update)
        except (OSError, EOFError) as e:
            # A truncated or corrupt gzip stream: what was read before stays.
            self.errors.append(LineError(lineno + 1, f"cannot read further: {e}"))


@dataclass
class ImportResult:
    """What an import did."""

    lister: Lister
    format: str
    lines: int = 0
    loaded: int = 0
    batches: int = 0
    seconds: float = 0.0
    errors: list[LineError] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.loaded / self.seconds if self.seconds > 0 else 0.0


def import_listing(
    scheduler,
    path: str | Path,
    lister_name: str,
    visit_type: str,
    instance_name: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    finished_at: datetime.datetime | None = None,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[LineError], None] | None = None,
) -> ImportResult:
    """Load a listing file as the origins of a lister.

    Each batch of ``batch_size`` origins is one ``record_listed_origins`` call.
    At the end the lister's ``last_listing_finished_at`` becomes
    ``finished_at`` (default: now) through ``update_lister``.  ``progress``
    receives the number of bytes read since its previous call; ``on_error``
    each line that was not loaded, as soon as it is known.
    """
    if not isinstance(lister_name, str) or not lister_name:
        raise ValueError("lister_name: must be a non-empty string")
    if not isinstance(visit_type, str) or not visit_type:
        raise ValueError("visit_type: must be a non-empty string")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
    if finished_at is not None and finished_at.tzinfo is None:
        raise ValueError("finished_at: must be a timezone-aware datetime")

    started = time.perf_counter()
    with ListingReader(path) as reader:
        lister = scheduler.get_or_create_lister(lister_name, instance_name)
        result = ImportResult(lister=lister, format=reader.format.name)
        reported = 0
        position = 0

        def report() -> None:
            nonlocal reported, position
            while reported < len(reader.errors):
                error = reader.errors[reported]
                result.errors.append(error)
                if on_error:
                    on_error(error)
                reported += 1
            if progress:
                now = reader.position
                progress(now - position)
                position = now

        def record(batch: list[Entry]) -> None:
            origins = [
                ListedOrigin(
                    lister_id=lister.id, url=e.url, visit_type=visit_type, last_update=e.last_update
                )
                for e in batch
            ]
            try:
                scheduler.record_listed_origins(origins)
            except (ValueError, TypeError) as e:
                # The call wrote nothing: find the refused lines by halving.
                if len(batch) == 1:
                    reader.errors.append(LineError(batch[0].line, f"refused: {e}"))
                    return
                half = len(batch) // 2
                record(batch[:half])
                record(batch[half:])
                return
            result.loaded += len(batch)
            result.batches += 1

        batch: list[Entry] = []
        for entry in reader:
            batch.append(entry)
            if len(batch) >= batch_size:
                record(batch)
                batch = []
                report()
        if batch:
            record(batch)
        report()
        result.lines = reader.lines_read
        result.errors.sort(key=lambda e: e.line)

    finished = finished_at or datetime.datetime.now(datetime.UTC)
    for attempt in range(3):
        current = scheduler.get_lister(lister_name, instance_name)
        try:
            result.lister = scheduler.update_lister(
                current.evolve(last_listing_finished_at=finished)
            )
            break
        except StaleData:
            if attempt == 2:
                raise
    result.seconds = time.perf_counter() - started
    return result
