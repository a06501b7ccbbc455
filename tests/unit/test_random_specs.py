"""Specs nobody wrote by hand: payload schemas drawn at random from the supported subset (seeded,
so every run draws the same ones) with awkward property names. Each spec the generator
accepts must render a package that imports, and its models must give the verdict the JSON
Schema gives on the conformance table's cases (test_conformance.py); each spec it refuses must
be refused with located diagnostics, never a traceback.

This is how the empty-object, nullable-const and nullable-enum gaps were found.
"""

from __future__ import annotations

import copy
import importlib
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.build import build
from generator.diagnostics import SpecError
from generator.load import load_text
from generator.render import render
from tests.support.specs import REPO, SpecUnderTest
from tests.unit.test_conformance import Subject, all_cases

SPECS = 24
BASE = yaml.safe_load((REPO / "tests" / "specs" / "edge_schemas.yaml").read_text("utf-8"))
NAMES = [
    "a", "class", "from", "_x", "Data", "model_config", "schema", "json", "x-y", "1st", "aB",
    "a_b", "validate", "copy", "dict", "fields", "root", "self", "type", "items", "id", "list",
    "Ü", "mißing", "model_dump", "__init__", "with space", "dot.ted", "None", "True", "event",
    "delivery", "msg_id", "headers", "payload", "Field", "BaseModel", "Literal", "MISSING",
    "UUID", "date",
]  # fmt: skip
FORMATS = ["date", "date-time", "uuid", "email", "uri", "ipv4", "ipv6", "hostname"]
PATTERNS = [r"^\d+$", r"^[a-z]{2,4}$", r"\w", "^a|b$", "^(x|y)*$", r"^[\d\w-]+$"]


class Draw:
    """A random payload schema of the subset."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def scalar(self) -> dict[str, Any]:
        rnd = self.rnd
        kind = rnd.choice(["string", "integer", "number", "boolean"])
        schema: dict[str, Any] = {"type": kind}
        if kind == "string":
            if rnd.random() < 0.3:
                schema["format"] = rnd.choice(FORMATS)
            elif rnd.random() < 0.4:
                schema["pattern"] = rnd.choice(PATTERNS)
                if rnd.random() < 0.5:
                    schema["maxLength"] = rnd.randint(5, 50)
            elif rnd.random() < 0.3:
                schema["enum"] = rnd.sample(["a", "b", "ccc", "d d", "class", "", "None", "ü"], 3)
        elif kind in ("integer", "number"):
            if rnd.random() < 0.2:
                return {"type": "integer", "enum": rnd.sample([0, 1, 5, 7, 100], 3)}
            if rnd.random() < 0.5:
                schema["minimum"] = rnd.choice([0, -5, 0.5, 1])
            if rnd.random() < 0.3:
                schema["multipleOf"] = rnd.choice([0.01, 0.1, 2, 0.25, 3])
            if rnd.random() < 0.3:
                schema["exclusiveMaximum"] = rnd.choice([100, 1e9, 7.5])
        elif rnd.random() < 0.3:
            return {"type": "boolean", "const": rnd.random() < 0.5}
        if rnd.random() < 0.2 and "enum" not in schema:
            schema["type"] = [kind, "null"]
        return schema

    def schema(self, depth: int = 0) -> dict[str, Any]:
        roll = self.rnd.random()
        if depth < 3 and roll < 0.25:
            return self.obj(depth + 1)
        if depth < 3 and roll < 0.4:
            array: dict[str, Any] = {"type": "array", "items": self.schema(depth + 1)}
            if self.rnd.random() < 0.4:
                array["minItems"] = self.rnd.randint(0, 2)
            if self.rnd.random() < 0.4:
                array["maxItems"] = self.rnd.randint(2, 5)
            return array
        if depth < 3 and roll < 0.45:
            return {"anyOf": [self.obj(depth + 1), {"type": "null"}]}
        return self.scalar()

    def obj(self, depth: int) -> dict[str, Any]:
        names = self.rnd.sample(NAMES, self.rnd.randint(1, 4))
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: self.schema(depth) for name in names},
        }
        required = [n for n in names if self.rnd.random() < 0.5]
        if required:
            schema["required"] = required
        return schema

    def spec(self) -> str:
        spec = copy.deepcopy(BASE)
        payload = self.obj(0)
        payload["properties"]["eventId"] = {"type": "string", "format": "uuid"}
        payload["properties"]["eventType"] = {"type": "string", "const": "Corners"}
        payload["required"] = sorted({*payload.get("required", []), "eventId", "eventType"})
        message = spec["channels"]["corners"]["messages"]["Corners"]
        message["payload"] = payload
        del message["examples"]  # made from the schema below
        return str(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("random_specs")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.mark.parametrize("seed", range(SPECS))
def test_a_random_spec_is_refused_or_conforms(seed: int, scratch: Path) -> None:
    text = Draw(seed).spec()
    spec = load_text(text, f"random-{seed}.yaml")
    try:
        doc, _ = build(spec)
    except SpecError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            assert diagnostic.where.line > 0 and diagnostic.hint, diagnostic.render()
        return
    package = f"random_spec_{seed}"
    for rel, code in render(doc).items():
        target = scratch / package / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    importlib.import_module(f"{package}.consumers")
    subject = Subject(SpecUnderTest(f"random-{seed}", Path(), spec, doc, package))
    message = subject.messages[0]
    example = subject.make_valid(subject.defs[message.class_name])
    subject.examples_of = lambda class_name: [("made", example)]  # type: ignore[method-assign]
    cases = all_cases(subject)
    assert cases
    for case in cases:
        by_schema = not subject.schema_errors(case.message, case.payload)
        assert by_schema == (not case.keyword), (case.id, case.payload)
        assert subject.model_accepts(case.message, case.payload) == by_schema, case.id
