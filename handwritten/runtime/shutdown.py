"""Graceful shutdown: SIGTERM or SIGINT asks the service to stop; a second one ends it now."""

from __future__ import annotations

import asyncio
import logging
import signal

log = logging.getLogger(__name__)

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_shutdown(stop: asyncio.Event) -> None:
    """Make SIGTERM and SIGINT set `stop`, once: the handlers are then removed, so a second
    signal gets Python's default behaviour (terminate, or KeyboardInterrupt) for a stuck
    shutdown. Call from inside the running event loop."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("%s received: finishing in-flight messages, then stopping", sig.name)
        stop.set()
        for each in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(each)

    for sig in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)


def uninstall_shutdown() -> None:
    """Give SIGTERM and SIGINT back their default behaviour (when a service returns)."""
    loop = asyncio.get_running_loop()
    for sig in SHUTDOWN_SIGNALS:
        loop.remove_signal_handler(sig)
