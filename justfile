# filetrash — every recipe runs with the project's virtualenv when there is one.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# List the recipes.
default:
    @just --list

# Regenerate generated/ from asyncapi/asyncapi.yaml.
generate:
    {{python}} -m generator generate

# Fail when generated/ is stale or was edited by hand.
check:
    {{python}} -m generator check

# Rewrite the expected output of the golden tests from their specs.
regen-golden:
    {{python}} -m tests.golden.regen

# Run the test suite (real nats-server and PostgreSQL are started by the fixtures).
test *ARGS:
    {{python}} -m pytest {{ARGS}}

# Lint, format-check and type-check.
lint:
    {{python}} -m ruff check .
    {{python}} -m ruff format --check .
    {{python}} -m mypy

# Validate the spec with the official AsyncAPI parser (installs it into a temporary directory).
validate-spec:
    bash .ci/validate-asyncapi asyncapi/asyncapi.yaml
