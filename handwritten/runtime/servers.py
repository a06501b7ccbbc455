"""Where the NATS and PostgreSQL servers are: the environment first, then `filetrash up`'s record.

`NATS_URL` and `DATABASE_URL` are resolved independently, so a developer can point one of them
at a shared server and keep the other on the local dev servers. URLs may hold passwords or
tokens: anything that logs or reports a URL passes it through `redact` first.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from handwritten.runtime.roles import CREDENTIALS_FILE, Login
from handwritten.runtime.roles import login as roles_login

NATS_URL_ENV = "NATS_URL"
NATS_CREDENTIALS_ENV = "FILETRASH_NATS_CREDENTIALS"
"""The roles' credentials file to use with NATS_URL (default: the dev servers' when NATS_URL is
theirs): each process then connects as its role."""
DATABASE_URL_ENV = "DATABASE_URL"
DEV_DIR_NAME = ".dev"
SERVERS_FILE = "servers.json"

_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "token", "auth_token", "pass"})
_MASK = "***"

Source = Literal["env", "dev", "mixed"]


class ServersNotConfigured(Exception):
    """Neither the environment nor a running `filetrash up` says where a server is."""


@dataclass(frozen=True, slots=True)
class ServerUrls:
    """The two URLs a service needs; `source` tells where they came from ("mixed": one each).
    `database_url` is None only when it was not asked for and is not configured."""

    nats_url: str
    database_url: str | None
    source: Source
    nats_credentials: Path | None = None
    """The dev servers' credentials file when NATS is theirs and authorization is on: each
    process then connects as its role (`login`). None: connect as the URL says."""

    def login(self, role: str) -> Login | None:
        """How a process of `role` connects (None: as the URL and NATS_CREDS say)."""
        return roles_login(self.nats_credentials, role)

    def database(self) -> str:
        """The database URL, for what cannot work without PostgreSQL."""
        if self.database_url is None:
            raise ServersNotConfigured(
                f"{DATABASE_URL_ENV} not set and no dev servers running: run `filetrash up` "
                f"or set {DATABASE_URL_ENV}"
            )
        return self.database_url


def default_dev_dir() -> Path:
    """The dev servers' directory: `.dev` in the current directory (the repository root)."""
    return Path.cwd() / DEV_DIR_NAME


def servers_file(dev_dir: Path) -> Path:
    return dev_dir / SERVERS_FILE


def credentials_file(dev_dir: Path) -> Path:
    return dev_dir / CREDENTIALS_FILE


def _dev_credentials(dev_dir: Path, record: Mapping[str, Any], nats_url: str) -> Path | None:
    """The credentials file when `nats_url` is the running dev nats-server's and its
    authorization is on (NATS_URL copied from `filetrash up`'s output included)."""
    if not record.get("running", False) or not record.get("nats_auth", False):
        return None
    if nats_url.strip().rstrip("/") != str(record.get("nats_url", "")).rstrip("/"):
        return None
    return credentials_file(dev_dir)


def read_dev_record(dev_dir: Path) -> dict[str, Any] | None:
    """The record `filetrash up` wrote, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(servers_file(dev_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve_servers(
    dev_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    database: bool = True,
) -> ServerUrls:
    """Each URL from its environment variable when set, else from the running dev servers.

    With `database=False` (a service or a provisioning that needs no PostgreSQL) `NATS_URL`
    alone is enough; the database URL is still taken from where it is configured, if anywhere.
    """
    env = os.environ if environ is None else environ
    dev_dir = default_dev_dir() if dev_dir is None else dev_dir
    nats_url = env.get(NATS_URL_ENV, "").strip()
    database_url = env.get(DATABASE_URL_ENV, "").strip()
    named = env.get(NATS_CREDENTIALS_ENV, "").strip()
    if nats_url and database_url:
        creds = Path(named) if named else None
        if creds is None:
            creds = _dev_credentials(dev_dir, read_dev_record(dev_dir) or {}, nats_url)
        return ServerUrls(nats_url, database_url, "env", creds)
    if nats_url and not database:
        dev = read_dev_record(dev_dir) or {}
        creds = Path(named) if named else _dev_credentials(dev_dir, dev, nats_url)
        dev_database = dev.get("database_url") if dev.get("running", False) else None
        if isinstance(dev_database, str):
            return ServerUrls(nats_url, dev_database, "mixed", creds)
        return ServerUrls(nats_url, None, "env", creds)

    missing = [
        name
        for name, value in ((NATS_URL_ENV, nats_url), (DATABASE_URL_ENV, database_url))
        if not value
    ]
    record = read_dev_record(dev_dir)
    if record is None:
        raise ServersNotConfigured(
            f"{' and '.join(missing)} not set and no dev servers recorded in "
            f"{servers_file(dev_dir)}: run `filetrash up` or set NATS_URL and DATABASE_URL"
        )
    if not record.get("running", False):
        raise ServersNotConfigured(
            f"{' and '.join(missing)} not set and the dev servers in {dev_dir} are stopped: "
            "run `filetrash up` or set NATS_URL and DATABASE_URL"
        )
    dev_nats = record.get("nats_url")
    dev_database = record.get("database_url")
    if not isinstance(dev_nats, str) or not isinstance(dev_database, str):
        raise ServersNotConfigured(
            f"{servers_file(dev_dir)} is incomplete: run `filetrash up` again "
            "or set NATS_URL and DATABASE_URL"
        )
    source: Source = "mixed" if (nats_url or database_url) else "dev"
    chosen = nats_url or dev_nats
    creds = _dev_credentials(dev_dir, record, chosen)
    return ServerUrls(chosen, database_url or dev_database, source, creds)


def redact(url: str) -> str:
    """The URL with passwords, tokens and secret query parameters replaced by `***`.

    A NATS URL's user part without a password is a token, so it is hidden as a whole; a
    comma-separated list of servers is redacted server by server.
    """
    if "," in url and "://" in url.split(",", 1)[1]:
        return ",".join(redact(part) for part in url.split(","))
    try:
        parts = urlsplit(url)
    except ValueError:
        return _redact_unparsed(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        if has_password and password:
            userinfo = f"{user}:{_MASK}"
        elif parts.scheme.lower() in _NATS_SCHEMES and user:
            userinfo = _MASK
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(k, _MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*/",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_unparsed(url: str) -> str:
    """Fallback for strings urlsplit rejects: hide everything between `//` and the last `@`."""
    return re.sub(r"//[^/?#]*@", f"//{_MASK}@", url)


def secrets_in(url: str) -> list[str]:
    """The secret parts of a URL, so that error text derived from it can be scrubbed."""
    found: list[str] = []
    for part in url.split(","):
        try:
            parts = urlsplit(part)
        except ValueError:
            continue
        if parts.password:
            found.append(parts.password)
        elif parts.username and parts.scheme.lower() in _NATS_SCHEMES:
            found.append(parts.username)
        found.extend(v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS and v)
    # Libraries may echo a secret either as written in the URL or percent-decoded.
    return sorted({s for secret in found for s in (secret, unquote(secret))}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every secret of `url` replaced by `***` (for messages from libraries)."""
    for secret in secrets_in(url):
        text = text.replace(secret, _MASK)
    return text
