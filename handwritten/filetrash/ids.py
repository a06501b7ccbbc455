"""Deterministic ids: every attempt at the same work derives the same ids, so a retry after a
crash produces the same row and the same events, and JetStream's `Nats-Msg-Id` deduplication
and the tables' unique keys recognise it as the same work."""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("d485e81c-bb5b-5936-b9e2-e15401e87b48")
"""uuid5(NAMESPACE_URL, "urn:filetrash:file-trash-service") — the spec's id; never change it."""


def trash_id(original_event_id: UUID) -> UUID:
    """The id of the `trashed_files` row that a FileDeletedEvent produces."""
    return uuid5(NAMESPACE, f"trash:{original_event_id}")


def trash_event_id(original_event_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePlacedInTrashEvent for a FileDeletedEvent."""
    return uuid5(NAMESPACE, f"trashed:{original_event_id}")


def purge_event_id(trash_id: UUID) -> UUID:
    """The eventId (and Nats-Msg-Id) of the FilePurgedEvent for a trash entry."""
    return uuid5(NAMESPACE, f"purged:{trash_id}")
