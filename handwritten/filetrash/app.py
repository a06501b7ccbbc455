"""What the filetrash app adds to the generic runtime, found by its registry as `CONTRIBUTION`:
the commands publish, purge and demo, the trash-processor's options of `filetrash run`, and the
app's tables (migrations applied by `filetrash provision`).

The app is this folder, `handwritten/filetrash/`, with its just recipes (`filetrash.just`) and
its tests (`tests/app/`, `tests/faults/`, `tests/bench/`); delete them and the runtime, the
generator and scaffolded services carry on without it. Its five services declare themselves
(a module-level `SERVICE` in each of their modules).
"""

from __future__ import annotations

from handwritten.filetrash import commands
from handwritten.filetrash.db import MIGRATIONS
from handwritten.runtime.registry import Contribution

CONTRIBUTION = Contribution(
    name="filetrash",
    add_commands=commands.add_commands,
    add_run_options=commands.add_run_options,
    run_options=commands.run_options,
    migrations=MIGRATIONS,
)
