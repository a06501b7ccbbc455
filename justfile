# filetrash — every recipe runs with the project's virtualenv when there is one.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# `dev-<durable>` for each consumer `just scaffold-consumer` made (rewritten by it).
import? 'handwritten/services/consumers.just'

# The filetrash app's recipes (dev-subscriber, dev-audit-logger, ..., purge, demo); optional, so
# that deleting the app's folder leaves a working justfile.
import? 'handwritten/filetrash/filetrash.just'

# List the recipes.
default:
    @just --list

# Regenerate generated/ from asyncapi/asyncapi.yaml.
generate:
    {{python}} -m generator generate

# The spec as one self-contained page, docs/spec.html, and its diagram, docs/topology.svg
# (`just generate` writes them too; `just check` compares them).
docs:
    {{python}} -m generator docs

# Fail when generated/ (or the docs/ page) is stale or was edited by hand.
check:
    {{python}} -m generator check

# Every change of the spec since REF (a git ref or a file; default: main) with the deploy order it
# needs; exit 1 on a breaking change not allowed (--allow PATH); --require-version: also on an
# info.version not raised (CI).
compat REF="main" *ARGS:
    {{python}} -m generator compat --against {{REF}} {{ARGS}}

# A consumer for a receive operation of the spec: handler module, test, `dev-<durable>` recipe.
scaffold-consumer OPERATION:
    @{{python}} -m generator.scaffold {{OPERATION}}

# Merge template or spec changes into a scaffolded consumer (copier update; needs a clean tree).
update-consumer OPERATION:
    @{{python}} -m generator.scaffold --update {{OPERATION}}

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
    {{python}} -m mypy $({{python}} -m handwritten.runtime.lint_scope)

# Validate the spec with the official AsyncAPI parser (installs it into a temporary directory).
validate-spec:
    bash .ci/validate-asyncapi asyncapi/asyncapi.yaml

# --- the servers and the services (NATS_URL/DATABASE_URL, else the servers `just up` started) ---

# Start nats-server and PostgreSQL for development (no docker needed).
up:
    {{python}} -m handwritten.cli up

# Stop the dev servers; their data is kept.
down:
    {{python}} -m handwritten.cli down

# Create or update the spec's streams and consumers (and apply the apps' database migrations).
provision *ARGS:
    {{python}} -m handwritten.cli provision {{ARGS}}

# Run one service by its durable name (a module under handwritten/ that declares a SERVICE).
run SERVICE *ARGS:
    {{python}} -m handwritten.cli run {{SERVICE}} {{ARGS}}
