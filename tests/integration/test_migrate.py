"""Migrations against a real PostgreSQL: once each, in order, safe to run twice or at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from handwritten.runtime.migrate import (
    LOCK_KEY,
    MigrationChanged,
    MigrationError,
    MigrationFailed,
    load_migrations,
    migrate,
    pending_migrations,
)

pytestmark = pytest.mark.integration

# Neither file may run twice: a second CREATE TABLE fails, a second INSERT adds a row.
FIRST = """
CREATE TABLE applications (migration text NOT NULL);
INSERT INTO applications VALUES ('0001');
"""
SECOND = """
CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL);
INSERT INTO applications VALUES ('0002');
"""


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_applications.sql").write_text(FIRST, encoding="utf-8")
    (folder / "0002_notes.sql").write_text(SECOND, encoding="utf-8")
    return folder


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def applications(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch("SELECT migration FROM applications ORDER BY migration")
    return [row["migration"] for row in rows]


async def recorded(db: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(row["version"], row["name"]) for row in rows]


async def test_migrations_are_applied_once_in_order(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    assert await pending_migrations(database_url, migrations_dir) == [
        "0001_applications",
        "0002_notes",
    ]
    assert await db.fetchval("SELECT to_regclass('schema_migrations')") is None  # plan only

    assert await migrate(database_url, migrations_dir) == ["0001_applications", "0002_notes"]
    assert await applications(db) == ["0001", "0002"]
    assert await recorded(db) == [(1, "applications"), (2, "notes")]
    checksums = await db.fetch("SELECT checksum FROM schema_migrations ORDER BY version")
    assert [row["checksum"] for row in checksums] == [
        m.checksum for m in load_migrations(migrations_dir)
    ]

    assert await migrate(database_url, migrations_dir) == []
    assert await pending_migrations(database_url, migrations_dir) == []
    assert await applications(db) == ["0001", "0002"]


async def test_a_new_migration_is_applied_on_the_next_run(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    await migrate(database_url, migrations_dir)
    (migrations_dir / "0003_more.sql").write_text(
        "INSERT INTO applications VALUES ('0003');", encoding="utf-8"
    )
    assert await pending_migrations(database_url, migrations_dir) == ["0003_more"]
    assert await migrate(database_url, migrations_dir) == ["0003_more"]
    assert await applications(db) == ["0001", "0002", "0003"]


async def test_a_pool_or_a_connection_works_as_the_target(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await migrate(pool, migrations_dir) == ["0001_applications", "0002_notes"]
    finally:
        await pool.close()
    assert await migrate(db, migrations_dir) == []
    # The connection was handed back without the advisory lock.
    assert await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_concurrent_runs_apply_each_migration_exactly_once(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    # Hold the lock so that both runs are certainly waiting on it at the same time.
    await db.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    runs = asyncio.gather(
        migrate(database_url, migrations_dir), migrate(database_url, migrations_dir)
    )
    try:
        async with asyncio.timeout(30):
            while (
                await db.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                < 2
            ):
                await asyncio.sleep(0.02)
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    first, second = await runs

    assert sorted([first, second], key=len) == [[], ["0001_applications", "0002_notes"]]
    assert await applications(db) == ["0001", "0002"]
    assert await recorded(db) == [(1, "applications"), (2, "notes")]


async def test_a_changed_applied_migration_is_refused_and_nothing_more_applies(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    await migrate(database_url, migrations_dir)
    (migrations_dir / "0001_applications.sql").write_text(FIRST + "-- edited\n", encoding="utf-8")
    (migrations_dir / "0003_more.sql").write_text(
        "INSERT INTO applications VALUES ('0003');", encoding="utf-8"
    )

    with pytest.raises(
        MigrationChanged, match="0001_applications was changed after it was applied"
    ):
        await pending_migrations(database_url, migrations_dir)
    with pytest.raises(MigrationChanged, match="put the change in a new migration"):
        await migrate(database_url, migrations_dir)
    assert await applications(db) == ["0001", "0002"]
    assert await recorded(db) == [(1, "applications"), (2, "notes")]


async def test_a_failing_migration_is_rolled_back_and_not_recorded(
    database_url: str, migrations_dir: Path, db: asyncpg.Connection
) -> None:
    (migrations_dir / "0003_broken.sql").write_text(
        "INSERT INTO applications VALUES ('0003');\nSELECT no_such_column FROM notes;",
        encoding="utf-8",
    )
    with pytest.raises(MigrationFailed, match=r"0003_broken .*no_such_column"):
        await migrate(database_url, migrations_dir)
    assert await applications(db) == ["0001", "0002"]  # not 0003: its insert was rolled back
    assert await recorded(db) == [(1, "applications"), (2, "notes")]
    assert await pending_migrations(database_url, migrations_dir) == ["0003_broken"]


async def test_an_absent_or_empty_folder_has_nothing_to_apply(
    database_url: str, tmp_path: Path
) -> None:
    assert await migrate(database_url, tmp_path / "absent") == []
    assert await migrate(database_url, tmp_path) == []
    assert await pending_migrations(database_url, tmp_path / "absent") == []


def test_badly_named_or_duplicate_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"0001_short_name\.sql"):
        load_migrations(tmp_path)
    (tmp_path / "1_init.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("SELECT 1;", encoding="utf-8")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"version 0001 is also used by 0001_a\.sql"):
        load_migrations(tmp_path)
