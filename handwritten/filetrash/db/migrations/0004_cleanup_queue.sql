-- Storage paths for the blob store to reclaim, queued by the cleanup-service; one per event.
CREATE TABLE cleanup_queue (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid        NOT NULL,
    file_id    uuid        NOT NULL,
    user_id    text        NOT NULL,
    file_path  text        NOT NULL,
    file_size  bigint      NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at    timestamptz,
    CONSTRAINT cleanup_queue_event_id_key UNIQUE (event_id)
);

-- The work still to do, oldest first.
CREATE INDEX cleanup_queue_pending ON cleanup_queue (queued_at) WHERE done_at IS NULL;
