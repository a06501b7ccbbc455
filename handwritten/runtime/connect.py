"""Connections to NATS and PostgreSQL, with errors that say what to fix and never a secret.

Credentials come from the URL (`nats://user:password@host`, `nats://token@host`) or, for NATS,
from a creds file named by `NATS_CREDS`; `NATS_CA` names a CA bundle for TLS servers.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client

from handwritten.runtime.servers import redact, scrub

log = logging.getLogger(__name__)

NATS_CREDS_ENV = "NATS_CREDS"
NATS_CA_ENV = "NATS_CA"

INITIAL_CONNECT_ATTEMPTS = 3
"""Tries per server before the first connection counts as failed (reconnects are unlimited)."""


class NatsUnavailable(Exception):
    """No connection to NATS could be made; the message names the (redacted) URL and cause."""


class DatabaseUnavailable(Exception):
    """No connection to PostgreSQL could be made; the message names the (redacted) URL and cause."""


def _nats_cause(error: BaseException | None) -> str:
    """A one-line cause with the fix, from the last error nats-py reported."""
    if error is None:
        return "no server answered"
    text = str(error) or type(error).__name__
    if isinstance(error, nats.errors.AuthorizationError) or "authorization violation" in (
        text.lower()
    ):
        return (
            "authorization violation: check the user/password or token in NATS_URL "
            "or the NATS_CREDS file"
        )
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is nats-server running? (`filetrash up` starts one)"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({text}): check NATS_CA and the server's certificate"
    if isinstance(error, TimeoutError):
        return "timed out: is the host reachable and is it a NATS server?"
    if "ssl" in text.lower() or "tls" in text.lower():
        return f"{text}: a TLS server needs a tls:// URL or NATS_CA, a plain one needs nats://"
    return text


def _tls_context() -> ssl.SSLContext | None:
    ca = os.environ.get(NATS_CA_ENV)
    if not ca:
        return None
    if not Path(ca).is_file():
        raise NatsUnavailable(f"{NATS_CA_ENV} names {ca}, which is not a file")
    return ssl.create_default_context(cafile=ca)


async def connect_nats(url: str, *, name: str, **opts: Any) -> Client:
    """Connect, retrying the first connection briefly and reconnecting forever afterwards.

    `opts` go to `nats.connect` and override the defaults chosen here.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    shown = redact(url)
    last_error: BaseException | None = None
    connected = False

    async def error_cb(error: Exception) -> None:
        nonlocal last_error
        last_error = error
        if connected:
            log.warning("NATS %s: %s", shown, scrub(str(error) or type(error).__name__, url))

    async def disconnected_cb() -> None:
        log.warning("NATS %s: disconnected, reconnecting", shown)

    async def reconnected_cb() -> None:
        current = client.connected_url
        log.info("NATS: reconnected to %s", redact(current.geturl()) if current else shown)

    settings: dict[str, Any] = {
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": INITIAL_CONNECT_ATTEMPTS,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "error_cb": error_cb,
        "disconnected_cb": disconnected_cb,
        "reconnected_cb": reconnected_cb,
    }
    creds = os.environ.get(NATS_CREDS_ENV)
    if creds:
        if not Path(creds).is_file():
            raise NatsUnavailable(f"{NATS_CREDS_ENV} names {creds}, which is not a file")
        settings["user_credentials"] = creds
    tls = _tls_context()
    if tls is not None:
        settings["tls"] = tls
    settings.update(opts)
    forever = "max_reconnect_attempts" not in opts

    client = Client()
    try:
        await client.connect(servers=servers, **settings)
    except (TimeoutError, nats.errors.NoServersError, nats.errors.Error, OSError) as error:
        await _close_quietly(client)
        cause = _nats_cause(last_error if isinstance(error, nats.errors.NoServersError) else error)
        raise NatsUnavailable(f"cannot connect to NATS at {shown}: {scrub(cause, url)}") from None
    connected = True
    if forever:
        # nats-py has one limit for the first connection and reconnects; a first connection
        # that retries forever would hang a service on a wrong URL, so lift it only now.
        client.options["max_reconnect_attempts"] = -1
    return client


async def _close_quietly(client: Client) -> None:
    try:
        await client.close()
    except Exception:
        log.debug("closing a failed NATS connection raised", exc_info=True)


def _database_cause(error: BaseException) -> str:
    if isinstance(
        error, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"{error}: check the user and password in DATABASE_URL"
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return f"{error}: create it, or fix the database name in DATABASE_URL"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is PostgreSQL running? (`filetrash up` starts one)"
    if isinstance(error, TimeoutError):
        return "timed out: is the host reachable?"
    return str(error) or type(error).__name__


async def connect_db(url: str, **opts: Any) -> asyncpg.Pool:
    """A connection pool; the first connection is made here, so a bad URL fails here."""
    settings: dict[str, Any] = {"min_size": 1, "max_size": 10, "timeout": 10.0}
    settings.update(opts)
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(url, **settings)
    except (
        TimeoutError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        ValueError,
    ) as error:
        cause = scrub(_database_cause(error), url)
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {cause}"
        ) from None
    return pool
