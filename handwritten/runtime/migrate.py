"""Database migrations: a folder of `NNNN_name.sql` files, applied in order, each exactly once.

An app declares its folder in its `Contribution(migrations=...)`: `filetrash provision` applies
it, and its services (`Service(migrations=...)`) refuse to start until it is applied.

Each file runs in its own transaction together with its row in `schema_migrations`, so a
migration is either applied and recorded or neither. A whole run holds a PostgreSQL advisory
lock, so two runs at once (two deployments, two replicas starting) apply each file once: the
second waits, then finds nothing left to do. An applied file must never change; a changed
checksum stops everything with `MigrationChanged` (write a new migration instead).

Files must not manage transactions themselves (no BEGIN/COMMIT, no CREATE INDEX CONCURRENTLY).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import asyncpg

MIGRATION_FILE: Final = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

LOCK_KEY: Final = 0x66_74_72_61_73_68_6D_67  # "ftrashmg": one key for every migration run
"""The advisory lock that serialises migration runs across processes."""

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

Target: TypeAlias = str | asyncpg.Pool | asyncpg.Connection
"""A database URL, a pool or a connection."""


class MigrationError(Exception):
    """The migrations cannot be applied; the message names the file and what to do."""


class MigrationChanged(MigrationError):
    """A migration that is already applied differs from the file on disk."""


class MigrationFailed(MigrationError):
    """A migration's SQL failed; it was rolled back and is not recorded."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        """`0001_trash`: the file name without `.sql`, as plans and logs show it."""
        return f"{self.version:04d}_{self.name}"


def load_migrations(migrations_dir: Path) -> list[Migration]:
    """The migration files in version order; none when the folder is absent or empty."""
    if not migrations_dir.is_dir():
        return []
    found: dict[int, Migration] = {}
    for path in sorted(migrations_dir.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: a migration's file name must look like 0001_short_name.sql "
                "(four digits, an underscore, lower-case letters, digits and underscores)"
            )
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"{path}: version {version:04d} is also used by {found[version].path.name}; "
                "give one of them the next free number"
            )
        sql = path.read_text(encoding="utf-8")
        found[version] = Migration(version, match["name"], path, sql, checksum(sql))
    return [found[version] for version in sorted(found)]


def checksum(sql: str) -> str:
    """sha256 of the file's text, line endings normalised (a CRLF checkout is no change)."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


@asynccontextmanager
async def _connection(target: Target) -> AsyncIterator[Any]:
    if isinstance(target, str):
        connection = await asyncpg.connect(target)
        try:
            yield connection
        finally:
            await connection.close()
    elif isinstance(target, asyncpg.Pool):
        async with target.acquire() as connection:
            yield connection
    else:
        yield target


async def _applied(connection: Any) -> dict[int, tuple[str, str]]:
    """version → (name, checksum) of what is recorded; empty before the first run."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {row["version"]: (row["name"], row["checksum"]) for row in rows}


def _pending(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    """The migrations still to apply, after checking that every applied one is unchanged."""
    on_disk = {m.version: m for m in migrations}
    for version, (name, recorded) in sorted(applied.items()):
        migration = on_disk.get(version)
        label = f"{version:04d}_{name}"
        if migration is None:
            raise MigrationError(
                f"migration {label} is applied to the database but missing from the "
                "migrations folder: is this an older checkout?"
            )
        if migration.checksum != recorded or migration.name != name:
            raise MigrationChanged(
                f"migration {label} was changed after it was applied "
                f"({migration.path.name} has checksum {migration.checksum[:12]}…, the database "
                f"recorded {recorded[:12]}…): restore the file and put the change in a new "
                "migration"
            )
    return [m for m in migrations if m.version not in applied]


async def pending_migrations(target: Target, migrations_dir: Path) -> list[str]:
    """The labels (`0001_trash`) of the migrations `migrate` would apply; changes nothing.

    Raises `MigrationChanged` as `migrate` would.
    """
    migrations = load_migrations(migrations_dir)
    async with _connection(target) as connection:
        return [m.label for m in _pending(migrations, await _applied(connection))]


async def migrate(target: Target, migrations_dir: Path) -> list[str]:
    """Apply the pending migrations in order; returns the labels of those applied now.

    Safe to run concurrently (an advisory lock serialises runs) and again (nothing left to
    do returns []). A failing migration raises `MigrationFailed`; the ones before it stay.
    """
    migrations = load_migrations(migrations_dir)
    async with _connection(target) as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await connection.execute(_CREATE_TABLE)
            pending = _pending(migrations, await _applied(connection))
            done: list[str] = []
            for migration in pending:
                await _apply(connection, migration)
                done.append(migration.label)
            return done
        finally:
            if not connection.is_closed():  # a lost connection has released the lock already
                await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _apply(connection: Any, migration: Migration) -> None:
    try:
        async with connection.transaction():
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as error:
        where = f" at position {error.position}" if getattr(error, "position", None) else ""
        raise MigrationFailed(
            f"migration {migration.label} ({migration.path}) failed{where}: "
            f"{type(error).__name__}: {error}; it was rolled back and is not recorded"
        ) from error
