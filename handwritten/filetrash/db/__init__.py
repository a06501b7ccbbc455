"""The filetrash app's tables: its migrations (applied by `filetrash provision` through the
app's contribution) and its queries."""

from __future__ import annotations

from pathlib import Path
from typing import Final

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
