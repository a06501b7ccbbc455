"""Deterministic ids: every attempt at the same work derives the same ids, so a retry after a
crash produces the same row and the same events, and JetStream's `Nats-Msg-Id` deduplication
and the tables' unique keys recognise it as the same work."""

from __future__ import annotations

from hashlib import sha1
from uuid import UUID

NAMESPACE = UUID("d485e81c-bb5b-5936-b9e2-e15401e87b48")
"""uuid5(NAMESPACE_URL, "urn:filetrash:file-trash-service") — the spec's id; never change it."""

_NAMESPACE_BYTES = NAMESPACE.bytes


def uuid5(name: str) -> UUID:
    """`uuid.uuid5(NAMESPACE, name)` at half the cost (two of them for every deletion
    handled): the version and variant bits set on the digest's bytes rather than on the
    128-bit integer. tests/unit/test_ids.py holds it to `uuid.uuid5`."""
    digest = bytearray(sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return UUID(bytes=bytes(digest))


def trash_id(original_event_id: UUID) -> UUID:
    """The id of the `trashed_files` row that a FileDeletedEvent produces."""
    return uuid5(f"trash:{original_event_id}")


def trash_event_id(original_event_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePlacedInTrashEvent for a FileDeletedEvent."""
    return uuid5(f"trashed:{original_event_id}")


def purge_event_id(trash_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePurgedEvent for a trash entry."""
    return uuid5(f"purged:{trash_id}")
