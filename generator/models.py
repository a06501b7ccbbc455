"""Pydantic v2 models for the payloads, through datamodel-code-generator.

The builder hands over one JSON Schema whose $defs are the payloads and the schemas they share;
the options below fix the style (aliases for wire names, Literal constants, constraints kept,
strict base class) so the output is the same on every machine.
"""

from __future__ import annotations

import ast
import json
import warnings
from typing import Any

from datamodel_code_generator import (  # type: ignore[attr-defined]
    DataModelType,
    Formatter,
    InputFileType,
    LiteralType,
    PythonVersion,
    generate,
)
from datamodel_code_generator.enums import StrictTypes, TargetPydanticVersion
from datamodel_code_generator.format import DatetimeClassType

from generator import formats, subset

# The root of the combined schema has no meaning of its own; it is generated under this name
# and dropped from the module.
_ROOT = "FiletrashModelsRoot"
BASE_CLASS = "handwritten.runtime.contract.EventModel"


class ModelGenerationError(Exception):
    """datamodel-code-generator refused a schema; the message says why."""


WIRE_KEY = "x-wire"
"""The key of each field's wire rule (handwritten/runtime/wire.py reads it)."""


def render_models(models_schema: str, header: str) -> str:
    schema: dict[str, Any] = json.loads(models_schema)
    if not schema["$defs"]:
        return f"{header}\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = _generate(schema, header)
    dropped = [str(w.message) for w in caught if "without this constraint" in str(w.message)]
    if dropped:
        # A model without a constraint the schema has would accept what the schema refuses.
        raise ModelGenerationError(dropped[0])
    return _drop_class(code, _ROOT)


def _generate(schema: dict[str, Any], header: str) -> str:
    try:
        code = generate(
            for_pydantic(schema),
            input_file_type=InputFileType.JsonSchema,
            output_model_type=DataModelType.PydanticV2BaseModel,
            class_name=_ROOT,
            base_class=BASE_CLASS,
            snake_case_field=True,
            allow_population_by_field_name=True,
            collapse_root_models=True,
            use_missing_sentinel=True,
            strict_nullable=True,
            target_pydantic_version=TargetPydanticVersion.V2_14,
            use_annotated=True,
            field_constraints=True,
            use_standard_collections=True,
            use_union_operator=True,
            target_python_version=PythonVersion.PY_311,
            disable_timestamp=True,
            use_double_quotes=True,
            enum_field_as_literal=LiteralType.All,
            use_schema_description=True,
            use_field_description=True,
            field_extra_keys={WIRE_KEY},
            output_datetime_class=DatetimeClassType.Awaredatetime,
            strict_types=[StrictTypes.int, StrictTypes.float, StrictTypes.bool, StrictTypes.str],
            formatters=[Formatter.BUILTIN],
            # Otherwise read from the nearest pyproject.toml of the working directory; its
            # magic trailing commas would then survive ruff and change the output.
            builtin_format_line_length=100,
            custom_file_header=header,
        )
    except Exception as exc:  # the library raises many kinds; all mean "this schema"
        raise ModelGenerationError(
            str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        ) from exc
    if not isinstance(code, str):
        raise ModelGenerationError(
            "datamodel-code-generator produced several modules; expected one"
        )
    return code


def for_pydantic(schema: dict[str, Any]) -> dict[str, Any]:
    """The supported JSON Schema as datamodel-code-generator should see it: what pydantic checks
    exactly is kept; formats it holds as plain strings and `multipleOf` go, and each property
    gets the wire rule that the runtime checks instead; `\\d` and `\\w` in patterns are spelt
    out as ECMA's ASCII classes; annotations of our own (x-...) go."""
    defs: dict[str, Any] = schema["$defs"]

    def deref(node: Any) -> Any:
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    def adapt(node: Any) -> Any:
        if isinstance(node, list):
            return [adapt(v) for v in node]
        if not isinstance(node, dict):
            return node
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key.startswith("x-") or key == "multipleOf":
                continue
            if key == "format" and value not in subset.PARSED_FORMATS:
                continue
            if key == "pattern" and isinstance(value, str):
                result[key] = formats.ascii_classes(value)
            elif key == "properties" and isinstance(value, dict):
                result[key] = {name: _with_rule(adapt(sub), sub) for name, sub in value.items()}
            elif key in ("default", "const", "enum"):
                result[key] = value
            else:
                result[key] = adapt(value)
        return result

    def _with_rule(adapted: Any, original: Any) -> Any:
        rule = subset.wire_rule(original, deref)
        return {**adapted, WIRE_KEY: rule} if rule and isinstance(adapted, dict) else adapted

    return {**schema, "$defs": {name: adapt(value) for name, value in defs.items()}}


def _drop_class(code: str, name: str) -> str:
    tree = ast.parse(code)
    lines = code.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            start = node.lineno - 1 - len(node.decorator_list)
            assert node.end_lineno is not None
            del lines[start : node.end_lineno]
            break
    return "".join(lines)
