"""NATS roles at runtime: the server's authorization, each process's login, and refusals.

The roles come from the spec (generated/permissions.py, derived by generator/roles.py): one
per receive operation's service (named by its durable), one per producer (named by its send
operation), and `admin`. Here they become

- a nats-server `authorization` block: one user per role, with a password, and exactly the
  role's publish and subscribe allow-lists (users with passwords rather than nkeys: nkeys
  would need another dependency, and the passwords never leave this machine);
- a credentials file `nats-credentials.json` beside the dev servers' record: the passwords,
  generated here with `secrets`, written with mode 0600 and never printed or logged;
- a `Login` for a process: role, password and the role's inbox prefix (so that its replies
  come to subjects only it may read);
- `PermissionRefused`: the server refused a publish or a subscription of a role; one line that
  names the role and the subject, raised once instead of retrying.

Without a credentials file (NATS_URL set to a server of one's own) nothing changes: processes
connect as the URL or NATS_CREDS says.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from handwritten.runtime.contract import Role

ADMIN: Final = "admin"
CREDENTIALS_FILE: Final = "nats-credentials.json"
ROLE_ENV: Final = "FILETRASH_ROLE"
"""Connect as this role instead of the command's own (to try what a role may do)."""
_SECRET_BYTES: Final = 32


class CredentialsMissing(Exception):
    """The dev servers' credentials file has no password for a role (or cannot be read)."""


@dataclass(frozen=True, slots=True)
class Login:
    """How one process connects: as `role`, replies under `inbox_prefix`. `repr` hides the
    password, so that a logged or printed Login shows none."""

    role: str
    password: str
    inbox_prefix: str

    def __repr__(self) -> str:
        return f"Login(role={self.role!r}, password='***', inbox_prefix={self.inbox_prefix!r})"

    __str__ = __repr__


# --- the server's side ----------------------------------------------------------------------


def _conf_string(value: str) -> str:
    # A double-quoted string of the configuration language (no `$variable` expansion inside).
    return json.dumps(value)


def _conf_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_conf_string(v) for v in values) + "]"


