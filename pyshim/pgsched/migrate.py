"""Schema migrations and function (re)installation.

``sql/migrations/NNNN_what.sql`` are applied once each, in order, each in its
own transaction that records the file's name and SHA-256 first; editing an
applied migration is an error.  ``sql/functions/*.sql`` are jinja2 templates
(macros from ``sql/macros/``) rendered and re-applied on every run, after all
routines of the schema were dropped, so those files alone define them.

``python -m pgsched.migrate DSN`` and ``pgsched db migrate`` run this code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2
import psycopg

logger = logging.getLogger(__name__)

SCHEMA = "scheduler"
# Serializes concurrent migrators on one database (any constant will do).
MIGRATION_LOCK_KEY = 0x70677363686564  # "pgsched"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The database and the migration files disagree."""


def sql_dir() -> Path:
    """Where the SQL files are: $PGSCHED_SQL_DIR, else the checkout's sql/."""
    env = os.environ.get("PGSCHED_SQL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sql"


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_migrations(root: Path | None = None) -> list[Migration]:
    folder = (root or sql_dir()) / "migrations"
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        if not MIGRATION_NAME.match(path.name):
            raise MigrationError(f"migration file name not NNNN_name.sql: {path.name}")
        migrations.append(Migration(path.stem, path, path.read_text()))
    numbers = [m.name[:4] for m in migrations]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migrations share a number: {numbers}")
    return migrations


def template_environment(root: Path | None = None) -> jinja2.Environment:
    """The jinja2 environment of sql/functions, with sql/macros as globals.

    The same context (``schema``) is given to sqlfluff in .sqlfluff, so lint
    sees what the database gets.
    """
    base = root or sql_dir()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(base)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals["schema"] = SCHEMA
    for macro_file in sorted((base / "macros").glob("*.sql")):
        module = env.get_template(f"macros/{macro_file.name}").module
        for name in dir(module):
            if not name.startswith("_"):
                env.globals[name] = getattr(module, name)
    return env


def render_functions(root: Path | None = None) -> list[tuple[str, str]]:
    """(file name, rendered SQL) of every sql/functions file, in name order."""
    base = root or sql_dir()
    env = template_environment(base)
    return [
        (path.name, env.get_template(f"functions/{path.name}").render())
        for path in sorted((base / "functions").glob("*.sql"))
    ]


_TRACKING_DDL = """
CREATE SCHEMA IF NOT EXISTS scheduler;
CREATE TABLE IF NOT EXISTS scheduler.schema_migration (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE scheduler.schema_migration IS
'Migrations applied to this database, with the SHA-256 of each file';
"""


def applied_migrations(conn: psycopg.Connection) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass('scheduler.schema_migration')").fetchone()[0]
    if exists is None:
        return {}
    rows = conn.execute("SELECT name, checksum FROM scheduler.schema_migration").fetchall()
    return dict(rows)


def status(conninfo: str) -> list[tuple[str, str]]:
    """(name, 'applied' | 'pending') of every migration file."""
    with psycopg.connect(conninfo) as conn:
        done = applied_migrations(conn)
    return [(m.name, "applied" if m.name in done else "pending") for m in load_migrations()]


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations, then re-apply the functions.

    Returns the names of the migrations applied by this call.
    """
    migrations = load_migrations()
    functions = render_functions()
    drop_functions = (sql_dir() / "meta" / "drop_functions.sql").read_text()
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            conn.execute("SET client_min_messages = warning")
            conn.execute(_TRACKING_DDL)
            done = applied_migrations(conn)
            known = {m.name for m in migrations}
            unknown = sorted(set(done) - known)
            if unknown:
                raise MigrationError(
                    f"database has migrations this pgsched does not know: {unknown}; "
                    "it was migrated by a newer pgsched"
                )
            for m in migrations:
                if m.name in done:
                    if done[m.name] != m.checksum:
                        raise MigrationError(
                            f"migration {m.name} was edited after it was applied "
                            f"(recorded sha256 {done[m.name][:12]}, file {m.checksum[:12]}); "
                            "write a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO scheduler.schema_migration (name, checksum) VALUES (%s, %s)",
                        [m.name, m.checksum],
                    )
                    conn.execute(m.text)
                logger.info("applied migration %s", m.name)
                applied.append(m.name)
            with conn.transaction():
                conn.execute(drop_functions)
                for name, text in functions:
                    try:
                        conn.execute(text)
                    except psycopg.Error as exc:
                        raise MigrationError(f"sql/functions/{name}: {exc}") from exc
            logger.info("installed functions from %d files", len(functions))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    return applied


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    conninfo = args[0] if args else os.environ.get("PGSCHED_DB", "")
    if not conninfo:
        print("usage: python -m pgsched.migrate DSN (or set PGSCHED_DB)", file=sys.stderr)
        return 2
    applied = migrate(conninfo)
    print(f"{len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
