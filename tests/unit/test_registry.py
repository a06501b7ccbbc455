"""Discovery of services and app contributions: declared, found by reading source, imported one
by one, a broken module reported in one line without hiding the others."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handwritten.runtime.registry import (
    Contribution,
    DatabaseNotConnected,
    Service,
    ServiceResources,
    UnknownService,
    collect,
    declaring_modules,
    service,
)
from handwritten.runtime.servers import ServersNotConfigured, ServerUrls, resolve_servers

GOOD = """
from generated.consumers import TRASH_PROCESSOR
from handwritten.runtime.registry import Service

SERVICE = Service(TRASH_PROCESSOR, lambda r: object(), "Good", "dev-good")
"""
GONE = """
from generated.consumers import NO_SUCH_ENDPOINT
SERVICE = None
"""
WRONG = "SERVICE = 42\n"
QUIET = "raise AssertionError('a module without SERVICE must not be imported')\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`apps_<id>/` standing in for `handwritten/`: an app package, a runtime package, a folder
    that is no package."""
    root = tmp_path / f"apps_{tmp_path.name.replace('-', '_')}"
    for package in ("shop", "runtime"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / "__init__.py").write_text("", encoding="utf-8")
    (root / "shop" / "good.py").write_text(GOOD, encoding="utf-8")
    (root / "shop" / "gone.py").write_text(GONE, encoding="utf-8")
    (root / "shop" / "wrong.py").write_text(WRONG, encoding="utf-8")
    (root / "shop" / "quiet.py").write_text(QUIET, encoding="utf-8")
    (root / "runtime" / "own.py").write_text(GOOD, encoding="utf-8")
    (root / "notes").mkdir()
    (root / "notes" / "x.py").write_text(GOOD, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m.startswith(root.name)]:
        del sys.modules[name]


def test_only_declaring_modules_of_app_packages_are_found(root: Path) -> None:
    assert declaring_modules("SERVICE", root) == [
        f"{root.name}.shop.gone",
        f"{root.name}.shop.good",
        f"{root.name}.shop.wrong",
    ]


def test_a_broken_module_is_one_line_and_hides_nothing(root: Path) -> None:
    found = collect("SERVICE", Service, root)
    [(module, declared)] = found.declared
    assert module == f"{root.name}.shop.good" and declared.name == "trash-processor"
    gone, wrong = (str(problem) for problem in found.problems)
    assert gone.startswith(f"{root.name}/shop/gone.py: cannot be imported: cannot import name ")
    assert gone.endswith(
        "(the spec no longer generates it: run `just generate`, or delete this module)"
    )
    assert (
        wrong == f"{root.name}/shop/wrong.py: SERVICE is not a handwritten.runtime.registry.Service"
    )
    assert all("\n" not in str(problem) for problem in found.problems)
    assert f"{root.name}.shop.quiet" not in sys.modules


def test_contributions_are_found_the_same_way(root: Path) -> None:
    (root / "shop" / "app.py").write_text(
        "from handwritten.runtime.registry import Contribution\n"
        "CONTRIBUTION = Contribution(name='shop')\n",
        encoding="utf-8",
    )
    found = collect("CONTRIBUTION", Contribution, root)
    assert [value.name for _, value in found.declared] == ["shop"]
    assert found.problems == ()


def test_an_unknown_service_names_the_ones_there_are() -> None:
    with pytest.raises(UnknownService) as raised:
        service("no-such-service")
    text = str(raised.value)
    assert text.startswith("unknown service 'no-such-service'; choose one of: ")
    assert "\n" not in text


def test_a_service_without_a_database_has_no_pool_and_says_how_to_get_one() -> None:
    resources = ServiceResources(js=object(), service="receipts")  # type: ignore[arg-type]
    with pytest.raises(DatabaseNotConnected, match=r"^receipts has no database connection: "):
        _ = resources.pool
    assert resources.option("retention", int, 7) == 7
    typed = ServiceResources(js=object(), options={"retention": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="option 'retention'"):
        typed.option("retention", int, 7)


def test_nats_alone_is_enough_when_no_database_is_needed(tmp_path: Path) -> None:
    env = {"NATS_URL": "nats://n:4222"}
    assert resolve_servers(tmp_path, environ=env, database=False) == ServerUrls(
        "nats://n:4222", None, "env"
    )
    with pytest.raises(ServersNotConfigured, match="DATABASE_URL not set"):
        resolve_servers(tmp_path, environ=env)
    with pytest.raises(ServersNotConfigured, match="DATABASE_URL not set"):
        ServerUrls("nats://n:4222", None, "env").database()
