"""The filetrash app reaches the generic CLI only through its discovered CONTRIBUTION: its
commands, its option of `filetrash run`, its migrations for `filetrash provision`."""

from __future__ import annotations

import pytest

from handwritten.cli import build_parser, main
from handwritten.filetrash.db import MIGRATIONS
from handwritten.runtime.registry import contributions, migrations_to_apply


def test_the_app_is_discovered_with_its_commands_and_migrations() -> None:
    found, problems = contributions()
    assert [c.name for c in found] == ["filetrash"] and problems == ()
    assert migrations_to_apply() == MIGRATIONS
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(commands) == [
        "up",
        "down",
        "status",
        "headroom",
        "provision",
        "run",
        "dlq",
        "publish",
        "purge",
        "demo",
    ]
    assert "--retention-days" in commands["run"].format_help()


def test_a_bad_retention_is_one_line_before_any_server_is_asked(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "trash-processor", "--retention-days", "0"]) == 2
    assert capsys.readouterr().err == (
        "filetrash: error: --retention-days must be a number of days in (0, 36500], not '0'\n"
    )
