-- The trash: one row per deleted file, written by the trash-processor.
--
-- `original_event_id` is unique so that a redelivered or re-published FileDeletedEvent finds
-- the row it already produced (INSERT ... ON CONFLICT DO NOTHING) instead of adding another.
-- `id` is derived from that event id (uuid5), so every attempt computes the same trash id.
-- `stored_at` is the timestamp of the FilePlacedInTrashEvent: kept here so that a re-sent
-- event is identical, field for field, to the first one.
-- `trash_event_seq` is the stream sequence of the FilePlacedInTrashEvent once JetStream
-- acknowledged it; NULL means the event may not have been published yet.
CREATE TABLE trashed_files (
    id                uuid PRIMARY KEY,
    file_id           uuid        NOT NULL,
    file_name         text        NOT NULL,
    file_path         text        NOT NULL,
    file_size         bigint      NOT NULL CHECK (file_size >= 0),
    mime_type         text        NOT NULL,
    user_id           text        NOT NULL,
    trashed_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    original_event_id uuid        NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    trash_event_seq   bigint,
    CONSTRAINT trashed_files_original_event_id_key UNIQUE (original_event_id),
    CONSTRAINT trashed_files_expires_after_trashed CHECK (expires_at >= trashed_at)
);

-- A user's trash, newest first.
CREATE INDEX trashed_files_user_newest ON trashed_files (user_id, trashed_at DESC);

-- Expired entries, for the purge job.
CREATE INDEX trashed_files_expires_at ON trashed_files (expires_at);
