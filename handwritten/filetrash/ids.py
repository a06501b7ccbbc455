"""Deterministic ids: every attempt at the same work derives the same ids, so a retry after a
crash produces the same row and the same events, and JetStream's `Nats-Msg-Id` deduplication
and the tables' unique keys recognise it as the same work."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID, SafeUUID

NAMESPACE = UUID("d485e81c-bb5b-5936-b9e2-e15401e87b48")
"""uuid5(NAMESPACE_URL, "urn:filetrash:file-trash-service") — the spec's id; never change it."""

_NAMESPACE_BYTES = NAMESPACE.bytes


def uuid5(name: str) -> UUID:
    """`uuid.uuid5(NAMESPACE, name)` at a third of the cost (ids are derived for every
    deletion handled): the version and variant bits set on the digest's integer, and the UUID
    made from that integer without `UUID.__init__`'s argument parsing. tests/unit/test_ids.py
    holds it to `uuid.uuid5`."""
    value = int.from_bytes(sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    uuid = _new(UUID)
    _set_int(uuid, (value & _CLEAR) | _VERSION_AND_VARIANT)
    _set_is_safe(uuid, SafeUUID.unknown)
    return uuid


_new = object.__new__
_set_int = UUID.__dict__["int"].__set__
_set_is_safe = UUID.__dict__["is_safe"].__set__
"""UUID's slots, written directly: `UUID.__setattr__` refuses (UUIDs are immutable), and
`object.__setattr__` looks the slot up again at every call."""


_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
"""Clears the version nibble (bits 76-79) and the two variant bits (62-63)."""
_VERSION_AND_VARIANT = (0x5000 << 64) | (0x8000 << 48)
"""Version 5, RFC 4122 variant."""


def trash_id(original_event_id: UUID) -> UUID:
    """The id of the `trashed_files` row that a FileDeletedEvent produces."""
    return uuid5(f"trash:{original_event_id}")


def trash_event_id(original_event_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePlacedInTrashEvent for a FileDeletedEvent."""
    return uuid5(f"trashed:{original_event_id}")


def purge_event_id(trash_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePurgedEvent for a trash entry."""
    return uuid5(f"purged:{trash_id}")
