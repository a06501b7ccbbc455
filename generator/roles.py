"""Part of stage 2: the NATS roles of a spec, each with exactly the subjects its service uses.

What the runtime does on the wire, and so what each role is granted (nothing else):

- a receive operation's service (role = its durable D on stream S):
  - publish `$JS.API.CONSUMER.INFO.S.D` (bind to the durable, re-read its config, metrics),
    `$JS.API.CONSUMER.MSG.NEXT.S.D` (pull requests), `$JS.ACK.S.D.>` (ack, nak, term,
    +WPI of the messages it was given: the reply subject of each one);
  - publish `$JS.API.STREAM.INFO.S` (the headroom monitor reads the stream's limits) and
    `$JS.API.STREAM.MSG.GET.S` (the max-deliveries watcher reads back the message an advisory
    names; the monitor reads the oldest message its durable still needs);
  - publish its dead-letter subject, and the subjects of the send operations its `x-sends`
    lists;
  - subscribe `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.D`;
- a send operation that no receive operation performs is a role of its own (a producer such
  as a publisher or a job): publish its subject;
- every role that publishes to JetStream: `$JS.API.STREAM.NAMES` and `$JS.API.STREAM.INFO` of
  the streams it publishes to (the publisher tells a full stream or a missing one from a slow
  one: `jetstream.StreamFull`, `NoStreamCaptures`), and its own reply inbox `_INBOX.<role>.>`
  (PubAcks, API answers, pulled messages, ack confirmations), set as the connection's
  `inbox_prefix`, so that no role can read another's replies;
- `admin`: everything (provisioning, `status`, `dlq`, `headroom`, the demo's reconciliation).

No role has `allow_responses`: nothing of the runtime answers requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from generator import subjects
from generator.ir import Operation, Role, Stream

ADMIN: Final = "admin"
INBOX: Final = "_INBOX"
_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]+")

Report = Callable[[str, str, str, str], None]
"""(pointer, code, message, hint): how the builder collects an error."""


def inbox_prefix(role: str) -> str:
    return f"{INBOX}.{role}"


def _stream_of(subject: str, streams: Iterable[Stream]) -> str | None:
    for stream in streams:
        if any(subjects.contains(s, subject) for s in stream.subjects):
            return stream.name
    return None


class _Grants:
    """Subjects with why each is granted; the first reason given is kept."""

    def __init__(self) -> None:
        self.publish: dict[str, str] = {}
        self.subscribe: dict[str, str] = {}

    def pub(self, subject: str, why: str) -> None:
        self.publish.setdefault(subject, why)

    def sub(self, subject: str, why: str) -> None:
        self.subscribe.setdefault(subject, why)

    def role(self, name: str, kind: str, operations: tuple[str, ...]) -> Role:
        reasons = [(f"publish {s}", w) for s, w in sorted(self.publish.items())]
        reasons += [(f"subscribe {s}", w) for s, w in sorted(self.subscribe.items())]
        return Role(
            name=name,
            kind=kind,
            operations=operations,
            inbox_prefix=inbox_prefix(name),
            publish=tuple(sorted(self.publish)),
            subscribe=tuple(sorted(self.subscribe)),
            reasons=tuple(reasons),
        )


def _sends(grants: _Grants, name: str, subject: str, streams: Iterable[Stream], why: str) -> None:
    grants.pub(subject, why)
    stream = _stream_of(subject, streams)
    grants.pub("$JS.API.STREAM.NAMES", "to tell a missing stream from a slow one")
    if stream is not None:
        grants.pub(f"$JS.API.STREAM.INFO.{stream}", f"to tell whether {stream} is full")
    grants.sub(f"{inbox_prefix(name)}.>", "its replies: PubAcks and API answers")


def build_roles(
    operations: Iterable[Operation],
    streams: Iterable[Stream],
    pointer_of: Callable[[Operation], str],
    error: Report,
) -> tuple[Role, ...]:
    """Every role of the spec, sorted by name; problems go to `error`."""
    ops = list(operations)
    streams = list(streams)
    by_key = {op.key: op for op in ops}
    performed: dict[str, str] = {}
    for op in ops:
        for index, key in enumerate(op.sends):
            where = f"{pointer_of(op)}/x-sends/{index}"
            target = by_key.get(key)
            if target is None or target.action != "send":
                sends = ", ".join(sorted(o.key for o in ops if o.action == "send")) or "none"
                error(
                    where,
                    "unknown-send",
                    f"x-sends of {op.key} names {key!r}, which is no send operation",
                    f"name send operations of this spec (known: {sends})",
                )
                continue
            if key in performed and performed[key] != op.key:
                error(
                    where,
                    "send-claimed-twice",
                    f"send operation {key} is listed in the x-sends of {performed[key]} and "
                    f"of {op.key}",
                    "a send operation is performed by one service: keep it in one x-sends",
                )
                continue
            performed[key] = op.key

    roles: dict[str, Role] = {}
    owners: dict[str, str] = {}

    def add(role: Role, op: Operation | None) -> None:
        where = pointer_of(op) if op is not None else "/operations"
        if not _ROLE_NAME.fullmatch(role.name):
            error(
                where,
                "role-name",
                f"the NATS role {role.name!r} (named after the operation) is not one subject "
                "token of letters, digits, '-' and '_'",
                "rename the operation",
            )
            return
        if role.name in roles and role.kind == roles[role.name].kind == "receive":
            return  # one durable declared twice: `duplicate-durable` says so already
        if role.name in roles:
            error(
                where,
                "role-collision",
                f"the NATS role {role.name!r} is claimed by {owners[role.name]} and "
                f"{op.key if op else role.name}",
                "rename the operation or the durable",
            )
            return
        roles[role.name] = role
        owners[role.name] = op.key if op else role.name

    admin = _Grants()
    admin.pub(">", "provisioning, status, dead letters, reconciliation: everything")
    admin.sub(">", "everything")
    add(admin.role(ADMIN, "admin", ()), None)

    for op in ops:
        if op.action == "receive" and op.consumer is not None:
            c = op.consumer
            name, s, d = c.durable, c.stream, c.durable
            g = _Grants()
            g.pub(f"$JS.API.CONSUMER.INFO.{s}.{d}", "bind to its durable and re-read it")
            g.pub(f"$JS.API.CONSUMER.MSG.NEXT.{s}.{d}", "pull from its durable")
            g.pub(f"$JS.ACK.{s}.{d}.>", "ack, nak, term and +WPI its messages")
            g.pub(f"$JS.API.STREAM.INFO.{s}", "the headroom monitor: its stream's limits")
            g.pub(
                f"$JS.API.STREAM.MSG.GET.{s}",
                "read back a message a MAX_DELIVERIES advisory names, and the oldest it needs",
            )
            g.sub(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{s}.{d}",
                "dead-letter what ran out of deliveries",
            )
            g.sub(f"{inbox_prefix(name)}.>", "its replies: pulled messages, PubAcks, API answers")
            if c.dead_letter_subject:
                _sends(g, name, c.dead_letter_subject, streams, "its dead letters")
            for key in op.sends:
                target = by_key.get(key)
                if target is not None and target.action == "send":
                    _sends(g, name, target.subject, streams, f"send operation {key}")
            add(g.role(name, "receive", (op.key, *op.sends)), op)
        elif op.action == "send" and op.key not in performed:
            g = _Grants()
            _sends(g, op.key, op.subject, streams, f"send operation {op.key}")
            add(g.role(op.key, "send", (op.key,)), op)
    return tuple(roles[name] for name in sorted(roles))