def render_authorization(roles: Mapping[str, Role], passwords: Mapping[str, str]) -> str:
    """A nats-server `authorization` block: one user per role with its allow-lists. Anything
    not allowed is denied; no role answers requests, so none has `allow_responses`."""
    lines = ["authorization {", "  users = ["]
    for name in sorted(roles):
        role = roles[name]
        lines += [
            "    {",
            f"      user: {_conf_string(role.name)}",
            f"      password: {_conf_string(passwords[role.name])}",
            "      permissions: {",
            f"        publish: {{ allow: {_conf_list(role.publish)} }}",
            f"        subscribe: {{ allow: {_conf_list(role.subscribe)} }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (mode 0600) from the first
    byte: the temporary file is created with that mode, not chmod'ed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def read_passwords(path: Path) -> dict[str, str]:
    """The passwords of `path` by role ({} when it does not exist)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CredentialsMissing(
            f"{path} cannot be read ({type(error).__name__}): run `filetrash up` again"
        ) from None
    roles = data.get("roles") if isinstance(data, dict) else None
    if not isinstance(roles, dict):
        raise CredentialsMissing(f"{path} holds no roles: run `filetrash up` again")
    return {str(k): str(v) for k, v in roles.items() if isinstance(v, str)}


def ensure_passwords(path: Path, names: Iterable[str]) -> dict[str, str]:
    """A password for each role of `names`: those in `path` are kept, new roles get a fresh
    one (`secrets.token_urlsafe`), roles no longer in the spec are dropped. Written 0600."""
    known = read_passwords(path)
    wanted = sorted(set(names))
    passwords = {name: known.get(name) or secrets.token_urlsafe(_SECRET_BYTES) for name in wanted}
    if passwords != known or (path.exists() and path.stat().st_mode & 0o077):
        write_private(path, json.dumps({"roles": passwords}, indent=2, sort_keys=True) + "\n")
    return passwords


# --- the client's side ----------------------------------------------------------------------


def login(credentials: Path | None, role: str) -> Login | None:
    """The login of `role` from the credentials file of the dev servers, or None when there is
    none (a server of one's own: connect as its URL says). `FILETRASH_ROLE` overrides `role`."""
    if credentials is None:
        return None
    role = os.environ.get(ROLE_ENV, "").strip() or role
    passwords = read_passwords(credentials)
    password = passwords.get(role)
    if password is None:
        known = ", ".join(sorted(passwords)) or "none"
        raise CredentialsMissing(
            f"no NATS role {role!r} in {credentials} (roles: {known}): the spec has none of that "
            "name, or `filetrash up` ran before it was added: run `filetrash up` again"
        )
    return Login(role, password, f"_INBOX.{role}")


_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)"?', re.I)


def parse_violation(text: str) -> tuple[str, str] | None:
    """("publish" | "subscribe", subject) of a server's permissions violation, else None."""
    found = _VIOLATION.search(text)
    if found is None:
        return None
    action = "publish" if found.group(1).lower() == "publish" else "subscribe"
    return action, found.group(2)


def restore_case(subject: str, vocabulary: Iterable[str]) -> str:
    """nats-py lowercases the server's error text; give each token of `subject` back the case
    of a known name it matches (`$js.api.stream.delete.file_events` ->
    `$JS.API.STREAM.DELETE.FILE_EVENTS`); JetStream API words are upper case."""
    known: dict[str, str] = {}
    for word in vocabulary:
        for token in word.split("."):
            known.setdefault(token.lower(), token)
    tokens = subject.split(".")
    upper_api = bool(tokens) and tokens[0] == "$js"
    restored = []
    for token in tokens:
        if token in known:
            restored.append(known[token])
        elif upper_api and token.isascii() and re.fullmatch(r"\$?[a-z_]+", token):
            restored.append(token.upper())
        else:
            restored.append(token)
    return ".".join(restored)


class PermissionRefused(Exception):
    """The server refused what a role is not allowed to do (a publish or a subscription)."""

    def __init__(self, role: str, action: str, subject: str) -> None:
        self.role = role
        self.action = action
        self.subject = subject
        verb = "publish to" if action == "publish" else "subscribe to"
        super().__init__(
            f"NATS refused role {role!r} to {verb} {subject}: the spec does not grant it "
            "(generated/permissions.py). If it should, add the operation to the spec (a send "
            "operation, or `x-sends` on the service's receive operation), run `just generate` "
            "and `filetrash up` again; else run this under the role that has it"
        )


class RefusalWatch:
    """Collects the first refusal of a connection and, with `stop`, stops what runs on it:
    a refused subject is not retried, and is reported once."""

    def __init__(self, on_refused: Callable[[PermissionRefused], None] | None = None) -> None:
        self.refused: PermissionRefused | None = None
        self._on_refused = on_refused

    def __call__(self, error: PermissionRefused) -> None:
        if self.refused is None:
            self.refused = error
            if self._on_refused is not None:
                self._on_refused(error)

    def raise_if_refused(self) -> None:
        if self.refused is not None:
            raise self.refused


_REFUSALS: weakref.WeakKeyDictionary[object, dict[tuple[str, str], PermissionRefused]] = (
    weakref.WeakKeyDictionary()
)


def note_refusal(client: object, refusal: PermissionRefused) -> None:
    """Remember that the server refused `refusal` on `client` (connect.py does, for every one)."""
    _REFUSALS.setdefault(client, {})[(refusal.action, refusal.subject)] = refusal


def refused_publish(client: object | None, subject: str) -> PermissionRefused | None:
    """The refusal of a publish to `subject` on `client`, if the server sent one: a publish
    without PubAck is then not retried (jetstream.py)."""
    if client is None:
        return None
    try:
        return _REFUSALS.get(client, {}).get(("publish", subject))
    except TypeError:  # not weak-referenceable: no refusals were noted for it
        return None
