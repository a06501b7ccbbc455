"""The generated code reads like careful handwritten code: it imports, passes ruff and
`mypy --strict`, and its pieces agree with each other. Checked on generated/ and on the packages
of the golden cases (copied to a temporary folder as importable packages)."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from nats.js import api as nats_api

from generator import subjects
from generator.render import nats_member
from tests.golden import regen

REPO = Path(__file__).resolve().parents[2]
MODULES = ["__init__", "models", "topology", "publishers", "consumers"]
GOLDEN_PACKAGES = [c for c in regen.cases() if (c / regen.EXPECTED_DIR).is_dir()]


@pytest.fixture(scope="module")
def golden_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each golden case's expected/ as a package `golden_<case>` under one folder."""
    root = tmp_path_factory.mktemp("golden_packages")
    for case in GOLDEN_PACKAGES:
        shutil.copytree(case / regen.EXPECTED_DIR, root / f"golden_{case.name}")
    return root


@pytest.fixture(scope="module")
def golden_modules(golden_root: Path) -> Iterator[dict[str, dict[str, ModuleType]]]:
    sys.path.insert(0, str(golden_root))
    try:
        yield {
            case.name: {
                name: importlib.import_module(
                    f"golden_{case.name}" + ("" if name == "__init__" else f".{name}")
                )
                for name in MODULES
            }
            for case in GOLDEN_PACKAGES
        }
    finally:
        sys.path.remove(str(golden_root))
        for name in [m for m in sys.modules if m.startswith("golden_")]:
            del sys.modules[name]


def generated_modules() -> dict[str, ModuleType]:
    return {
        name: importlib.import_module("generated" + ("" if name == "__init__" else f".{name}"))
        for name in MODULES
    }


def test_every_generated_module_imports() -> None:
    modules = generated_modules()
    assert modules["__init__"].__doc__
    assert modules["consumers"].ENDPOINTS
    assert modules["topology"].STREAMS


def test_every_golden_package_imports(golden_modules: dict[str, dict[str, ModuleType]]) -> None:
    assert len(golden_modules) >= 4
    for case, modules in golden_modules.items():
        assert set(modules) == set(MODULES), case


def _check_consistency(modules: dict[str, ModuleType], where: str) -> None:
    """Topology, consumers and publishers describe one and the same set of streams/durables."""
    streams = modules["topology"].STREAMS
    consumers = modules["topology"].CONSUMERS
    endpoints = modules["consumers"].ENDPOINTS
    assert set(endpoints) == set(consumers), where
    for name, config in streams.items():
        assert config.name == name, where
    for durable, endpoint in endpoints.items():
        binding = consumers[durable]
        assert endpoint.durable == durable == binding.config.durable_name, where
        assert endpoint.stream == binding.stream and endpoint.stream in streams, where
        assert endpoint.filter_subject == binding.config.filter_subject, where
        stream_subjects = streams[endpoint.stream].subjects
        assert any(subjects.contains(s, endpoint.filter_subject) for s in stream_subjects), where
        dead = endpoint.dead_letter_subject
        assert any(subjects.contains(s, dead) for c in streams.values() for s in c.subjects), where
        assert not subjects.contains(endpoint.filter_subject, dead), f"{where}: {durable} loops"
        assert endpoint.event_types, where
        assert len(set(endpoint.event_types)) == len(endpoint.event_types), where
        backoff = binding.config.backoff or []
        if backoff and binding.config.max_deliver is not None:
            assert binding.config.max_deliver > len(backoff), where


def test_generated_pieces_agree() -> None:
    _check_consistency(generated_modules(), "generated")


def test_golden_pieces_agree(golden_modules: dict[str, dict[str, ModuleType]]) -> None:
    for case, modules in golden_modules.items():
        _check_consistency(modules, case)


def test_discriminated_unions_decode_each_member(
    golden_modules: dict[str, dict[str, ModuleType]],
) -> None:
    """The multi-message consumer of the golden case routes each example to its own class."""
    spec = yaml.safe_load(
        (regen.GOLDEN / "multi_message" / "spec.yaml").read_text(encoding="utf-8")
    )
    endpoint = golden_modules["multi_message"]["consumers"].ENDPOINTS["order-ledger"]
    seen = set()
    for key, message in spec["components"]["messages"].items():
        for example in message.get("examples", []):
            if key in endpoint.event_types:
                event = endpoint.decode(json.dumps(example["payload"]).encode())
                assert type(event).__name__ == key
                seen.add(key)
    assert seen == set(endpoint.event_types)


def test_every_nats_enum_value_has_a_member() -> None:
    """Every value the extension schema allows names a real nats-py enum member."""
    schema = json.loads((REPO / "generator" / "schemas" / "extensions.schema.json").read_text())
    defs = schema["$defs"]
    enums = {
        nats_api.RetentionPolicy: defs["stream"]["properties"]["retention"]["enum"],
        nats_api.StorageType: defs["stream"]["properties"]["storage"]["enum"],
        nats_api.DiscardPolicy: defs["stream"]["properties"]["discard"]["enum"],
        nats_api.DeliverPolicy: defs["consumer"]["properties"]["deliver_policy"]["enum"],
        nats_api.AckPolicy: [defs["consumer"]["properties"]["ack_policy"]["const"]],
    }
    for enum, values in enums.items():
        for value in values:
            assert getattr(enum, nats_member(value)).value == value, (enum, value)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _targets(golden_root: Path) -> list[str]:
    return ["generated", *(str(p) for p in sorted(golden_root.iterdir()))]


def test_ruff_check_passes(golden_root: Path) -> None:
    isolated = _ruff("check", "--isolated", "--line-length", "100", *_targets(golden_root))
    assert isolated.returncode == 0, isolated.stdout + isolated.stderr
    project = _ruff("check", "generated")  # with the project's rule set, as `just lint` runs it
    assert project.returncode == 0, project.stdout + project.stderr


def test_ruff_format_check_passes(golden_root: Path) -> None:
    isolated = _ruff(
        "format", "--check", "--isolated", "--line-length", "100", *_targets(golden_root)
    )
    assert isolated.returncode == 0, isolated.stdout + isolated.stderr
    project = _ruff("format", "--check", "generated")
    assert project.returncode == 0, project.stdout + project.stderr


@pytest.mark.timeout(300)  # the slowest unit test: a cold mypy run with the pydantic plugin
def test_mypy_strict_passes(golden_root: Path, tmp_path: Path) -> None:
    """`mypy --strict` with the project's configuration (pydantic plugin, nats stubs missing)
    on generated/ and on every golden package."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            *_targets(golden_root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
