"""Connections to NATS and PostgreSQL, with errors that say what to fix and never a secret.

Credentials come from the URL (`nats://user:password@host`, `nats://token@host`) or, for NATS,
from a creds file named by `NATS_CREDS`; `NATS_CA` names a CA bundle for TLS servers. Against
the dev servers (authorization on) a process connects as its role (`login`, see roles.py), with
the role's inbox prefix; a publish or subscription the server refuses to the role becomes one
`PermissionRefused` handed to `on_refused` (logged once when nobody takes it), never a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client

from handwritten.runtime.roles import (
    Login,
    PermissionRefused,
    note_refusal,
    parse_violation,
    restore_case,
)
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


def _is_auth_error(error: BaseException) -> bool:
    # The server's -ERR text is the only signal nats-py gives during the handshake.
    return isinstance(error, nats.errors.AuthorizationError) or (
        "authorization violation" in str(error).lower()
    )


def _is_fatal(error: BaseException) -> bool:
    """Errors that retrying the first connection cannot cure: fail at once."""
    return _is_auth_error(error) or isinstance(error, ssl.SSLCertVerificationError)


def _nats_cause(errors: list[BaseException]) -> str:
    """A one-line cause with the fix; the telling error wins over the resets that follow it."""
    if not errors:
        return "no server answered"
    error = next((e for e in errors if _is_fatal(e)), errors[-1])
    text = str(error) or type(error).__name__
    if _is_auth_error(error):
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
    return text


def _tls_context() -> ssl.SSLContext | None:
    ca = os.environ.get(NATS_CA_ENV)
    if not ca:
        return None
    if not Path(ca).is_file():
        raise NatsUnavailable(f"{NATS_CA_ENV} names {ca}, which is not a file")
    return ssl.create_default_context(cafile=ca)


Callback = Callable[..., Awaitable[None]]


def _vocabulary() -> list[str]:
    """Names whose case a refused subject gets back (nats-py lowercases the server's text)."""
    try:
        from generated.permissions import ROLES
        from generated.topology import CONSUMERS, STREAMS
    except ImportError:
        return []
    words = [*STREAMS, *CONSUMERS, *ROLES]
    for role in ROLES.values():
        words += [*role.publish, *role.subscribe]
    return words


def _refusal(text: str, role: str) -> PermissionRefused | None:
    found = parse_violation(text)
    if found is None:
        return None
    action, subject = found
    return PermissionRefused(role, action, restore_case(subject, _vocabulary()))


def _role_of(url: str, login: Login | None) -> str:
    """The role a refusal names: the login's, else the URL's user, else the connection's."""
    if login is not None:
        return login.role
    try:
        parts = urlsplit(url.split(",")[0].strip())
    except ValueError:
        return "of this connection"
    return parts.username if parts.username and parts.password else "of this connection"


async def connect_nats(
    url: str,
    *,
    name: str,
    timeout: float = 20.0,
    login: Login | None = None,
    on_refused: Callable[[PermissionRefused], None] | None = None,
    **opts: Any,
) -> Client:
    """Connect, retrying the first connection briefly and reconnecting forever afterwards.

    The first connection fails with `NatsUnavailable` after a few tries or `timeout` seconds,
    and at once for a refused login or an untrusted certificate. `opts` go to `nats.connect`
    and override the defaults here; callbacks in `opts` are called after ours. With `login`,
    it connects as that role, its replies under the role's inbox prefix. A publish or
    subscription the server refuses goes to `on_refused` (else it is logged, once a subject).
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    shown = redact(url)
    seen: list[BaseException] = []
    fatal = asyncio.Event()
    client = Client()
    refused: set[tuple[str, str]] = set()
    theirs: dict[str, Callback] = {
        key: opts.pop(key)
        for key in ("error_cb", "disconnected_cb", "reconnected_cb")
        if opts.get(key) is not None
    }

    async def error_cb(error: Exception) -> None:
        refusal = _refusal(str(error), _role_of(url, login))
        if refusal is not None:
            note_refusal(client, refusal)
            key = (refusal.action, refusal.subject)
            if on_refused is not None:
                on_refused(refusal)
            elif key not in refused:
                log.error("%s", refusal)
            refused.add(key)
        elif not client.is_connected and not client.is_reconnecting:
            seen.append(error)
            if _is_fatal(error):
                fatal.set()
        else:
            log.warning("NATS %s: %s", shown, scrub(str(error) or type(error).__name__, url))
        if "error_cb" in theirs:
            await theirs["error_cb"](error)

    async def disconnected_cb() -> None:
        if client.is_closed:
            log.info("NATS %s: closed", shown)
        else:
            log.warning("NATS %s: disconnected, reconnecting", shown)
        if "disconnected_cb" in theirs:
            await theirs["disconnected_cb"]()

    async def reconnected_cb() -> None:
        current = client.connected_url
        log.info("NATS: reconnected to %s", redact(current.geturl()) if current else shown)
        if "reconnected_cb" in theirs:
            await theirs["reconnected_cb"]()

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
    if login is not None:
        settings["user"] = login.role
        settings["password"] = login.password
        settings["inbox_prefix"] = login.inbox_prefix
    creds = os.environ.get(NATS_CREDS_ENV)
    if creds and login is None:
        if not Path(creds).is_file():
            raise NatsUnavailable(f"{NATS_CREDS_ENV} names {creds}, which is not a file")
        settings["user_credentials"] = creds
    tls = _tls_context()
    if tls is not None:
        settings["tls"] = tls
    forever = "max_reconnect_attempts" not in opts
    settings.update(opts)

    # nats-py can hang after some handshake failures (an untrusted certificate), so the
    # first connection runs as a task that we abandon on a fatal error or at the deadline.
    connecting = asyncio.ensure_future(client.connect(servers=servers, **settings))
    fatal_seen = asyncio.ensure_future(fatal.wait())
    try:
        await asyncio.wait(
            {connecting, fatal_seen}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        fatal_seen.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
    error = None if connecting.cancelled() else connecting.exception()
    if connecting.cancelled() or error is not None:
        await _close_quietly(client)
        if error is not None and not isinstance(error, nats.errors.NoServersError):
            seen.append(error)
        if not seen and connecting.cancelled():
            seen.append(TimeoutError(f"no connection within {timeout:.0f}s"))
        cause = scrub(_nats_cause(seen), url)
        if login is not None:
            cause = cause.replace(login.password, "***")
            if _is_auth_error(next((e for e in seen if _is_fatal(e)), seen[-1])):
                cause = (
                    f"authorization violation: role {login.role!r} was refused; the dev "
                    "server's users and the credentials file disagree: run `filetrash up`"
                )
        raise NatsUnavailable(f"cannot connect to NATS at {shown}: {cause}")
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
