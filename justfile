# filetrash — every recipe runs with the project's virtualenv when there is one.
set shell := ["bash", "-euo", "pipefail", "-c"]

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# `dev-<durable>` for each consumer `just scaffold-consumer` made (rewritten by it).
import? 'handwritten/services/consumers.just'

# List the recipes.
default:
    @just --list

# Regenerate generated/ from asyncapi/asyncapi.yaml.
generate:
    {{python}} -m generator generate

# Fail when generated/ is stale or was edited by hand.
check:
    {{python}} -m generator check

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
    {{python}} -m mypy

# Benchmark on this machine: ceiling, naive loop, filetrash, latency, generation (see docs/bench.md).
bench *ARGS:
    {{python}} -m tests.bench {{ARGS}}

# Fault scenarios: real processes, real failures, then a table of what was lost (see docs/faults.md).
faults *ARGS:
    rm -rf bench-results/faults
    {{python}} -m pytest tests/faults -m faults {{ARGS}}

# Validate the spec with the official AsyncAPI parser (installs it into a temporary directory).
validate-spec:
    bash .ci/validate-asyncapi asyncapi/asyncapi.yaml

# --- the services (each reads NATS_URL/DATABASE_URL, else the servers `just up` started) ---

# Start nats-server and PostgreSQL for development (no docker needed).
up:
    {{python}} -m handwritten.cli up

# Stop the dev servers; their data is kept.
down:
    {{python}} -m handwritten.cli down

# Create the spec's streams and consumers and apply the database migrations.
provision *ARGS:
    {{python}} -m handwritten.cli provision {{ARGS}}

# Trash processor: deletions → trashed_files → FilePlacedInTrashEvent (run it twice to compete).
dev-subscriber *ARGS:
    {{python}} -m handwritten.cli run trash-processor {{ARGS}}

# Audit logger: every deletion into audit_log (fan-out beside the trash processor).
dev-audit-logger *ARGS:
    {{python}} -m handwritten.cli run audit-logger {{ARGS}}

# Analytics: files.> routed on eventType into counters per type and per user.
dev-analytics *ARGS:
    {{python}} -m handwritten.cli run analytics-service {{ARGS}}

# Cleanup: each deleted file's storage path into the cleanup queue (files.deleted only).
dev-cleanup *ARGS:
    {{python}} -m handwritten.cli run cleanup-service {{ARGS}}

# Notifications: tell users what went to the trash (files.trashed only).
dev-notification *ARGS:
    {{python}} -m handwritten.cli run notification-service {{ARGS}}

# Publish simulated deletions, one a second (--count N, --rate R, --seed S).
dev-publisher *ARGS:
    {{python}} -m handwritten.cli publish {{ARGS}}

# Delete expired trash entries for good (--now 2027-01-01T00:00:00Z to look ahead).
purge *ARGS:
    {{python}} -m handwritten.cli purge {{ARGS}}

# Everything at once: servers, provisioning, every service, N deletions, reconciliation.
demo *ARGS:
    {{python}} -m handwritten.cli demo {{ARGS}}
