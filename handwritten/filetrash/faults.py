"""Fault injection for crash tests: the process dies at a named point, as if killed.

Off unless `FILETRASH_FAULT` is set, e.g. `FILETRASH_FAULT=after-insert` (always) or
`FILETRASH_FAULT=after-publish:0.2` (with probability 0.2 at each pass); several points may be
given, separated by commas. The process exits with `os._exit(137)`, the status of a SIGKILL:
no `finally`, no ack, no flush — exactly what a crash leaves behind.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Mapping
from typing import Final

log = logging.getLogger(__name__)

FAULT_ENV: Final = "FILETRASH_FAULT"
CRASH_STATUS: Final = 137

POINTS: Final = frozenset({"after-insert", "after-publish"})
"""after-insert: the trash row is committed, its event not yet published.
after-publish: the trash event is acknowledged by JetStream, the deletion not yet acked."""


class FaultSpecInvalid(ValueError):
    """FILETRASH_FAULT names an unknown point or a probability outside [0, 1]."""


def parse_faults(spec: str) -> dict[str, float]:
    """`after-insert,after-publish:0.5` -> {"after-insert": 1.0, "after-publish": 0.5}."""
    faults: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        point, _, probability = part.partition(":")
        if point not in POINTS:
            raise FaultSpecInvalid(
                f"{FAULT_ENV}: unknown fault point {point!r}; use one of {', '.join(sorted(POINTS))}"
            )
        try:
            chance = float(probability) if probability else 1.0
        except ValueError:
            chance = -1.0
        if not 0.0 <= chance <= 1.0:
            raise FaultSpecInvalid(
                f"{FAULT_ENV}: probability {probability!r} of {point} must be a number in [0, 1]"
            )
        faults[point] = chance
    return faults


class FaultInjector:
    """Crashes the process at the configured points; does nothing when none are configured."""

    def __init__(self, faults: Mapping[str, float], rng: random.Random | None = None) -> None:
        self._faults = dict(faults)
        self._rng = rng or random.Random()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultInjector:
        env = os.environ if environ is None else environ
        return cls(parse_faults(env.get(FAULT_ENV, "")))

    @property
    def enabled(self) -> bool:
        return bool(self._faults)

    def point(self, name: str) -> None:
        """Die here if this point is configured (and the dice say so)."""
        chance = self._faults.get(name)
        if chance is None or self._rng.random() >= chance:
            return
        log.warning("💥 fault injected at %s: exiting with status %d", name, CRASH_STATUS)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(CRASH_STATUS)


NO_FAULTS: Final = FaultInjector({})
